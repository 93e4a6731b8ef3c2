package history_test

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
	"github.com/jetchat/jetchat/projections/history"
)

// randomEvents returns n valid events over two rooms and three users, with
// targets among the seqs already handed out (some unknown).
func randomEvents(rng *rand.Rand, first uint64, n int) []chat.Event {
	rooms, users, emojis := []string{"a", "b"}, []string{"ann", "bob", "cat"}, []string{"👍", "🎉"}
	var evs []chat.Event
	for i := range n {
		seq := first + uint64(i)
		e := chat.Event{
			ID: fmt.Sprintf("e%d", seq), Room: rooms[rng.IntN(2)], Author: users[rng.IntN(3)],
			Time: time.Unix(1_700_000_000, int64(seq)).UTC(), Seq: seq,
			Target: 1 + rng.Uint64N(seq), Text: fmt.Sprintf("t%d", seq), Emoji: emojis[rng.IntN(2)],
		}
		switch rng.IntN(7) {
		case 0, 1:
			e.Type = chat.MessageSent
			e.ID = fmt.Sprintf("m%d", rng.IntN(8)) // some retried sends
		case 2:
			e.Type = chat.MessageEdited
		case 3:
			e.Type = chat.MessageDeleted
		case 4:
			e.Type = chat.ReactionAdded
		case 5:
			e.Type = chat.ReactionRemove
		case 6:
			e.Type, e.User = chat.MemberJoined, e.Author
		}
		evs = append(evs, e)
	}
	return evs
}

type table map[history.MessageKey]history.Message

func (tb table) load(_ context.Context, l history.Lookup) ([]history.Message, error) {
	var out []history.Message
	for _, m := range tb {
		if slices.Contains(l.Seqs, history.MessageKey{Room: m.Room, Seq: m.Seq}) ||
			slices.Contains(l.IDs, history.ClientKey{Room: m.Room, Author: m.Author, ID: m.ID}) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (tb table) write(ms []history.Message) {
	for _, m := range ms {
		tb[history.MessageKey{Room: m.Room, Seq: m.Seq}] = m
	}
}

// TestFoldReplayAfterPartialWriteConverges is the property the MongoDB store
// relies on without transactions: if any subset of a batch's writes landed
// but not the position, folding the batch again from the old position gives
// the same state as writing it once.
func TestFoldReplayAfterPartialWriteConverges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for i := range 200 {
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		before := randomEvents(rng, 1, 20)
		batch := randomEvents(rng, 21, 15)

		base := make(table)
		b0, err := history.Fold(ctx, 0, before, base.load)
		if err != nil {
			t.Fatal(err)
		}
		base.write(b0.Messages)

		once := maps.Clone(base)
		b1, err := history.Fold(ctx, b0.Position, batch, once.load)
		if err != nil {
			t.Fatal(err)
		}
		once.write(b1.Messages)

		crashed := maps.Clone(base)
		for _, m := range b1.Messages {
			if rng.IntN(2) == 0 {
				crashed.write([]history.Message{m})
			}
		}
		b2, err := history.Fold(ctx, b0.Position, batch, crashed.load)
		if err != nil {
			t.Fatal(err)
		}
		crashed.write(b2.Messages)
		if !reflect.DeepEqual(crashed, once) || b2.Position != b1.Position {
			t.Fatalf("seed %d: replay after a partial write diverged:\n got %v\nwant %v", i, crashed, once)
		}
	}
}

// TestFoldSkipsAppliedAndOutOfOrder: events at or below the position, or
// behind an event already seen in the batch, have no effect.
func TestFoldSkipsAppliedAndOutOfOrder(t *testing.T) {
	t.Parallel()
	sent := func(seq uint64, id string) chat.Event {
		return chat.Event{Type: chat.MessageSent, ID: id, Room: "a", Author: "ann", Text: "x", Seq: seq, Time: time.Unix(int64(seq), 0)}
	}
	b, err := history.Fold(context.Background(), 5, []chat.Event{sent(4, "m4"), sent(5, "m5"), sent(7, "m7"), sent(6, "m6"), sent(7, "m7")}, table{}.load)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Messages) != 1 || b.Messages[0].Seq != 7 || b.Position != 7 {
		t.Fatalf("got %+v, want only seq 7 and position 7", b)
	}
}
