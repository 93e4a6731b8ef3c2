package rooms_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/rooms"
)

// randomEvents returns n events over four rooms (and an invalid room id) and
// four users, with targets among the seqs already handed out. As in the log,
// a room's first event is its room.created (the log appends it only to a
// room without events), except for room "z", which is never created.
func randomEvents(rng *rand.Rand, created map[string]bool, first uint64, n int) []chat.Event {
	ids, users := []string{"a", "b", "c", "d", "z", "B!"}, []string{"ann", "bob", "cat", "dan"}
	var evs []chat.Event
	for i := range n {
		seq := first + uint64(i)
		e := chat.Event{
			ID: fmt.Sprintf("e%d", seq), Room: ids[rng.IntN(len(ids))], Author: users[rng.IntN(len(users))],
			Time: time.Unix(1_700_000_000, int64(seq)).UTC(), Seq: seq,
			Target: 1 + rng.Uint64N(seq), Text: fmt.Sprintf("t%d", seq), Emoji: "👍",
			User: users[rng.IntN(len(users))], Name: "N", Private: rng.IntN(2) == 0,
		}
		switch rng.IntN(10) {
		case 0:
			e.Type = chat.RoomCreated
		case 1, 2:
			e.Type = chat.MemberJoined
		case 3:
			e.Type = chat.MemberLeft
		case 4, 5:
			e.Type = chat.MessageSent
		case 6:
			e.Type = chat.MessageEdited
		case 7:
			e.Type = chat.MessageDeleted
		case 8:
			e.Type = chat.ReadMoved
		case 9:
			e.Type = chat.Invalid
		}
		switch {
		case e.Room == "z" && e.Type == chat.RoomCreated:
			e.Type = chat.MemberJoined
		case e.Room != "z" && e.Room != "B!" && !created[e.Room]:
			e.Type, created[e.Room] = chat.RoomCreated, true
		}
		evs = append(evs, e)
	}
	return evs
}

// table is a store's rows, written as the MongoDB adapter writes them.
type table struct {
	rooms   map[string]rooms.Room
	members map[rooms.Member]bool
}

func newTable() table {
	return table{rooms: make(map[string]rooms.Room), members: make(map[rooms.Member]bool)}
}

func (tb table) clone() table {
	return table{rooms: maps.Clone(tb.rooms), members: maps.Clone(tb.members)}
}

func (tb table) load(_ context.Context, l rooms.Lookup) (rooms.State, error) {
	st := rooms.State{Counts: make(map[string]int)}
	for _, id := range l.Rooms {
		if r, ok := tb.rooms[id]; ok {
			st.Rooms = append(st.Rooms, r)
		}
	}
	for _, id := range l.Count {
		st.Counts[id] = 0
		for m := range tb.members {
			if m.Room == id {
				st.Counts[id]++
			}
		}
	}
	for _, m := range l.Members {
		if tb.members[m] {
			st.Members = append(st.Members, m)
		}
	}
	return st, nil
}

func (tb table) join(m rooms.Member)  { tb.members[m] = true }
func (tb table) leave(m rooms.Member) { delete(tb.members, m) }
func (tb table) put(r rooms.Room)     { tb.rooms[r.ID] = r }

func (tb table) write(b rooms.Batch) {
	for _, m := range b.Joined {
		tb.join(m)
	}
	for _, m := range b.Left {
		tb.leave(m)
	}
	for _, r := range b.Rooms {
		tb.put(r)
	}
}

func fold(t *testing.T, tb table, pos uint64, evs []chat.Event) rooms.Batch {
	t.Helper()
	b, err := rooms.Fold(context.Background(), pos, evs, tb.load)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFoldReplayAfterPartialWriteConverges is the property the MongoDB store
// relies on without transactions: if some of a batch's writes landed but not
// the position (memberships first, rooms only once every membership landed,
// the order the adapter writes them in), folding the batch again from the old
// position gives the same state as writing it once.
func TestFoldReplayAfterPartialWriteConverges(t *testing.T) {
	t.Parallel()
	for i := range 300 {
		rng := rand.New(rand.NewPCG(uint64(i), 11))
		created := make(map[string]bool)
		before := randomEvents(rng, created, 1, 20)
		batch := randomEvents(rng, created, 21, 25)

		base := newTable()
		b0 := fold(t, base, 0, before)
		base.write(b0)

		once := base.clone()
		b1 := fold(t, once, b0.Position, batch)
		once.write(b1)

		crashed := base.clone()
		allMembers := rng.IntN(2) == 0
		for _, m := range b1.Joined {
			if allMembers || rng.IntN(2) == 0 {
				crashed.join(m)
			}
		}
		for _, m := range b1.Left {
			if allMembers || rng.IntN(2) == 0 {
				crashed.leave(m)
			}
		}
		if allMembers {
			for _, r := range b1.Rooms {
				if rng.IntN(2) == 0 {
					crashed.put(r)
				}
			}
		}
		b2 := fold(t, crashed, b0.Position, batch)
		crashed.write(b2)
		if !reflect.DeepEqual(crashed, once) || b2.Position != b1.Position {
			t.Fatalf("seed %d: replay after a partial write diverged:\n got %+v\nwant %+v", i, crashed, once)
		}
		for id, r := range once.rooms {
			n := 0
			for m := range once.members {
				if m.Room == id {
					n++
				}
			}
			if r.Members != n {
				t.Fatalf("seed %d: room %s counts %d members, its set holds %d", i, id, r.Members, n)
			}
		}
	}
}

// TestFoldSkipsAppliedAndOutOfOrder: events at or below the position, or
// behind an event already seen in the batch, have no effect.
func TestFoldSkipsAppliedAndOutOfOrder(t *testing.T) {
	t.Parallel()
	created := func(seq uint64, room string) chat.Event {
		return chat.Event{Type: chat.RoomCreated, ID: "c", Room: room, Author: "ann", Name: room, Seq: seq, Time: time.Unix(int64(seq), 0)}
	}
	b := fold(t, newTable(), 5, []chat.Event{created(4, "a"), created(5, "b"), created(7, "c"), created(6, "d"), created(7, "e")})
	if len(b.Rooms) != 1 || b.Rooms[0].ID != "c" || b.Position != 7 {
		t.Fatalf("got %+v, want only room c and position 7", b)
	}
	if !slices.Equal(b.Joined, []rooms.Member{{Room: "c", User: "ann"}}) || len(b.Left) != 0 {
		t.Fatalf("memberships %+v / %+v, want ann joined c", b.Joined, b.Left)
	}
}

// TestFoldRules walks the rules through one room at the fold level: the
// count comes from the member set the loader counted, not from the count
// stored with the room.
func TestFoldRules(t *testing.T) {
	t.Parallel()
	at := func(seq uint64) time.Time { return time.Unix(1_700_000_000+int64(seq), 0).UTC() }
	ev := func(seq uint64, typ chat.EventType, author string, f func(*chat.Event)) chat.Event {
		e := chat.Event{ID: fmt.Sprint("e", seq), Type: typ, Room: "a", Author: author, Seq: seq, Time: at(seq)}
		if f != nil {
			f(&e)
		}
		return e
	}
	tb := newTable()
	b := fold(t, tb, 0, []chat.Event{
		ev(1, chat.MessageSent, "ann", func(e *chat.Event) { e.Text = "no room yet" }),
		ev(2, chat.RoomCreated, "ann", func(e *chat.Event) { e.Private = true }),
		ev(3, chat.MemberJoined, "ann", func(e *chat.Event) { e.User = "bob" }),
		ev(4, chat.MessageSent, "bob", func(e *chat.Event) { e.Text = "hi" }),
		ev(5, chat.MessageEdited, "ann", func(e *chat.Event) { e.Target, e.Text = 4, "not ann's" }),
		ev(6, chat.ReadMoved, "ann", func(e *chat.Event) { e.Target = 4 }),
		ev(7, chat.Invalid, "", nil),
	})
	want := rooms.Room{ID: "a", Name: "a", Private: true, Creator: "ann", Created: at(2), Members: 2, LastActivity: at(5), Head: 6,
		Last: &rooms.Preview{Seq: 4, Author: "bob", Text: "hi", Time: at(4)}}
	if b.Position != 7 || len(b.Rooms) != 1 || !reflect.DeepEqual(b.Rooms[0], want) {
		t.Fatalf("got %+v (last %+v), want %+v", b, b.Rooms, want)
	}
	tb.write(b)

	// A stale stored count (a crash between memberships and rooms) is not
	// trusted: the loader's count is.
	stale := tb.rooms["a"]
	stale.Members = 9
	tb.put(stale)
	b = fold(t, tb, 7, []chat.Event{
		ev(8, chat.MemberJoined, "cat", func(e *chat.Event) { e.User = "cat" }),
		ev(9, chat.MemberLeft, "ann", func(e *chat.Event) { e.User = "ann" }),
		ev(10, chat.MessageDeleted, "bob", func(e *chat.Event) { e.Target = 4 }),
		ev(11, chat.MessageEdited, "bob", func(e *chat.Event) { e.Target, e.Text = 4, "after delete" }),
	})
	want.Members, want.Head, want.LastActivity = 2, 11, at(11)
	want.Last = &rooms.Preview{Seq: 4, Author: "bob", Time: at(4), Deleted: true}
	if len(b.Rooms) != 1 || !reflect.DeepEqual(b.Rooms[0], want) {
		t.Fatalf("got %+v, want %+v", b.Rooms, want)
	}
	if !slices.Equal(b.Joined, []rooms.Member{{Room: "a", User: "cat"}}) || !slices.Equal(b.Left, []rooms.Member{{Room: "a", User: "ann"}}) {
		t.Fatalf("joined %v left %v", b.Joined, b.Left)
	}
}

func TestPreviewText(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"short", "short"},
	} {
		if got := rooms.PreviewText(c.in); got != c.want {
			t.Errorf("PreviewText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	long := string(make([]rune, 0))
	for range 200 {
		long += "ä"
	}
	got := rooms.PreviewText(long)
	if n := len([]rune(got)); n != rooms.PreviewRunes || []rune(got)[n-1] != '…' {
		t.Errorf("PreviewText of 200 runes: %d runes ending %q", n, []rune(got)[n-1])
	}
}
