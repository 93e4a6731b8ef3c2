package recent_test

import (
	"context"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/recent"
	"github.com/jetchat/jetchat/projections/recent/storetest"
)

// TestMemory holds the reference model to the contract, so a failure in an
// adapter is the adapter's.
func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T, n int) storetest.Setup {
		m := recent.NewMemory(n, 0)
		return storetest.Setup{Store: m, Lose: func(room string, seqs ...uint64) { recent.Lose(m, room, seqs...) }}
	})
}

// TestMemoryStartsAtPosition: the embedded node starts the store at the
// stream's head; older events are skipped and windows fill from there.
func TestMemoryStartsAtPosition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := recent.NewMemory(0, 10)
	ev := func(seq, prev uint64) chat.Event {
		return chat.Event{Type: chat.MessageSent, ID: "m", Room: "a", Author: "ann", Text: "x", Seq: seq, Prev: prev, Time: time.Unix(int64(seq), 0).UTC()}
	}
	if err := m.Apply(ctx, []chat.Event{ev(9, 0), ev(10, 9), ev(12, 10)}); err != nil {
		t.Fatal(err)
	}
	got, err := m.Events(ctx, "a", recent.DefaultN+1)
	if err != nil || len(got) != 1 || got[0].Seq != 12 {
		t.Fatalf("events %+v, %v; want only seq 12", got, err)
	}
	if pos, _ := m.Position(ctx); pos != 12 {
		t.Fatalf("position %d, want 12", pos)
	}
}

func TestChain(t *testing.T) {
	t.Parallel()
	w := []chat.Event{{Seq: 2, Prev: 1}, {Seq: 4, Prev: 2}, {Seq: 7, Prev: 5}, {Seq: 8, Prev: 7}, {Seq: 9, Prev: 8}}
	for _, c := range []struct {
		n    int
		want []uint64
	}{{10, []uint64{7, 8, 9}}, {2, []uint64{8, 9}}, {1, []uint64{9}}, {0, nil}} {
		var got []uint64
		for _, e := range recent.Chain(w, c.n) {
			got = append(got, e.Seq)
		}
		if len(got) != len(c.want) || (len(got) > 0 && got[0] != c.want[0]) {
			t.Errorf("Chain(n=%d) = %v, want %v", c.n, got, c.want)
		}
	}
	if recent.Chain(nil, 5) != nil {
		t.Error("Chain of an empty window is not nil")
	}
}
