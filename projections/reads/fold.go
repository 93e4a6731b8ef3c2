package reads

import (
	"context"
	"fmt"
	"slices"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Lookup names the stored state a batch depends on.
type Lookup struct {
	Markers  []Key        // memberships the batch may change or check
	Messages []MessageKey // targets of deletes
}

// State is what a Loader found for a Lookup: the stored markers and messages
// among those named (Unread left 0), in any order; absent ones are left out.
type State struct {
	Markers  []Marker
	Messages []Message
}

// Loader reads the state of a Lookup. Adapters read inside the write
// transaction where they have one.
type Loader func(ctx context.Context, l Lookup) (State, error)

// Batch is the outcome of folding events into a store: what Apply writes.
// Every write is idempotent: replaces and deletes keyed by (room, user) or
// (room, seq).
type Batch struct {
	Markers  []Marker     // new Read of every membership the batch made or moved, by (room, user)
	Removed  []Key        // memberships the batch ended, by (room, user)
	Messages []Message    // messages to store, by (room, seq)
	Deleted  []MessageKey // messages to remove, by (room, seq)
	// Position is the new position: the largest seq seen, or the old position
	// if every event was skipped.
	Position uint64
}

// Fold applies events to the state they depend on, read through load, and
// returns the states to write. It holds every rule of the read model:
//
//   - events with Seq <= position are skipped (and so are events out of order
//     within the batch), which makes redelivery harmless;
//   - events that are invalid (a bad room id, an unknown type, the
//     placeholder "invalid") advance the position and change nothing;
//   - room.created makes its author a member, and member.joined its User,
//     with the marker at max(their marker, the event's seq): messages before
//     joining are not unread; member.left ends the membership and its marker;
//   - read.moved by a member moves their marker to max(marker, Target), never
//     back; Target is capped at the event's own seq (nobody has read what was
//     not sent yet); from a non-member it is ignored;
//   - message.sent stores (room, seq, author), and moves its author's marker
//     to its seq if the author is a member (your own message is read);
//   - message.deleted by the message's author removes it (deleted messages
//     are not unread), the history read model's rule.
//
// Unread counts are not folded: stores count them when asked, so they never
// drift. Folding a batch again over any subset of its own writes gives the
// same result (markers only move up between membership events, which reset
// them to values the batch sets), so a store that cannot write data and
// position atomically may replay a batch whose position it did not write.
func Fold(ctx context.Context, position uint64, events []chat.Event, load Loader) (Batch, error) {
	b := Batch{Position: position}
	todo := make([]chat.Event, 0, len(events)) // one allocation, not one per doubling
	var lk Lookup
	seenKey, seenMsg := make(map[Key]bool), make(map[MessageKey]bool)
	for _, e := range events {
		if e.Seq <= b.Position {
			continue
		}
		b.Position = e.Seq
		if e.Type == chat.RoomCreated && e.Name == "" {
			e.Name = e.Room // the default name; the node always sets one
		}
		if e.Validate() != nil {
			continue // poison, unknown or invalid: skipped, position kept
		}
		var k Key
		switch e.Type {
		case chat.RoomCreated, chat.ReadMoved, chat.MessageSent:
			k = Key{e.Room, e.Author}
		case chat.MemberJoined, chat.MemberLeft:
			k = Key{e.Room, e.User}
		case chat.MessageDeleted:
			if mk := (MessageKey{e.Room, e.Target}); !seenMsg[mk] {
				seenMsg[mk] = true
				lk.Messages = append(lk.Messages, mk)
			}
		default:
			continue
		}
		if k.User != "" && !seenKey[k] {
			seenKey[k] = true
			lk.Markers = append(lk.Markers, k)
		}
		todo = append(todo, e)
	}
	if len(todo) == 0 {
		return b, nil
	}
	st, err := load(ctx, lk)
	if err != nil {
		return Batch{}, fmt.Errorf("load read markers: %w", err)
	}
	storedRead := make(map[Key]uint64, len(st.Markers))
	read := make(map[Key]uint64, len(lk.Markers)) // present: a member
	for _, m := range st.Markers {
		k := Key{m.Room, m.User}
		storedRead[k], read[k] = m.Read, m.Read
	}
	msgs := make(map[MessageKey]string) // present: stored, by author
	var touched []MessageKey
	for _, m := range st.Messages {
		msgs[MessageKey{m.Room, m.Seq}] = m.Author
	}
	join := func(k Key, seq uint64) { read[k] = max(read[k], seq) }
	move := func(k Key, to uint64) {
		if r, ok := read[k]; ok {
			read[k] = max(r, to)
		}
	}
	for _, e := range todo {
		switch e.Type {
		case chat.RoomCreated:
			join(Key{e.Room, e.Author}, e.Seq)
		case chat.MemberJoined:
			join(Key{e.Room, e.User}, e.Seq)
		case chat.MemberLeft:
			delete(read, Key{e.Room, e.User})
		case chat.ReadMoved:
			move(Key{e.Room, e.Author}, min(e.Target, e.Seq))
		case chat.MessageSent:
			mk := MessageKey{e.Room, e.Seq}
			msgs[mk] = e.Author
			touched = append(touched, mk)
			move(Key{e.Room, e.Author}, e.Seq)
		case chat.MessageDeleted:
			mk := MessageKey{e.Room, e.Target}
			if author, ok := msgs[mk]; ok && author == e.Author {
				delete(msgs, mk)
				touched = append(touched, mk)
			}
		}
	}
	for _, k := range lk.Markers {
		r, member := read[k]
		old, was := storedRead[k]
		switch {
		case member && (!was || r != old):
			b.Markers = append(b.Markers, Marker{Room: k.Room, User: k.User, Read: r})
		case !member && was:
			b.Removed = append(b.Removed, k)
		}
	}
	slices.SortFunc(b.Markers, CompareMarkers)
	slices.SortFunc(b.Removed, func(x, y Key) int {
		return CompareMarkers(Marker{Room: x.Room, User: x.User}, Marker{Room: y.Room, User: y.User})
	})
	done := make(map[MessageKey]bool, len(touched))
	for _, mk := range touched {
		if done[mk] {
			continue
		}
		done[mk] = true
		if author, ok := msgs[mk]; ok {
			b.Messages = append(b.Messages, Message{Room: mk.Room, Seq: mk.Seq, Author: author})
		} else {
			b.Deleted = append(b.Deleted, mk)
		}
	}
	slices.SortFunc(b.Messages, CompareMessages)
	slices.SortFunc(b.Deleted, func(x, y MessageKey) int {
		return CompareMessages(Message{Room: x.Room, Seq: x.Seq}, Message{Room: y.Room, Seq: y.Seq})
	})
	return b, nil
}
