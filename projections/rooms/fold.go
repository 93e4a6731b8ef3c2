package rooms

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Lookup names the stored state a batch depends on.
type Lookup struct {
	Rooms   []string // every room with an event in the batch
	Count   []string // rooms whose membership the batch may change
	Members []Member // memberships the batch adds or removes
}

// State is what a Loader found for a Lookup.
type State struct {
	// Rooms holds the stored rooms among Lookup.Rooms, in any order; rooms
	// that do not exist are absent.
	Rooms []Room
	// Counts holds, for every room of Lookup.Count, its members counted in
	// the member set (not the count stored with the room, which a crash
	// between the two writes may have left behind).
	Counts map[string]int
	// Members holds the stored memberships among Lookup.Members.
	Members []Member
}

// Loader reads the state of a Lookup. Adapters read inside the write
// transaction where they have one.
type Loader func(ctx context.Context, l Lookup) (State, error)

// Batch is the outcome of folding events into a store: what Apply writes.
type Batch struct {
	// Rooms holds the new full state of every room the batch changed, by id.
	// Writing it is idempotent: a replace keyed by id.
	Rooms []Room
	// Joined and Left are the memberships to add and to remove, by (room,
	// user): set semantics, so writing them again changes nothing.
	Joined, Left []Member
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
//   - room.created creates the room (name from the event, default the id;
//     private; creator = author, who is its first member); a second
//     room.created of the room counts only as an event of the room;
//   - events of a room without room.created are ignored;
//   - every other event of an existing room sets its Head to its seq, and
//     every one but read.moved sets LastActivity to its ts;
//   - member.joined adds User to the member set and member.left removes it;
//     Members is the size of the set;
//   - message.sent makes the message the room's Last (text cut by
//     PreviewText); message.edited and message.deleted of that message by
//     its author, while it is not deleted, update or clear its text (the
//     history read model's rules, so the preview shows what history shows).
//
// Folding a batch again over any state its writes may have left, provided
// the memberships were written before the rooms (MongoDB writes them in that
// order), gives the same result: rooms are replaced whole, the count comes
// from the member set, and every rule sets values rather than accumulating
// them; and room.created is a room's first event in the log (it is appended
// only to a room without events), so no event of the batch precedes the
// creation of a room that the replay finds stored. So a store that cannot
// write data and position atomically may replay a batch whose data was
// written but whose position was not.
func Fold(ctx context.Context, position uint64, events []chat.Event, load Loader) (Batch, error) {
	b := Batch{Position: position}
	todo := make([]chat.Event, 0, len(events)) // one allocation, not one per doubling
	var lk Lookup
	seenRoom, seenCount, seenMember := make(map[string]bool), make(map[string]bool), make(map[Member]bool)
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
		if !seenRoom[e.Room] {
			seenRoom[e.Room] = true
			lk.Rooms = append(lk.Rooms, e.Room)
		}
		if m, ok := membership(e); ok {
			if !seenCount[e.Room] {
				seenCount[e.Room] = true
				lk.Count = append(lk.Count, e.Room)
			}
			if !seenMember[m] {
				seenMember[m] = true
				lk.Members = append(lk.Members, m)
			}
		}
		todo = append(todo, e)
	}
	if len(todo) == 0 {
		return b, nil
	}
	st, err := load(ctx, lk)
	if err != nil {
		return Batch{}, fmt.Errorf("load rooms: %w", err)
	}
	f := folder{
		rooms:   make(map[string]*roomState, len(st.Rooms)),
		counts:  st.Counts,
		members: make(map[Member]bool, len(lk.Members)),
	}
	for _, r := range st.Rooms {
		if n, ok := st.Counts[r.ID]; ok {
			r.Members = n
		}
		f.rooms[r.ID] = &roomState{r: r}
	}
	stored := make(map[Member]bool, len(st.Members))
	for _, m := range st.Members {
		stored[m], f.members[m] = true, true
	}
	for _, e := range todo {
		f.apply(e)
	}
	for _, s := range f.rooms {
		if s.dirty {
			b.Rooms = append(b.Rooms, s.r)
		}
	}
	slices.SortFunc(b.Rooms, func(a, b Room) int { return cmp.Compare(a.ID, b.ID) })
	for _, m := range lk.Members {
		switch now := f.members[m]; {
		case now && !stored[m]:
			b.Joined = append(b.Joined, m)
		case !now && stored[m]:
			b.Left = append(b.Left, m)
		}
	}
	slices.SortFunc(b.Joined, CompareMembers)
	slices.SortFunc(b.Left, CompareMembers)
	return b, nil
}

// membership returns the membership an event may change.
func membership(e chat.Event) (Member, bool) {
	switch e.Type {
	case chat.RoomCreated:
		return Member{e.Room, e.Author}, true
	case chat.MemberJoined, chat.MemberLeft:
		return Member{e.Room, e.User}, true
	}
	return Member{}, false
}

type roomState struct {
	r     Room
	dirty bool
}

type folder struct {
	rooms   map[string]*roomState
	counts  map[string]int
	members map[Member]bool
}

func (f *folder) apply(e chat.Event) {
	s := f.rooms[e.Room]
	if s == nil {
		if e.Type != chat.RoomCreated {
			return // no room.created: not a room
		}
		s = &roomState{r: Room{
			ID: e.Room, Name: e.Name, Private: e.Private, Creator: e.Author,
			Created: e.Time.UTC(), Members: f.counts[e.Room],
		}}
		f.rooms[e.Room] = s
		f.set(s, Member{e.Room, e.Author}, true)
	}
	s.dirty = true
	s.r.Head = max(s.r.Head, e.Seq)
	if e.Type != chat.ReadMoved {
		s.r.LastActivity = e.Time.UTC()
	}
	switch e.Type {
	case chat.MemberJoined:
		f.set(s, Member{e.Room, e.User}, true)
	case chat.MemberLeft:
		f.set(s, Member{e.Room, e.User}, false)
	case chat.MessageSent:
		s.r.Last = &Preview{Seq: e.Seq, Author: e.Author, Text: PreviewText(e.Text), Time: e.Time.UTC()}
	case chat.MessageEdited, chat.MessageDeleted:
		l := s.r.Last
		if l == nil || l.Seq != e.Target || l.Author != e.Author || l.Deleted {
			return
		}
		p := *l // never write through a pointer the loader handed out
		if e.Type == chat.MessageEdited {
			p.Text = PreviewText(e.Text)
		} else {
			p.Text, p.Deleted = "", true
		}
		s.r.Last = &p
	}
}

// set puts m in or out of the member set, keeping the room's count.
func (f *folder) set(s *roomState, m Member, in bool) {
	if f.members[m] == in {
		return
	}
	f.members[m] = in
	if in {
		s.r.Members++
	} else {
		s.r.Members--
	}
}
