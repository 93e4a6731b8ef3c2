package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/rooms"
)

// admit checks that user may read and write room. With join, a user's first
// visit to a public room makes them a member (member.joined).
func (n *Node) admit(ctx context.Context, room, user string, join bool) error {
	r, err := n.dir.Room(ctx, room)
	if err != nil {
		return err
	}
	member, err := n.dir.IsMember(ctx, room, user)
	if err != nil {
		return err
	}
	switch {
	case member:
		return nil
	case r.Private:
		return chat.ErrNotMember
	case !join:
		return nil // public rooms are readable by anyone signed in
	}
	// The id is the room's head: two connections of the user joining at
	// once append one member.joined (the log deduplicates it), while a
	// join after a leave (a later head) is a new one.
	head, err := n.log.Head(ctx, room)
	if err != nil {
		return err
	}
	ev := chat.Event{ID: fmt.Sprintf("auto-join-%d", head), Type: chat.MemberJoined, Room: room, Author: user, User: user, Time: time.Now().UTC()}
	if _, err := n.append(ctx, ev, false); err != nil {
		return err
	}
	return n.dir.AddMember(ctx, room, chat.Member{User: user, Joined: ev.Time})
}

// append stores an event and counts it.
func (n *Node) append(ctx context.Context, ev chat.Event, expectNew bool) (chat.ServerFrame, error) {
	if err := ev.Validate(); err != nil {
		return chat.ServerFrame{}, err
	}
	seq, dup, err := n.log.Append(ctx, ev, expectNew)
	if err != nil {
		return chat.ServerFrame{}, err
	}
	n.Stats.Appended.Add(1)
	if dup {
		n.Stats.Duplicates.Add(1)
	}
	return chat.ServerFrame{Type: chat.FrameAck, Room: ev.Room, ID: ev.ID, Seq: seq, Dup: dup}, nil
}

// act turns a message-level action into an event. The room must have been
// joined on this connection; edits and deletes are the author's only.
func (s *Session) act(ctx context.Context, f chat.ClientFrame) error {
	if f.Room == "" {
		return chat.Errorf(chat.ErrBadRequest, "%s needs a room", f.Type)
	}
	if !s.awaitJoin(f.Room) {
		return chat.Errorf(chat.ErrNotJoined, "join %s before %s", f.Room, f.Type)
	}
	if err := chat.ValidateClientID(f.ID); err != nil {
		return err
	}
	ev := chat.Event{ID: f.ID, Room: f.Room, Author: s.user, Time: time.Now().UTC(), Target: f.Target}
	switch f.Type {
	case chat.FrameSend:
		ev.Type, ev.Text = chat.MessageSent, f.Text
	case chat.FrameEdit:
		ev.Type, ev.Text = chat.MessageEdited, f.Text
	case chat.FrameDelete:
		ev.Type = chat.MessageDeleted
	case chat.FrameReact:
		ev.Type, ev.Emoji = chat.ReactionAdded, f.Emoji
	case chat.FrameUnreact:
		ev.Type, ev.Emoji = chat.ReactionRemove, f.Emoji
	case chat.FrameRead:
		ev.Type = chat.ReadMoved
	}
	if err := ev.Validate(); err != nil {
		return err
	}
	if err := s.n.checkTarget(ctx, ev); err != nil {
		return err
	}
	if err := s.allowUser(ctx); err != nil {
		return err
	}
	if ev.Type == chat.MessageSent {
		return s.sendPipelined(f, ev)
	}
	ack, err := s.n.append(ctx, ev, false)
	if err != nil {
		return err
	}
	ack.Ref = f.Ref
	s.reply(ack)
	return nil
}

// checkTarget checks the message an edit, delete or reaction refers to.
func (n *Node) checkTarget(ctx context.Context, ev chat.Event) error {
	switch ev.Type {
	case chat.MessageEdited, chat.MessageDeleted, chat.ReactionAdded, chat.ReactionRemove:
	default:
		return nil
	}
	target, err := n.log.Get(ctx, ev.Room, ev.Target)
	if err != nil {
		return err
	}
	if target.Type != chat.MessageSent {
		return chat.Errorf(chat.ErrBadRequest, "target %d is not a message", ev.Target)
	}
	if (ev.Type == chat.MessageEdited || ev.Type == chat.MessageDeleted) && target.Author != ev.Author {
		return chat.Errorf(chat.ErrForbidden, "only the author may %s message %d", map[chat.EventType]string{chat.MessageEdited: "edit", chat.MessageDeleted: "delete"}[ev.Type], ev.Target)
	}
	return nil
}

func (s *Session) create(ctx context.Context, f chat.ClientFrame) error {
	ack, err := s.n.CreateRoom(ctx, s.user, f.Room, f.Name, f.Private, f.ID)
	if err != nil {
		return err
	}
	ack.Ref = f.Ref
	s.reply(ack)
	return nil
}

// CreateRoom creates a room whose creator is user. The room's first event is
// room.created, appended only if the room has no event (so exactly one of
// two racing creators wins); a retry under the same id answers dup.
func (n *Node) CreateRoom(ctx context.Context, user, room, name string, private bool, id string) (chat.ServerFrame, error) {
	if err := chat.ValidateRoomID(room); err != nil {
		return chat.ServerFrame{}, err
	}
	if name == "" {
		name = room
	}
	if id == "" {
		return chat.ServerFrame{}, chat.Errorf(chat.ErrBadRequest, "create needs an id (the idempotency key)")
	}
	ev := chat.Event{ID: id, Type: chat.RoomCreated, Room: room, Author: user, Time: time.Now().UTC(), Name: name, Private: private}
	ack, err := n.append(ctx, ev, true)
	if errors.Is(err, chat.ErrRoomExists) {
		n.repairDirectory(ctx, room)
	}
	if err != nil {
		return ack, err
	}
	if err := n.recordRoom(ctx, ev); err != nil {
		return chat.ServerFrame{}, err
	}
	return ack, nil
}

// recordRoom writes a room.created event to the directory (idempotent).
func (n *Node) recordRoom(ctx context.Context, ev chat.Event) error {
	err := n.dir.CreateRoom(ctx, chat.Room{ID: ev.Room, Name: ev.Name, Private: ev.Private, Creator: ev.Author, Created: ev.Time})
	if err != nil && !errors.Is(err, chat.ErrRoomExists) {
		return err
	}
	return n.dir.AddMember(ctx, ev.Room, chat.Member{User: ev.Author, Joined: ev.Time})
}

// repairDirectory records a room the log holds but the directory lacks (a
// node stopped between the two writes): the log is the truth.
func (n *Node) repairDirectory(ctx context.Context, room string) {
	if _, err := n.dir.Room(ctx, room); !errors.Is(err, chat.ErrRoomNotFound) {
		return
	}
	var first chat.Event
	_ = n.log.Replay(ctx, room, 0, math.MaxUint64, func(ev chat.Event) error {
		first = ev
		return errStop
	})
	if first.Type == chat.RoomCreated {
		if err := n.recordRoom(ctx, first); err != nil {
			n.logger.Warn("repair directory", "room", room, "err", err)
		}
	}
}

var errStop = errors.New("stop")

func (s *Session) invite(ctx context.Context, f chat.ClientFrame) error {
	ack, err := s.n.Invite(ctx, s.user, f.Room, f.User, f.ID)
	if err != nil {
		return err
	}
	ack.Ref = f.Ref
	s.reply(ack)
	return nil
}

// Invite makes invitee a member of a private room; only its creator may.
func (n *Node) Invite(ctx context.Context, user, room, invitee, id string) (chat.ServerFrame, error) {
	if err := chat.ValidateUserID(invitee); err != nil {
		return chat.ServerFrame{}, err
	}
	r, err := n.dir.Room(ctx, room)
	if err != nil {
		return chat.ServerFrame{}, err
	}
	if !r.Private {
		return chat.ServerFrame{}, chat.Errorf(chat.ErrBadRequest, "public rooms need no invite")
	}
	if r.Creator != user {
		return chat.ServerFrame{}, chat.Errorf(chat.ErrForbidden, "only the room's creator may invite")
	}
	ev := chat.Event{ID: id, Type: chat.MemberJoined, Room: room, Author: user, User: invitee, Time: time.Now().UTC()}
	ack, err := n.append(ctx, ev, false)
	if err != nil {
		return ack, err
	}
	return ack, n.dir.AddMember(ctx, room, chat.Member{User: invitee, Joined: ev.Time})
}

// leave ends the user's membership (member.left) and unsubscribes.
func (s *Session) leave(ctx context.Context, f chat.ClientFrame) error {
	if err := chat.ValidateClientID(f.ID); err != nil {
		return err
	}
	if _, err := s.n.dir.Room(ctx, f.Room); err != nil {
		return err
	}
	member, err := s.n.dir.IsMember(ctx, f.Room, s.user)
	if err != nil {
		return err
	}
	if !member {
		// Nothing to end (or a retry of a leave that was stored): no event,
		// so a non-member cannot write into the room.
		if s.subscribed(f.Room) {
			return s.unsubscribe(f)
		}
		s.reply(chat.ServerFrame{Type: chat.FrameLeft, Ref: f.Ref, Room: f.Room})
		return nil
	}
	ev := chat.Event{ID: f.ID, Type: chat.MemberLeft, Room: f.Room, Author: s.user, User: s.user, Time: time.Now().UTC()}
	ack, err := s.n.append(ctx, ev, false)
	if err != nil {
		return err
	}
	if err := s.n.dir.RemoveMember(ctx, f.Room, s.user); err != nil {
		return err
	}
	ack.Ref = f.Ref
	s.reply(ack)
	if s.subscribed(f.Room) {
		_ = s.unsubscribe(f) // also cancels a join in progress
	}
	return nil
}

func (s *Session) typing(f chat.ClientFrame) error {
	if !s.joined(f.Room) {
		return chat.Errorf(chat.ErrNotJoined, "join %s before typing", f.Room)
	}
	if err := s.n.log.Signal(f.Room, chat.Signal{Kind: chat.SignalTyping, User: s.user}); err != nil {
		return chat.ErrLogDown
	}
	return nil
}

// RoomView is a room as one user may see it.
type RoomView struct {
	chat.Room
	Head   uint64 `json:"head,omitempty"`
	Member bool   `json:"member"`
	// From the projections, in lists (absent until they have the room):
	Members      int            `json:"members,omitempty"`
	LastActivity time.Time      `json:"last_activity,omitzero"`
	Last         *rooms.Preview `json:"last,omitempty"`
	Read         *uint64        `json:"read,omitempty"`   // your read marker
	Unread       *int           `json:"unread,omitempty"` // messages after it by others, capped at 1,000
}

// Rooms lists the public rooms and the private rooms user belongs to.
func (n *Node) Rooms(ctx context.Context, user string) ([]RoomView, error) {
	rooms, err := n.dir.Rooms(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RoomView, 0, len(rooms))
	for _, r := range rooms {
		member, err := n.dir.IsMember(ctx, r.ID, user)
		if err != nil {
			return nil, err
		}
		if r.Private && !member {
			continue
		}
		out = append(out, RoomView{Room: r, Member: member})
	}
	n.decorate(ctx, user, out)
	return out, nil
}

// RoomInfo returns a room and its head, if user may read it.
func (n *Node) RoomInfo(ctx context.Context, user, room string) (RoomView, error) {
	if err := chat.ValidateRoomID(room); err != nil {
		return RoomView{}, err
	}
	if err := n.admit(ctx, room, user, false); err != nil {
		return RoomView{}, err
	}
	r, err := n.dir.Room(ctx, room)
	if err != nil {
		return RoomView{}, err
	}
	member, err := n.dir.IsMember(ctx, room, user)
	if err != nil {
		return RoomView{}, err
	}
	head, err := n.log.Head(ctx, room)
	if err != nil {
		return RoomView{}, err
	}
	return RoomView{Room: r, Head: head, Member: member}, nil
}

// History returns a page of a room's message history, if user may read the
// room. The page reflects the history projection, which may trail the log
// by the events it has not applied yet.
func (n *Node) History(ctx context.Context, user, room string, p history.Page) ([]history.Message, error) {
	if err := chat.ValidateRoomID(room); err != nil {
		return nil, err
	}
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	if err := n.admit(ctx, room, user, false); err != nil {
		return nil, err
	}
	if n.cfg.History == nil {
		return nil, chat.Errorf(chat.ErrUnavailable, "history is not served by this node")
	}
	ctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	msgs, err := n.cfg.History.Messages(ctx, room, p)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w: %w", room, chat.ErrHistoryDown, err)
	}
	if msgs == nil {
		msgs = []history.Message{}
	}
	return msgs, nil
}

func (s *Session) history(ctx context.Context, f chat.ClientFrame) error {
	msgs, err := s.n.History(ctx, s.user, f.Room, history.Page{Before: f.Before, After: f.After, Limit: f.Limit})
	if err != nil {
		return err
	}
	s.reply(chat.ServerFrame{Type: chat.FrameHistory, Ref: f.Ref, Room: f.Room, Messages: msgs})
	return nil
}

// Members lists a room's members, if user may read the room.
func (n *Node) Members(ctx context.Context, user, room string) ([]chat.Member, error) {
	if err := chat.ValidateRoomID(room); err != nil {
		return nil, err
	}
	if err := n.admit(ctx, room, user, false); err != nil {
		return nil, err
	}
	return n.dir.Members(ctx, room)
}

// tokenBucket limits a connection's frames: rate per second, burst at most.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	at     time.Time
}

func newTokenBucket(rate float64, burst int) tokenBucket {
	return tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

func (b *tokenBucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.at.IsZero() {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.at).Seconds()*b.rate)
	}
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *tokenBucket) retryAfter() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	need := 1 - b.tokens
	if need <= 0 || b.rate <= 0 {
		return 0
	}
	return time.Duration(need / b.rate * float64(time.Second))
}
