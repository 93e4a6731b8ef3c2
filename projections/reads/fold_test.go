package reads_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/reads"
)

// randomEvents returns n events over two rooms (and an invalid room id) and
// three users, with targets among the seqs already handed out and some
// beyond them.
func randomEvents(rng *rand.Rand, first uint64, n int) []chat.Event {
	ids, users := []string{"a", "b", "B!"}, []string{"ann", "bob", "cat"}
	var evs []chat.Event
	for i := range n {
		seq := first + uint64(i)
		e := chat.Event{
			ID: fmt.Sprintf("e%d", seq), Room: ids[rng.IntN(len(ids))], Author: users[rng.IntN(len(users))],
			Time: time.Unix(1_700_000_000, int64(seq)).UTC(), Seq: seq,
			Target: 1 + rng.Uint64N(seq+5), Text: "t", Name: "N", User: users[rng.IntN(len(users))],
		}
		e.Type = []chat.EventType{chat.RoomCreated, chat.MemberJoined, chat.MemberJoined, chat.MemberLeft,
			chat.MessageSent, chat.MessageSent, chat.MessageSent, chat.MessageDeleted, chat.ReadMoved, chat.ReadMoved, chat.Invalid}[rng.IntN(11)]
		if e.Type == chat.ReadMoved && rng.IntN(2) == 0 {
			e.Target = seq + 1 + rng.Uint64N(30) // beyond the event: a buggy or hostile client
		}
		evs = append(evs, e)
	}
	return evs
}

// table is a store's rows.
type table struct {
	markers  map[reads.Key]uint64
	messages map[reads.MessageKey]string
}

func newTable() table {
	return table{markers: make(map[reads.Key]uint64), messages: make(map[reads.MessageKey]string)}
}

func (tb table) clone() table {
	return table{markers: maps.Clone(tb.markers), messages: maps.Clone(tb.messages)}
}

func (tb table) load(_ context.Context, l reads.Lookup) (reads.State, error) {
	var st reads.State
	for _, k := range l.Markers {
		if r, ok := tb.markers[k]; ok {
			st.Markers = append(st.Markers, reads.Marker{Room: k.Room, User: k.User, Read: r})
		}
	}
	for _, k := range l.Messages {
		if a, ok := tb.messages[k]; ok {
			st.Messages = append(st.Messages, reads.Message{Room: k.Room, Seq: k.Seq, Author: a})
		}
	}
	return st, nil
}

// writes returns a batch's writes one by one, in any order a store may land
// them.
func (tb table) writes(b reads.Batch) []func() {
	var ws []func()
	for _, m := range b.Markers {
		ws = append(ws, func() { tb.markers[reads.Key{Room: m.Room, User: m.User}] = m.Read })
	}
	for _, k := range b.Removed {
		ws = append(ws, func() { delete(tb.markers, k) })
	}
	for _, m := range b.Messages {
		ws = append(ws, func() { tb.messages[reads.MessageKey{Room: m.Room, Seq: m.Seq}] = m.Author })
	}
	for _, k := range b.Deleted {
		ws = append(ws, func() { delete(tb.messages, k) })
	}
	return ws
}

func (tb table) write(b reads.Batch) {
	for _, w := range tb.writes(b) {
		w()
	}
}

func fold(t *testing.T, tb table, pos uint64, evs []chat.Event) reads.Batch {
	t.Helper()
	b, err := reads.Fold(context.Background(), pos, evs, tb.load)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFoldReplayAfterPartialWriteConverges is the property the MongoDB store
// relies on without transactions: if any subset of a batch's writes landed
// but not the position, folding the batch again from the old position gives
// the same state as writing it once.
func TestFoldReplayAfterPartialWriteConverges(t *testing.T) {
	t.Parallel()
	for i := range 500 {
		rng := rand.New(rand.NewPCG(uint64(i), 13))
		before := randomEvents(rng, 1, 25)
		batch := randomEvents(rng, 26, 20)

		base := newTable()
		b0 := fold(t, base, 0, before)
		base.write(b0)

		once := base.clone()
		b1 := fold(t, once, b0.Position, batch)
		once.write(b1)

		crashed := base.clone()
		for _, w := range crashed.writes(b1) {
			if rng.IntN(2) == 0 {
				w()
			}
		}
		b2 := fold(t, crashed, b0.Position, batch)
		crashed.write(b2)
		if !reflect.DeepEqual(crashed, once) || b2.Position != b1.Position {
			t.Fatalf("seed %d: replay after a partial write diverged:\n got %+v\nwant %+v", i, crashed, once)
		}
	}
}

// TestFoldRules walks the rules at the fold level.
func TestFoldRules(t *testing.T) {
	t.Parallel()
	ev := func(seq uint64, typ chat.EventType, author string, f func(*chat.Event)) chat.Event {
		e := chat.Event{ID: fmt.Sprint("e", seq), Type: typ, Room: "a", Author: author, Seq: seq, Time: time.Unix(int64(seq), 0), Name: "a", Text: "t"}
		if f != nil {
			f(&e)
		}
		return e
	}
	tb := newTable()
	b := fold(t, tb, 3, []chat.Event{
		ev(2, chat.RoomCreated, "zed", nil), // at or below the position: skipped
		ev(4, chat.RoomCreated, "ann", nil),
		ev(5, chat.MessageSent, "bob", nil), // bob is no member: stored, no marker
		ev(6, chat.ReadMoved, "bob", func(e *chat.Event) { e.Target = 5 }),
		ev(7, chat.MemberJoined, "ann", func(e *chat.Event) { e.User = "bob" }),
		ev(6, chat.MemberJoined, "cat", func(e *chat.Event) { e.User = "cat" }), // out of order: skipped
		ev(8, chat.MessageSent, "cat", nil),
		ev(9, chat.MessageDeleted, "cat", func(e *chat.Event) { e.Target = 8 }),
		ev(10, chat.MessageDeleted, "ann", func(e *chat.Event) { e.Target = 5 }), // not ann's
		ev(11, chat.ReadMoved, "ann", func(e *chat.Event) { e.Target = 99 }),     // capped at 11
		ev(12, chat.Invalid, "", nil),
		ev(13, chat.ReactionAdded, "ann", func(e *chat.Event) { e.Target, e.Emoji = 5, "👍" }), // not this model's
	})
	want := reads.Batch{
		Markers:  []reads.Marker{{Room: "a", User: "ann", Read: 11}, {Room: "a", User: "bob", Read: 7}},
		Messages: []reads.Message{{Room: "a", Seq: 5, Author: "bob"}},
		Deleted:  []reads.MessageKey{{Room: "a", Seq: 8}},
		Position: 13,
	}
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("got  %+v\nwant %+v", b, want)
	}
	tb.write(b)
	b = fold(t, tb, 13, []chat.Event{
		ev(14, chat.ReadMoved, "bob", func(e *chat.Event) { e.Target = 3 }), // backwards: no change
		ev(15, chat.MemberLeft, "ann", func(e *chat.Event) { e.User = "ann" }),
		ev(16, chat.ReadMoved, "ann", func(e *chat.Event) { e.Target = 16 }), // no longer a member
	})
	want = reads.Batch{Removed: []reads.Key{{Room: "a", User: "ann"}}, Position: 16}
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("got  %+v\nwant %+v", b, want)
	}
}
