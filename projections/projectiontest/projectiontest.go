// Package projectiontest is what the read models' contract suites (history,
// rooms, reads and recent storetest) share: the idempotence checks every
// store must pass alike (applying a batch again, redelivering overlapping
// batches and splitting the log anyhow all leave the state and position of
// one clean apply), an event log that stamps events as the stream does, and
// the helpers that open, apply to and check stores.
//
// It is for tests only: no shipped binary may import it.
package projectiontest

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections"
)

// Case is one read model's store under the idempotence checks.
type Case[S projections.Store, D any] struct {
	// New gives a fresh, empty store in a database of its own and closes it
	// when t ends. It must not call t.Parallel: a subtest calls it more than once.
	New func(t *testing.T) S
	// Reference gives the read model's in-memory reference model, empty.
	Reference func() S
	// Dump returns what a store holds, in a form two stores can be compared in.
	Dump func(t *testing.T, s S) D
	// Equal fails t unless got and want are the same state.
	Equal func(t *testing.T, got, want D)
	// Events is a log with every rule of the read model in play: at least 3
	// events, as a stream would hand them out.
	Events []chat.Event
}

// Idempotence runs, each as a parallel subtest of t, ReappliedBatchChangesNothing,
// OverlappingBatchesApplyOnce and RandomSplitsMatchOneBatch.
func Idempotence[S projections.Store, D any](t *testing.T, c Case[S, D]) {
	all := c.Events
	last := all[len(all)-1].Seq

	t.Run("ReappliedBatchChangesNothing", func(t *testing.T) {
		t.Parallel()
		s := c.New(t)
		Apply(t, s, all)
		before := c.Dump(t, s)
		pos := Position(t, s, last)
		Apply(t, s, all)
		Apply(t, s, all[len(all)/2:])
		c.Equal(t, c.Dump(t, s), before)
		Position(t, s, pos)
	})

	t.Run("OverlappingBatchesApplyOnce", func(t *testing.T) {
		t.Parallel()
		s := c.New(t)
		ref := c.Reference()
		Apply(t, ref, all)
		ApplyRedelivered(t, s, all, rand.New(rand.NewPCG(1, 2)), 6, 4)
		c.Equal(t, c.Dump(t, s), c.Dump(t, ref))
		Position(t, s, last)
	})

	t.Run("RandomSplitsMatchOneBatch", func(t *testing.T) {
		t.Parallel()
		ref := c.Reference()
		Apply(t, ref, all)
		want := c.Dump(t, ref)
		// Every event alone, then random splits: the same as one batch.
		s := c.New(t)
		for i := range all {
			Apply(t, s, all[i:i+1])
		}
		c.Equal(t, c.Dump(t, s), want)
		Position(t, s, last)
		for seed := range uint64(3) {
			rng := rand.New(rand.NewPCG(seed, 99))
			s := c.New(t)
			for i := 0; i < len(all); {
				j := min(len(all), i+1+rng.IntN(len(all)/3))
				Apply(t, s, all[i:j])
				i = j
			}
			c.Equal(t, c.Dump(t, s), want)
			Position(t, s, last)
		}
	})
}

// ApplyRedelivered applies events to s in order, in batches as a consumer
// that is redelivered events gets them: each batch ends 1 to span events
// past the one before, and starts up to back-1 events before that one's end.
// rng draws span then back for every batch, so a seed gives the same batches.
func ApplyRedelivered(t testing.TB, s projections.Store, events []chat.Event, rng *rand.Rand, span, back int) {
	t.Helper()
	for i := 0; i < len(events); {
		j := min(len(events), i+1+rng.IntN(span))
		from := max(0, i-rng.IntN(back))
		Apply(t, s, events[from:j])
		i = j
	}
}

// Apply applies events to s and fails t on an error.
func Apply(t testing.TB, s projections.Store, events []chat.Event) {
	t.Helper()
	if err := s.Apply(context.Background(), events); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// Position fails t unless s is at position want, and returns it.
func Position(t testing.TB, s projections.Store, want uint64) uint64 {
	t.Helper()
	got, err := s.Position(context.Background())
	if err != nil {
		t.Fatalf("position: %v", err)
	}
	if got != want {
		t.Fatalf("position %d, want %d", got, want)
	}
	return got
}

// MemoryVersions opens versions of an in-memory reference model by name, as
// a storetest.Open does: a name opened again gives the same store back.
func MemoryVersions[S any](newStore func() S) func(name string) S {
	var mu sync.Mutex
	stores := make(map[string]S)
	return func(name string) S {
		mu.Lock()
		defer mu.Unlock()
		s, ok := stores[name]
		if !ok {
			s = newStore()
			stores[name] = s
		}
		return s
	}
}

// Versions opens a read model's store versions ("history_v1") in the
// databases NewDB makes, one per call, and closes every store it opens when
// the test that opened it ends.
type Versions[S interface{ Close() error }] struct {
	// NewDB gives a test a fresh, empty database and returns how to open
	// versions in it; opening a name again after its store was closed must
	// reopen the same data, as a restarted process would.
	NewDB func(t *testing.T) func(name string) S
	// First is the version New and Fresh open.
	First string
}

// Open opens version name through o, to be closed when t ends.
func (v Versions[S]) Open(t *testing.T, o func(name string) S, name string) S {
	t.Helper()
	s := o(name)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// New opens the first version in a new database.
func (v Versions[S]) New(t *testing.T) S {
	t.Helper()
	return v.Open(t, v.NewDB(t), v.First)
}

// Fresh marks t parallel and opens the first version in a new database.
func (v Versions[S]) Fresh(t *testing.T) S {
	t.Helper()
	t.Parallel()
	return v.New(t)
}

// MustOpen turns an adapter's open, which may fail, into the open a suite
// takes: one that fails t instead.
func MustOpen[S any](t testing.TB, open func(name string) (S, error)) func(name string) S {
	return func(name string) S {
		t.Helper()
		s, err := open(name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}
