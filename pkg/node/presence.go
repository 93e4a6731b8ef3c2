package node

import (
	"context"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/presence"
)

// Presence records who is online in each room, across nodes
// (presence.Memory embedded, pkg/redis in a cluster). Entries expire unless
// refreshed, so a crashed node's users vanish.
type Presence interface {
	Add(ctx context.Context, room, user, conn string) (first bool, err error)
	Remove(ctx context.Context, room, user, conn string) (last bool, err error)
	Refresh(ctx context.Context, entries []presence.Entry) error
	Online(ctx context.Context, room string) ([]string, error)
	Expire(ctx context.Context, room string) (gone []string, err error)
}

// presenceTimeout bounds every presence call: presence is best effort and
// must never hold up a join or a close.
const presenceTimeout = 2 * time.Second

// arrive marks the session's user present in room, announces them if this is
// their first connection there, and returns who is online. Errors degrade to
// no presence.
func (s *Session) arrive(ctx context.Context, room string) []string {
	p := s.n.cfg.Presence
	if p == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	first, err := p.Add(ctx, room, s.user, s.id)
	if err != nil {
		s.n.logger.Warn("presence add", "room", room, "err", err)
		return nil
	}
	if first {
		s.n.signal(room, chat.Signal{Kind: chat.SignalOnline, User: s.user})
	}
	online, err := p.Online(ctx, room)
	if err != nil {
		s.n.logger.Warn("presence list", "room", room, "err", err)
		return nil
	}
	return online
}

// depart removes the session's presence in room and announces the user gone
// if it was their last connection there.
func (s *Session) depart(room string) {
	p := s.n.cfg.Presence
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), presenceTimeout)
	defer cancel()
	last, err := p.Remove(ctx, room, s.user, s.id)
	if err != nil {
		s.n.logger.Warn("presence remove", "room", room, "err", err)
		return
	}
	if last {
		s.n.signal(room, chat.Signal{Kind: chat.SignalOffline, User: s.user})
	}
}

// Online lists who is present in room, if user may read it.
func (n *Node) Online(ctx context.Context, user, room string) ([]string, error) {
	if err := n.admit(ctx, room, user, false); err != nil {
		return nil, err
	}
	if n.cfg.Presence == nil {
		return []string{}, nil
	}
	online, err := n.cfg.Presence.Online(ctx, room)
	if err != nil {
		return nil, chat.Errorf(chat.ErrUnavailable, "presence unavailable")
	}
	if online == nil {
		online = []string{}
	}
	return online, nil
}

func (n *Node) signal(room string, sig chat.Signal) {
	if err := n.log.Signal(room, sig); err != nil {
		n.logger.Warn("signal", "room", room, "kind", sig.Kind, "err", err)
	}
}

// presenceLoop refreshes this node's presence entries and sweeps the expired
// entries of its rooms (another node's crash), announcing who left. Each
// departure is announced once: by the node whose sweep removed it.
func (n *Node) presenceLoop() {
	defer close(n.presenceDone)
	p := n.cfg.Presence
	if p == nil {
		return
	}
	t := time.NewTicker(n.cfg.PresenceExpiry / 3)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.PresenceExpiry/3)
		if err := p.Refresh(ctx, n.presenceEntries()); err != nil {
			n.logger.Warn("presence refresh", "err", err)
		}
		for _, h := range n.hubList() {
			gone, err := p.Expire(ctx, h.room)
			if err != nil {
				n.logger.Warn("presence sweep", "room", h.room, "err", err)
				break
			}
			for _, u := range gone {
				n.signal(h.room, chat.Signal{Kind: chat.SignalOffline, User: u})
			}
		}
		cancel()
	}
}

// presenceEntries lists the node's live subscriptions.
func (n *Node) presenceEntries() []presence.Entry {
	n.mu.Lock()
	ss := make([]*Session, 0, len(n.sessions))
	for s := range n.sessions {
		ss = append(ss, s)
	}
	n.mu.Unlock()
	var out []presence.Entry
	for _, s := range ss {
		s.mu.Lock()
		for room, sub := range s.rooms {
			if sub.active {
				out = append(out, presence.Entry{Room: room, User: s.user, Conn: s.id})
			}
		}
		s.mu.Unlock()
	}
	return out
}

// onSignal passes typing and presence notices to the hub's live subscribers,
// except the user they are about. They are droppable: a full queue skips
// them.
func (h *hub) onSignal(sig chat.Signal) {
	f := chat.ServerFrame{Type: chat.FrameTyping, Room: h.room, User: sig.User}
	if sig.Kind != chat.SignalTyping {
		f.Type, f.Online = chat.FramePresence, sig.Kind == chat.SignalOnline
	}
	frame, err := f.AppendJSON(make([]byte, 0, 96))
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, sub := range h.subs {
		if sub.live && sub.s.user != sig.User {
			sub.s.conn.Send(frame)
		}
	}
}
