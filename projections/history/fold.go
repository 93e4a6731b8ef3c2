package history

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jetchat/jetchat/pkg/chat"
)

// MessageKey identifies a stored message: its room and its message.sent seq.
type MessageKey struct {
	Room string
	Seq  uint64
}

// ClientKey identifies a message by its sender's id, unique per room: the
// idempotency key of a send, beyond JetStream's deduplication window.
type ClientKey struct {
	Room, Author, ID string
}

// Lookup names the stored messages a batch depends on.
type Lookup struct {
	Seqs []MessageKey // targets of edits, deletes and reactions
	IDs  []ClientKey  // sends: a retry stored under another seq, or a send replayed
}

// Loader reads the stored messages that match any key of a Lookup, in any
// order; messages that do not exist are absent. Adapters read inside the
// write transaction where they have one.
type Loader func(ctx context.Context, l Lookup) ([]Message, error)

// Batch is the outcome of folding events into a store: what Apply writes.
type Batch struct {
	// Messages holds the new full state of every message the batch touched,
	// ordered by (room, seq). Writing it is idempotent: a replace keyed by
	// (room, seq).
	Messages []Message
	// Position is the new position: the largest seq seen, or the old position
	// if every event was skipped.
	Position uint64
}

// Fold applies events to the messages they depend on, read through load, and
// returns the states to write. It holds every rule of the read model:
//
//   - events with Seq <= position are skipped (and so are events out of order
//     within the batch), which makes redelivery harmless;
//   - events that are invalid, of an unknown type or of a type this model
//     ignores advance the position and change nothing;
//   - message.sent creates the message keyed by its seq, unless its
//     (room, author, id) is already stored under another seq (a retried send
//     outside the deduplication window): then it is ignored;
//   - message.edited sets the text, Edited and EditedAt, and message.deleted
//     leaves a tombstone (Deleted, text and reactions cleared); both only for
//     the message's author and only while it is not deleted;
//   - reaction.added and reaction.removed add or remove the (emoji, author)
//     pair, set semantics, while the message is not deleted.
//
// Folding a batch again over its own result gives the same result, so a
// store that cannot write data and position atomically (MongoDB) may replay a
// batch whose data was written but whose position was not.
func Fold(ctx context.Context, position uint64, events []chat.Event, load Loader) (Batch, error) {
	b := Batch{Position: position}
	todo := make([]int, 0, len(events)) // indexes into events: their copies were a tenth of the node's allocations
	var lk Lookup
	for i, e := range events {
		if e.Seq <= b.Position {
			continue
		}
		b.Position = e.Seq
		if e.Validate() != nil {
			continue // poison or unknown: skipped, position kept
		}
		switch e.Type {
		case chat.MessageSent:
			lk.IDs = append(lk.IDs, ClientKey{e.Room, e.Author, e.ID})
		case chat.MessageEdited, chat.MessageDeleted, chat.ReactionAdded, chat.ReactionRemove:
			lk.Seqs = append(lk.Seqs, MessageKey{e.Room, e.Target})
		default:
			continue
		}
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		return b, nil
	}

	f := folder{msgs: make(map[MessageKey]*state), byClient: make(map[ClientKey]uint64)}
	stored, err := load(ctx, lk)
	if err != nil {
		return Batch{}, fmt.Errorf("load messages: %w", err)
	}
	for _, m := range stored {
		f.add(m)
	}
	for _, i := range todo {
		e := events[i]
		f.apply(e)
	}
	b.Messages = make([]Message, 0, len(f.msgs))
	for _, s := range f.msgs {
		if s.dirty {
			b.Messages = append(b.Messages, s.message())
		}
	}
	slices.SortFunc(b.Messages, Compare)
	return b, nil
}

// Compare orders messages by (room, seq), the order of Dump.
func Compare(a, b Message) int {
	if c := cmp.Compare(a.Room, b.Room); c != 0 {
		return c
	}
	return cmp.Compare(a.Seq, b.Seq)
}

type state struct {
	m         Message
	reactions map[string]map[string]struct{} // emoji -> users
	dirty     bool
}

type folder struct {
	msgs     map[MessageKey]*state
	byClient map[ClientKey]uint64
}

func (f *folder) add(m Message) *state {
	s := &state{m: m} // reactions: made by the first one (most messages have none)
	s.m.Reactions = nil
	for _, r := range m.Reactions {
		for _, u := range r.Users {
			s.react(r.Emoji, u, true)
		}
	}
	f.msgs[MessageKey{m.Room, m.Seq}] = s
	f.byClient[ClientKey{m.Room, m.Author, m.ID}] = m.Seq
	return s
}

func (f *folder) apply(e chat.Event) {
	if e.Type == chat.MessageSent {
		if _, ok := f.byClient[ClientKey{e.Room, e.Author, e.ID}]; ok {
			return // the same seq replayed, or a retry under a new seq
		}
		s := f.add(Message{Room: e.Room, Seq: e.Seq, ID: e.ID, Author: e.Author, Time: e.Time.UTC(), Text: e.Text})
		s.dirty = true
		return
	}
	s := f.msgs[MessageKey{e.Room, e.Target}]
	if s == nil || s.m.Deleted {
		return
	}
	switch e.Type {
	case chat.MessageEdited:
		if e.Author != s.m.Author {
			return
		}
		s.m.Text, s.m.Edited, s.m.EditedAt = e.Text, true, e.Time.UTC()
	case chat.MessageDeleted:
		if e.Author != s.m.Author {
			return
		}
		s.m.Deleted, s.m.Text = true, ""
		clear(s.reactions)
	case chat.ReactionAdded:
		s.react(e.Emoji, e.Author, true)
	case chat.ReactionRemove:
		s.react(e.Emoji, e.Author, false)
	}
	s.dirty = true
}

func (s *state) react(emoji, user string, on bool) {
	users := s.reactions[emoji]
	if on {
		if users == nil {
			if s.reactions == nil {
				s.reactions = make(map[string]map[string]struct{})
			}
			users = make(map[string]struct{})
			s.reactions[emoji] = users
		}
		users[user] = struct{}{}
		return
	}
	delete(users, user)
	if len(users) == 0 {
		delete(s.reactions, emoji)
	}
}

func (s *state) message() Message {
	m := s.m
	m.Reactions = nil
	for emoji, users := range s.reactions {
		r := Reaction{Emoji: emoji}
		for u := range users {
			r.Users = append(r.Users, u)
		}
		slices.Sort(r.Users)
		m.Reactions = append(m.Reactions, r)
	}
	slices.SortFunc(m.Reactions, func(a, b Reaction) int { return cmp.Compare(a.Emoji, b.Emoji) })
	return m
}
