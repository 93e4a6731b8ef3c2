package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

// sharedReader is one projection on a Shared feed: it records every event
// it is given and checks each room's chain.
type sharedReader struct {
	t     *testing.T
	name  string
	mu    sync.Mutex
	seqs  []uint64
	prev  []uint64 // each event's Prev
	prevs *prevTable
	fails int // applies to fail first (a store that is down)
	done  chan error
	stop  context.CancelFunc
	ended bool // Run returned: apply must not be called again
}

// prevTable is each appended event's prev, as the test appended them.
type prevTable struct {
	mu sync.Mutex
	m  map[uint64]uint64
}

func (p *prevTable) get(seq uint64) (uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.m[seq]
	return v, ok
}

func runShared(t *testing.T, s interface {
	Run(context.Context, string, uint64, int, func(context.Context, []chat.Event) error) error
}, name string, position uint64, fails int, prevs *prevTable) *sharedReader {
	r := &sharedReader{t: t, name: name, prevs: prevs, fails: fails, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() {
		r.done <- s.Run(ctx, "proj-"+name, position, 64, func(_ context.Context, evs []chat.Event) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.ended {
				t.Errorf("%s: apply after Run returned", name)
			}
			if r.fails > 0 {
				r.fails--
				return errors.New("store down")
			}
			for _, ev := range evs {
				if n := len(r.seqs); n > 0 && ev.Seq <= r.seqs[n-1] {
					t.Errorf("%s: seq %d after %d (a duplicate or a reorder)", name, ev.Seq, r.seqs[n-1])
				}
				if ev.Seq <= position {
					t.Errorf("%s: seq %d at or before its position %d", name, ev.Seq, position)
				}
				r.seqs = append(r.seqs, ev.Seq)
				r.prev = append(r.prev, ev.Prev)
			}
			return nil
		})
	}()
	return r
}

// waitFor waits until the reader has every seq in (from, to].
func (r *sharedReader) waitFor(from, to uint64) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		n := len(r.seqs)
		var last uint64
		if n > 0 {
			last = r.seqs[n-1]
		}
		r.mu.Unlock()
		if last >= to {
			if uint64(n) != to-from {
				r.t.Fatalf("%s: %d events for (%d, %d]", r.name, n, from, to)
			}
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: %d events, up to %d; want up to %d", r.name, n, last, to)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *sharedReader) end() {
	r.t.Helper()
	r.stop()
	if err := <-r.done; err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended = true
	for i, seq := range r.seqs {
		if want, ok := r.prevs.get(seq); !ok || r.prev[i] != want {
			r.t.Errorf("%s: seq %d has prev %d, want %d", r.name, seq, r.prev[i], want)
		}
	}
}

// TestShared: projections at different positions on one Shared feed each
// get every event after their position once, in order, with its room's
// prev; one that starts behind the consumer makes it start over without
// the others seeing anything twice; a failing apply is retried; a Run that
// returned is never applied to again.
func TestShared(t *testing.T) {
	t.Parallel()
	l, _ := openLog(t)
	ctx := context.Background()
	prevs := &prevTable{m: map[uint64]uint64{}}
	lastOf := map[string]uint64{}
	appendN := func(from, to int) {
		for i := from; i < to; i++ {
			room := fmt.Sprint("r", i%7)
			seq, _, err := l.Append(ctx, msg(room, fmt.Sprint("m", i), "x"), false)
			if err != nil {
				t.Fatal(err)
			}
			prevs.mu.Lock()
			prevs.m[seq], lastOf[room] = lastOf[room], seq
			prevs.mu.Unlock()
		}
	}
	appendN(0, 300)
	s := l.Feed(nil).Shared("proj-shared-test")

	a := runShared(t, s, "a", 0, 2, prevs)
	b := runShared(t, s, "b", 150, 0, prevs)
	a.waitFor(0, 300)
	b.waitFor(150, 300)

	// c starts behind the consumer: it gets everything, the others nothing
	// twice (runShared's apply checks).
	c := runShared(t, s, "c", 0, 0, prevs)
	c.waitFor(0, 300)
	appendN(300, 400)
	for _, r := range []*sharedReader{a, c} {
		r.waitFor(0, 400)
	}
	b.waitFor(150, 400)

	b.end()
	appendN(400, 420)
	a.waitFor(0, 420)
	c.waitFor(0, 420)
	a.end()
	c.end()

	// Started again from a's position, alone: the rest, nothing before.
	d := runShared(t, s, "d", 410, 0, prevs)
	appendN(420, 430)
	d.waitFor(410, 430)
	d.end()
}
