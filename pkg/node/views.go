package node

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/reads"
	"github.com/jetchat/jetchat/projections/rooms"
)

// Limiter limits each user's sends across nodes (ratelimit.Memory embedded,
// pkg/redis in a cluster).
type Limiter interface {
	Allow(ctx context.Context, key string, rate float64, burst int) (ok bool, retryAfter time.Duration, err error)
}

// Recent reads the recent projection: a room's latest events, oldest first,
// as one unbroken chain.
type Recent interface {
	Events(ctx context.Context, room string, n int) ([]chat.Event, error)
}

// Reads reads the reads projection: a user's read markers and unread counts.
type Reads interface {
	Markers(ctx context.Context, user string, rooms []string) (map[string]reads.Marker, error)
	All(ctx context.Context, user string) ([]reads.Marker, error)
}

// RoomList reads the rooms projection: the room list with member counts,
// last activity and previews.
type RoomList interface {
	List(ctx context.Context, user string, limit int) ([]rooms.Room, error)
}

// viewTimeout bounds reads of projections that only decorate an answer.
const viewTimeout = 2 * time.Second

// historyTimeout bounds a history read: with its database down, a client
// gets "unavailable" (and a join goes on without its page) instead of a
// wait.
const historyTimeout = 5 * time.Second

// retryLater is an error that tells the client when to retry.
type retryLater struct {
	err   *chat.Error
	after time.Duration
}

func (e retryLater) Error() string { return e.err.Error() }
func (e retryLater) Unwrap() error { return e.err }

// allowUser charges one send to the user's budget across nodes. A limiter
// that cannot be reached lets the send through: losing Redis must not stop
// chat.
func (s *Session) allowUser(ctx context.Context) error {
	l := s.n.cfg.Limiter
	if l == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, viewTimeout)
	defer cancel()
	ok, after, err := l.Allow(ctx, "send:"+s.user, s.n.cfg.SendRate, s.n.cfg.SendBurst)
	if err != nil {
		s.n.logger.Warn("rate limiter unavailable: allowing", "err", err)
		return nil
	}
	if ok {
		return nil
	}
	s.n.Stats.RateLimited.Add(1)
	return retryLater{chat.Errorf(chat.ErrRateLimited, "over %.0f sends/s for this user; retry after retry_after_ms with the same id", s.n.cfg.SendRate), after}
}

// retryAfter is how long the client should wait before retrying after err.
func (s *Session) retryAfter(err error) time.Duration {
	var rl retryLater
	if errors.As(err, &rl) {
		return rl.after
	}
	return s.bucket.retryAfter()
}

// readMarker adds the user's read marker and unread count to a joined frame.
func (s *Session) readMarker(ctx context.Context, joined *chat.ServerFrame) {
	if s.n.cfg.Reads == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, viewTimeout)
	defer cancel()
	ms, err := s.n.cfg.Reads.Markers(ctx, s.user, []string{joined.Room})
	if err != nil {
		s.n.logger.Warn("read marker for join", "room", joined.Room, "err", err)
		return
	}
	if m, ok := ms[joined.Room]; ok {
		joined.Read, joined.Unread = &m.Read, &m.Unread
	}
}

// recentWindow is how many events a join asks the recent projection for.
const recentWindow = 200

// latestPage returns room's latest messages for a first join: from the recent
// projection when its window holds the whole page (every message sent within
// the window has all its later edits and reactions there too, so folding the
// window gives their exact state), else from history. With history down, a
// partial page from recent is better than none.
func (n *Node) latestPage(ctx context.Context, room string, limit int) ([]history.Message, error) {
	limit = min(limit, history.MaxLimit)
	var partial []history.Message
	if n.cfg.Recent != nil {
		rctx, cancel := context.WithTimeout(ctx, viewTimeout)
		evs, err := n.cfg.Recent.Events(rctx, room, recentWindow)
		cancel()
		if err != nil {
			n.logger.Warn("recent events for join", "room", room, "err", err)
		} else if len(evs) > 0 {
			mem := history.NewMemory()
			if err := mem.Apply(ctx, evs); err == nil {
				msgs, _ := mem.Messages(ctx, room, history.Page{Limit: limit})
				if len(msgs) == limit || evs[0].Prev == 0 {
					return msgs, nil // the window holds the page, or the whole room
				}
				partial = msgs
			}
		}
	}
	if n.cfg.History == nil {
		return partial, nil
	}
	hctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	msgs, err := n.cfg.History.Messages(hctx, room, history.Page{Limit: limit})
	if err != nil {
		if partial != nil {
			return partial, nil
		}
		return nil, err
	}
	return msgs, nil
}

// decorate adds the rooms projection's counts, activity and preview and the
// reads projection's markers to a room list. The directory stays the list's
// authority (it is written with each room); the projections trail it.
func (n *Node) decorate(ctx context.Context, user string, views []RoomView) {
	ctx, cancel := context.WithTimeout(ctx, viewTimeout)
	defer cancel()
	if n.cfg.RoomList != nil {
		list, err := n.cfg.RoomList.List(ctx, user, 500)
		if err != nil {
			n.logger.Warn("room list projection", "err", err)
		}
		byID := make(map[string]rooms.Room, len(list))
		for _, r := range list {
			byID[r.ID] = r
		}
		for i := range views {
			if r, ok := byID[views[i].ID]; ok {
				views[i].Members, views[i].LastActivity, views[i].Last = r.Members, r.LastActivity, r.Last
			}
		}
	}
	if n.cfg.Reads != nil {
		ms, err := n.cfg.Reads.All(ctx, user)
		if err != nil {
			n.logger.Warn("reads projection", "err", err)
		}
		byRoom := make(map[string]reads.Marker, len(ms))
		for _, m := range ms {
			byRoom[m.Room] = m
		}
		for i := range views {
			if m, ok := byRoom[views[i].ID]; ok {
				views[i].Read, views[i].Unread = &m.Read, &m.Unread
			}
		}
	}
	activity := func(v RoomView) time.Time {
		if v.LastActivity.IsZero() {
			return v.Created
		}
		return v.LastActivity
	}
	slices.SortStableFunc(views, func(a, b RoomView) int {
		if c := activity(b).Compare(activity(a)); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}
