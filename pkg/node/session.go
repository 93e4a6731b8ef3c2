package node

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Conn is a client connection as the node writes to it.
type Conn interface {
	// Send queues a frame without blocking; false means the queue is full.
	Send(frame []byte) bool
	// SendWait queues a frame, waiting for room (replays use it).
	SendWait(ctx context.Context, frame []byte) error
	// Flush asks for what is queued to be written now, not batched with
	// frames still to come: replies (acks, errors) are latency-sensitive.
	Flush()
	// FlushSoon is Flush for a reply that more replies follow shortly: the
	// connection may hold it briefly so that they share a write.
	FlushSoon()
	// Close closes the connection with a WebSocket close code, without
	// blocking the caller.
	Close(code int, reason string)
}

// Session is one authenticated client connection.
type Session struct {
	n    *Node
	user string
	id   string // names the connection in presence entries: node/number
	conn Conn

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	rooms    map[string]*roomSub
	closed   bool
	slowOnce sync.Once

	bucket   tokenBucket
	rejected int // consecutive rate-limited frames

	acks   chan pendingAck // sends in flight, oldest first; made on first use
	acking bool            // guarded by mu: an ack loop runs
}

// Open registers a session for user on conn. It fails with a *chat.Error when
// the user is over the connection limit or the node is shutting down.
func (n *Node) Open(user string, conn Conn) (*Session, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, chat.Errorf(chat.ErrUnavailable, "node shutting down")
	}
	if n.perUser[user] >= n.cfg.MaxConnsPerUser {
		return nil, chat.Errorf(chat.ErrLimit, "more than %d connections for this user", n.cfg.MaxConnsPerUser)
	}
	n.perUser[user]++
	ctx, cancel := context.WithCancel(context.Background())
	s := &Session{
		n: n, user: user, conn: conn, ctx: ctx, cancel: cancel,
		id:     n.cfg.ID + "/" + strconv.FormatUint(n.connSeq.Add(1), 10),
		rooms:  make(map[string]*roomSub),
		bucket: newTokenBucket(n.cfg.SendRate, n.cfg.SendBurst),
	}
	n.sessions[s] = struct{}{}
	n.Stats.Sessions.Add(1)
	return s, nil
}

// User is the session's authenticated user.
func (s *Session) User() string { return s.user }

// Close releases the session's rooms. The transport calls it once the
// connection is gone.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	rooms := s.rooms
	s.rooms = nil
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	var left []string
	for room, sub := range rooms {
		if !sub.active {
			continue // its join failed or was cancelled and released the hub
		}
		sub.h.remove(sub)
		s.n.releaseHub(sub.h)
		left = append(left, room)
	}
	if len(left) > 0 && s.n.cfg.Presence != nil {
		go func() { // best effort, off the transport's path
			for _, room := range left {
				s.depart(room)
			}
		}()
	}
	n := s.n
	n.mu.Lock()
	delete(n.sessions, s)
	if n.perUser[s.user]--; n.perUser[s.user] <= 0 {
		delete(n.perUser, s.user)
	}
	n.mu.Unlock()
	n.Stats.Sessions.Add(-1)
}

// slow closes a connection whose queue overflowed: the client reconnects and
// resumes from its last position, so nothing is lost and nothing is buffered
// without bound.
func (s *Session) slow() {
	s.slowOnce.Do(func() {
		s.n.Stats.SlowClosed.Add(1)
		s.conn.Close(chat.CloseSlowReader, "slow reader: reconnect and resume")
	})
}

// reply queues a control frame and has it written at once.
func (s *Session) reply(f chat.ServerFrame) {
	if s.queueReply(f) {
		s.conn.Flush()
	}
}

// queueReply queues a control frame; false if it could not.
func (s *Session) queueReply(f chat.ServerFrame) bool {
	data, err := f.AppendJSON(make([]byte, 0, 128))
	if err != nil {
		return false
	}
	if !s.conn.Send(data) {
		s.slow()
		return false
	}
	return true
}

// replyErr answers a frame with an error frame. Internal errors are logged
// here, once, and shown to the client as "internal".
func (s *Session) replyErr(f chat.ClientFrame, err error) {
	code := chat.ErrorCode(err)
	if code == chat.ErrInternal {
		s.n.Stats.InternalErrors.Add(1)
		s.n.logger.Error("frame failed", "type", f.Type, "room", f.Room, "user", s.user, "err", err)
	}
	s.n.Stats.ClientErrors.Add(1)
	out := chat.ServerFrame{Type: chat.FrameError, Ref: f.Ref, Room: f.Room, ID: f.ID, Code: code, Message: chat.ErrorMessage(err)}
	switch code {
	case chat.ErrUnavailable:
		out.RetryAfterMS = 500
	case chat.ErrRateLimited:
		out.RetryAfterMS = s.retryAfter(err).Milliseconds() + 1
	}
	s.reply(out)
}

// Reject answers a frame that could not be decoded. It counts against the
// rate limit like any frame, so garbage cannot flood around it.
func (s *Session) Reject(err error) {
	if !s.allow(chat.ClientFrame{}) {
		return
	}
	s.replyErr(chat.ClientFrame{}, err)
}

// allow charges one frame to the connection's token bucket; over the limit
// it answers rate_limited, and closes a connection that keeps flooding.
func (s *Session) allow(f chat.ClientFrame) bool {
	if s.bucket.allow(time.Now()) {
		s.rejected = 0
		return true
	}
	s.n.Stats.RateLimited.Add(1)
	if s.rejected++; s.rejected >= floodLimit {
		s.conn.Close(chat.CloseFlood, "flood: too many frames over the rate limit")
		return false
	}
	s.replyErr(f, chat.Errorf(chat.ErrRateLimited, "over %.0f frames/s; retry after retry_after_ms with the same id", s.n.cfg.SendRate))
	return false
}

const floodLimit = 1000 // consecutive rate-limited frames before the connection is closed

// Handle serves one decoded client frame. Replies (and, for joins, events)
// are queued on the session's connection. It does not block on other rooms:
// joins replay in the background.
func (s *Session) Handle(ctx context.Context, f chat.ClientFrame) {
	if f.Type == chat.FramePing {
		s.reply(chat.ServerFrame{Type: chat.FramePong, Ref: f.Ref})
		return
	}
	if !s.allow(f) {
		return
	}
	if f.Room != "" {
		if err := chat.ValidateRoomID(f.Room); err != nil {
			s.replyErr(f, err)
			return
		}
	}
	var err error
	switch f.Type {
	case chat.FrameJoin:
		err = s.join(f)
	case chat.FrameUnsub:
		err = s.unsubscribe(f)
	case chat.FrameLeave:
		err = s.leave(ctx, f)
	case chat.FrameCreate:
		err = s.create(ctx, f)
	case chat.FrameInvite:
		err = s.invite(ctx, f)
	case chat.FrameSend, chat.FrameEdit, chat.FrameDelete, chat.FrameReact, chat.FrameUnreact, chat.FrameRead:
		err = s.act(ctx, f)
	case chat.FrameTyping:
		err = s.typing(f)
	case chat.FrameHistory:
		err = s.history(ctx, f)
	case chat.FrameHello:
		err = chat.Errorf(chat.ErrBadRequest, "already authenticated")
	default:
		err = chat.Errorf(chat.ErrUnknownFrame, "unknown frame type %q", truncate(f.Type, 32))
	}
	if err != nil {
		s.replyErr(f, err)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// join subscribes the session to a room and, with since, replays what the
// client missed before going live. The replay runs in the background.
func (s *Session) join(f chat.ClientFrame) error {
	if f.Room == "" {
		return chat.Errorf(chat.ErrBadRequest, "join needs a room")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	if sub := s.rooms[f.Room]; sub != nil {
		active, h := sub.active, sub.h
		s.mu.Unlock()
		if !active {
			return chat.Errorf(chat.ErrBadRequest, "a join of %s is in progress", f.Room)
		}
		h.rejoined(sub, chat.ServerFrame{Type: chat.FrameJoined, Ref: f.Ref, Room: f.Room})
		return nil
	}
	if len(s.rooms) >= s.n.cfg.MaxRoomsPerConn {
		s.mu.Unlock()
		return chat.Errorf(chat.ErrLimit, "more than %d rooms on one connection", s.n.cfg.MaxRoomsPerConn)
	}
	// Reserve the slot so a second join of the same room waits for this one.
	sub := &roomSub{s: s, ready: make(chan struct{})}
	s.rooms[f.Room] = sub
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer close(sub.ready)
		if err := s.subscribe(sub, f); err != nil {
			s.mu.Lock()
			if s.rooms != nil && s.rooms[f.Room] == sub {
				delete(s.rooms, f.Room)
			}
			s.mu.Unlock()
			if s.ctx.Err() == nil && !errors.Is(err, errJoinCancelled) {
				s.replyErr(f, err)
			}
		}
	}()
	return nil
}

func (s *Session) subscribe(sub *roomSub, f chat.ClientFrame) error {
	ctx := s.ctx
	if err := s.n.admit(ctx, f.Room, s.user, true); err != nil {
		return err
	}
	h, err := s.n.acquireHub(f.Room)
	if err != nil {
		return err
	}
	s.mu.Lock()
	sub.h = h
	s.mu.Unlock()
	h.add(sub)
	ok := false
	joined := chat.ServerFrame{Type: chat.FrameJoined, Ref: f.Ref, Room: f.Room}
	if online := s.arrive(ctx, f.Room); online != nil {
		joined.Online = online
	}
	defer func() {
		if !ok {
			h.remove(sub)
			s.n.releaseHub(h)
			s.depart(f.Room)
		}
	}()
	s.readMarker(ctx, &joined)
	cursor := h.position()
	// fromMemory: the hub's recent frames vouched for since, not the log. If
	// they have moved on by the time the replay starts, the log is asked
	// after all before it replays from there.
	fromMemory := false
	if f.Since != nil {
		rec := h.holds(*f.Since) // no request to the log for a recent position
		fromMemory = rec
		if !rec {
			if rec, err = s.n.log.Recoverable(ctx, f.Room, *f.Since); err != nil {
				return err
			}
		}
		joined.Recovered = &rec
		if rec {
			cursor = *f.Since
		}
	} else if f.Limit > 0 {
		// The latest page from the recent or history projection, then
		// every event after its newest message from the log: the
		// projection has applied everything up to that message, so page
		// and replay join without a gap, whatever the projection's lag.
		msgs, err := s.n.latestPage(ctx, f.Room, f.Limit)
		if err != nil {
			s.n.logger.Warn("latest page for join", "room", f.Room, "err", err)
		} else if len(msgs) > 0 {
			cursor, joined.Messages = msgs[len(msgs)-1].Seq, msgs
		}
	}
	var recent [][]byte
	for {
		var upto uint64
		var live bool
		upto, recent, live = h.goLive(sub, cursor, joined, recent[:0])
		if live {
			break
		}
		if upto <= cursor {
			return chat.Errorf(chat.ErrUnavailable, "room feed unavailable")
		}
		if len(recent) > 0 { // from the hub's memory
			for _, frame := range recent {
				if err := s.conn.SendWait(ctx, frame); err != nil {
					return err
				}
			}
			cursor = upto
			joined.Replayed += len(recent)
			s.n.Stats.Replayed.Add(int64(len(recent)))
			s.n.Stats.ReplayedMemory.Add(int64(len(recent)))
			continue
		}
		if fromMemory {
			fromMemory = false
			if cursor == *f.Since {
				rec, err := s.n.log.Recoverable(ctx, f.Room, cursor)
				if err != nil {
					return err
				}
				if !rec { // the log dropped it meanwhile: live from here
					joined.Recovered = &rec
					cursor = h.position()
					continue
				}
			}
		}
		before := cursor
		err := s.n.log.Replay(ctx, f.Room, cursor, upto, func(ev chat.Event) error {
			frame, err := chat.AppendEventFrame(make([]byte, 0, 256), &ev)
			if err != nil {
				return err
			}
			if err := s.conn.SendWait(ctx, frame); err != nil {
				return err
			}
			cursor = ev.Seq
			joined.Replayed++
			s.n.Stats.Replayed.Add(1)
			return nil
		})
		if err != nil {
			return err
		}
		if cursor == before {
			return chat.Errorf(chat.ErrUnavailable, "room feed unavailable: replay made no progress")
		}
	}
	// Publish the hub only now: a close racing with this join must see it.
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return context.Canceled
	case sub.cancelled:
		return errJoinCancelled
	}
	ok, sub.active = true, true
	return nil
}

// errJoinCancelled ends a join that an unsubscribe or leave overtook; the
// unsubscribe or leave has answered.
var errJoinCancelled = errors.New("join cancelled")

func (s *Session) unsubscribe(f chat.ClientFrame) error {
	s.mu.Lock()
	sub := s.rooms[f.Room]
	if sub == nil {
		s.mu.Unlock()
		return chat.Errorf(chat.ErrNotJoined, "not joined to %s", f.Room)
	}
	delete(s.rooms, f.Room)
	active := sub.active
	if !active {
		sub.cancelled = true // the join in progress releases its hub itself
	}
	s.mu.Unlock()
	if active {
		sub.h.remove(sub)
		s.n.releaseHub(sub.h)
		s.depart(f.Room)
	}
	s.reply(chat.ServerFrame{Type: chat.FrameLeft, Ref: f.Ref, Room: f.Room})
	return nil
}

// joined reports whether the session receives room (the send ACL: a room's
// access was checked when it was joined).
func (s *Session) joined(room string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.rooms[room]
	return sub != nil && sub.active
}

// joinWait bounds how long an action waits for a join of its room in
// progress on the same connection.
const joinWait = 10 * time.Second

// awaitJoin reports whether room is joined on this connection, waiting for a
// join in progress first: a client that rejoins its rooms after a reconnect
// and at once resends its unacknowledged actions finds them served, not
// refused with not_joined.
func (s *Session) awaitJoin(room string) bool {
	s.mu.Lock()
	sub := s.rooms[room]
	active := sub != nil && sub.active
	s.mu.Unlock()
	if sub == nil || active {
		return active // the common case: no timer on every send
	}
	t := time.NewTimer(joinWait)
	defer t.Stop()
	select {
	case <-sub.ready:
	case <-s.ctx.Done():
	case <-t.C:
	}
	return s.joined(room)
}

// subscribed reports whether the session receives room or is joining it.
func (s *Session) subscribed(room string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rooms[room] != nil
}
