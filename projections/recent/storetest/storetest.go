// Package storetest is the contract suite every recent.Store must pass: the
// Redis store runs it from its tests, and so does the in-memory reference
// model.
//
// It is for tests only: no shipped binary may import it.
package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/projectiontest"
	"github.com/jetchat/jetchat/projections/recent"
)

// Setup is a fresh, empty store for one subtest, at position 0.
type Setup struct {
	Store recent.Store
	// Lose removes events from a room's window behind the store's back, as
	// lost writes would (a Redis restart, a failover to a lagging replica); no
	// seqs removes the whole window.
	Lose func(room string, seqs ...uint64)
}

// Run runs the suite. open gives each subtest a fresh store with windows of
// n events; Run closes it.
func Run(t *testing.T, open func(t *testing.T, n int) Setup) {
	newSetup := func(t *testing.T, n int) Setup {
		t.Helper()
		s := open(t, n)
		t.Cleanup(func() { _ = s.Store.Close() })
		return s
	}
	fresh := func(t *testing.T, n int) Setup {
		t.Helper()
		t.Parallel()
		return newSetup(t, n)
	}

	t.Run("WindowsPerRoomOldestFirst", func(t *testing.T) {
		s := fresh(t, 10).Store
		var l eventLog
		var a, b []chat.Event
		for i := range 4 {
			a = append(a, l.sent("a", "ann", fmt.Sprintf("a%d", i)))
			b = append(b, l.sent("b", "bob", fmt.Sprintf("b%d", i)))
		}
		a = append(a, l.Add(chat.Event{Type: chat.MemberJoined, Room: "a", Author: "cat", User: "cat"}))
		apply(t, s, l.Take())
		equal(t, events(t, s, "a", 10), a)
		equal(t, events(t, s, "b", 10), b)
		equal(t, events(t, s, "a", 2), a[3:])
		equal(t, events(t, s, "nobody-here", 10), nil)
		position(t, s, 9)
	})

	t.Run("TrimmedToN", func(t *testing.T) {
		s := fresh(t, 5).Store
		var l eventLog
		var a []chat.Event
		for i := range 7 {
			a = append(a, l.sent("a", "ann", fmt.Sprintf("m%d", i)))
		}
		apply(t, s, l.Take()) // one batch longer than the window
		equal(t, events(t, s, "a", 100), a[2:])
		for i := range 4 {
			a = append(a, l.sent("a", "ann", fmt.Sprintf("n%d", i)))
			apply(t, s, l.Take()) // one event at a time
		}
		equal(t, events(t, s, "a", 100), a[6:])
		equal(t, events(t, s, "a", 5), a[6:])
		equal(t, events(t, s, "a", 1), a[10:])
		equal(t, events(t, s, "a", 0), nil)
		equal(t, events(t, s, "a", -1), nil)
	})

	t.Run("EventsKeptWhole", func(t *testing.T) {
		s := fresh(t, 10).Store
		var l eventLog
		want := []chat.Event{
			l.sent("a", "ann", "m1"),
			l.Add(chat.Event{Type: chat.MessageEdited, Room: "a", Author: "ann", Target: 1, Text: "edited ✓"}),
			l.Add(chat.Event{Type: chat.ReactionAdded, Room: "a", Author: "bob", Target: 1, Emoji: "👍"}),
			l.Add(chat.Event{Type: chat.ReactionRemove, Room: "a", Author: "bob", Target: 1, Emoji: "👍"}),
			l.Add(chat.Event{Type: chat.MessageDeleted, Room: "a", Author: "ann", Target: 1}),
			l.Add(chat.Event{Type: chat.MemberLeft, Room: "a", Author: "bob", User: "bob"}),
			l.Add(chat.Event{Type: chat.ReadMoved, Room: "a", Author: "cat", Target: 5}),
		}
		first := l.Add(chat.Event{Type: chat.RoomCreated, Room: "b", Author: "ann", Name: "Bee \"quoted\"", Private: true})
		batch := l.Take()
		local := batch[0]
		local.Time = local.Time.In(time.FixedZone("CET", 3600)) // the same instant elsewhere
		batch[0] = local
		apply(t, s, batch)
		equal(t, events(t, s, "a", 10), want)
		equal(t, events(t, s, "b", 10), []chat.Event{first})
	})

	var scripted eventLog
	script(&scripted)
	projectiontest.Idempotence(t, projectiontest.Case[recent.Store, map[string][]chat.Event]{
		New:       func(t *testing.T) recent.Store { return newSetup(t, 4).Store },
		Reference: func() recent.Store { return recent.NewMemory(4, 0) },
		Dump:      windows,
		Equal:     equal2,
		Events:    scripted.Take(),
	})

	for _, n := range []int{3, recent.DefaultN} {
		t.Run(fmt.Sprintf("OverlappingBatchesMatchOneBatch/n=%d", n), func(t *testing.T) {
			s := fresh(t, n).Store
			var l eventLog
			for range 5 {
				script(&l)
			}
			all := l.Take()
			ref := recent.NewMemory(n, 0)
			apply(t, ref, all)
			// Redeliver up to 4 events already applied.
			projectiontest.ApplyRedelivered(t, s, all, rand.New(rand.NewPCG(1, uint64(n))), 8, 5)
			equal2(t, windows(t, s), windows(t, ref))
			position(t, s, all[len(all)-1].Seq)
		})
	}

	t.Run("SkipsAppliedAndOutOfOrder", func(t *testing.T) {
		s := fresh(t, 10).Store
		var l eventLog
		evs := make([]chat.Event, 7)
		for i := range evs {
			evs[i] = l.sent("a", "ann", fmt.Sprintf("m%d", i))
		}
		apply(t, s, evs[:3])
		apply(t, s, []chat.Event{evs[1], evs[2], evs[4], evs[3], evs[4], evs[5]})
		position(t, s, evs[5].Seq)
		// seq 4 came behind seq 5 and was skipped: the chain is 5, 6 only.
		equal(t, events(t, s, "a", 10), []chat.Event{evs[4], evs[5]})
		apply(t, s, evs[6:])
		equal(t, events(t, s, "a", 10), []chat.Event{evs[4], evs[5], evs[6]})
	})

	t.Run("InvalidEventsOnlyAdvancePosition", func(t *testing.T) {
		s := fresh(t, 10).Store
		position(t, s, 0)
		apply(t, s, nil)
		position(t, s, 0)
		var l eventLog
		a1 := l.sent("a", "ann", "m1")
		l.Add(chat.Event{Type: chat.Invalid, Room: "b"})
		l.Add(chat.Event{Type: "bogus.type", Room: "b", Author: "ann", Text: "x"})
		l.Add(chat.Event{Type: chat.MessageSent, Room: "b", Author: "ann"}) // no id, no text
		l.Add(chat.Event{Type: chat.MessageSent, Room: "Not A Room", Author: "ann", ID: "x", Text: "x"})
		l.Add(chat.Event{Type: chat.MessageSent, Room: "a.b", Author: "ann", ID: "x", Text: "x"})
		l.Add(chat.Event{Type: chat.MessageSent, Room: strings.Repeat("r", chat.MaxRoomIDBytes+1), Author: "ann", ID: "x", Text: "x"})
		apply(t, s, l.Take())
		position(t, s, 7)
		equal(t, events(t, s, "a", 10), []chat.Event{a1})
		equal(t, events(t, s, "b", 10), nil)
	})

	t.Run("InvalidEventInARoomBreaksItsChain", func(t *testing.T) {
		// The Invalid placeholder is not stored, so the events after it do not
		// chain to those before it: readers get the newer part only.
		s := fresh(t, 10).Store
		var l eventLog
		l.sent("a", "ann", "m1")
		l.Add(chat.Event{Type: chat.Invalid, Room: "a"})
		a3 := l.sent("a", "ann", "m3")
		a4 := l.sent("a", "ann", "m4")
		apply(t, s, l.Take())
		equal(t, events(t, s, "a", 10), []chat.Event{a3, a4})
	})

	t.Run("HoleGivesNewestContiguousSuffix", func(t *testing.T) {
		st := fresh(t, 6)
		s := st.Store
		var l eventLog
		var a []chat.Event
		for i := range 8 {
			a = append(a, l.sent("a", "ann", fmt.Sprintf("m%d", i)))
		}
		b1 := l.sent("b", "bob", "b1")
		apply(t, s, l.Take())
		equal(t, events(t, s, "a", 10), a[2:])
		st.Lose("a", a[4].Seq)
		equal(t, events(t, s, "a", 10), a[5:])
		equal(t, events(t, s, "a", 2), a[6:])
		// The newest event lost: nothing shows it until a newer one arrives,
		// whose Prev names it.
		st.Lose("a", a[7].Seq)
		equal(t, events(t, s, "a", 10), a[5:7])
		equal(t, events(t, s, "b", 10), []chat.Event{b1}) // other rooms untouched
		a = append(a, l.sent("a", "ann", "n0"))
		apply(t, s, l.Take())
		equal(t, events(t, s, "a", 10), a[8:])

		// New events chain on; once the hole is trimmed out the window is whole.
		for i := range 5 {
			a = append(a, l.sent("a", "ann", fmt.Sprintf("n%d", i+1)))
			apply(t, s, l.Take())
		}
		equal(t, events(t, s, "a", 10), a[8:])
		equal(t, len(events(t, s, "a", 10)), 6)
	})

	t.Run("LostWindowRefillsFromNewEvents", func(t *testing.T) {
		st := fresh(t, 5)
		s := st.Store
		var l eventLog
		for i := range 3 {
			l.sent("a", "ann", fmt.Sprintf("m%d", i))
		}
		apply(t, s, l.Take())
		st.Lose("a")
		equal(t, events(t, s, "a", 10), nil)
		position(t, s, 3)
		a4 := l.sent("a", "ann", "m4") // its Prev (3) is lost: it starts the chain
		a5 := l.sent("a", "ann", "m5")
		apply(t, s, l.Take())
		equal(t, events(t, s, "a", 10), []chat.Event{a4, a5})
	})

	t.Run("ErrBadRequestForInvalidRoom", func(t *testing.T) {
		s := fresh(t, 5).Store
		for _, room := range []string{"", "A", "a.b", "a b", "a}b", strings.Repeat("r", chat.MaxRoomIDBytes+1)} {
			_, err := s.Events(context.Background(), room, 5)
			if chat.ErrorCode(err) != chat.ErrBadRequest {
				t.Errorf("Events(%q): got %v, want a %s error", room, err, chat.ErrBadRequest)
			}
		}
	})

	t.Run("ReadersSeeChainsWhileApplying", func(t *testing.T) {
		s := fresh(t, 20).Store
		var l eventLog
		var wg sync.WaitGroup
		done := make(chan struct{})
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					evs, err := s.Events(context.Background(), "a", 20)
					if err != nil {
						t.Errorf("events: %v", err)
						return
					}
					for i := 1; i < len(evs); i++ {
						if evs[i].Prev != evs[i-1].Seq {
							t.Errorf("broken chain: %d after %d", evs[i].Prev, evs[i-1].Seq)
							return
						}
					}
				}
			}()
		}
		for i := range 200 {
			l.sent("a", "ann", fmt.Sprintf("m%d", i))
			l.sent("b", "bob", fmt.Sprintf("m%d", i))
			if i%7 == 0 {
				apply(t, s, l.Take())
			}
		}
		apply(t, s, l.Take())
		close(done)
		wg.Wait()
		position(t, s, 400)
	})
}

// script appends events over three rooms with every kind of event.
func script(l *eventLog) {
	a1 := l.sent("a", "ann", "a1")
	b1 := l.sent("b", "bob", "b1")
	l.sent("a", "bob", "a2")
	l.Add(chat.Event{Type: chat.ReactionAdded, Room: "a", Author: "bob", Target: a1.Seq, Emoji: "👍"})
	l.Add(chat.Event{Type: chat.MessageEdited, Room: "a", Author: "ann", Target: a1.Seq, Text: "edited"})
	l.Add(chat.Event{Type: chat.MemberJoined, Room: "c", Author: "cat", User: "cat"})
	l.Add(chat.Event{Type: chat.Invalid, Room: "c"})
	l.Add(chat.Event{Type: chat.MessageDeleted, Room: "b", Author: "bob", Target: b1.Seq})
	l.sent("c", "cat", "c1")
	l.sent("c", "cat", "c2")
	l.sent("a", "cat", "a3")
	l.Add(chat.Event{Type: chat.ReadMoved, Room: "b", Author: "bob", Target: b1.Seq})
}

// eventLog builds the suite's events on a projectiontest.Log.
type eventLog struct{ projectiontest.Log }

func (l *eventLog) sent(room, author, id string) chat.Event {
	return l.Add(chat.Event{Type: chat.MessageSent, Room: room, Author: author, ID: id, Text: "text of " + id})
}

// apply and position are projectiontest's, shared by every read model's suite.
var (
	apply    = projectiontest.Apply
	position = projectiontest.Position
)

func events(t *testing.T, s recent.Store, room string, n int) []chat.Event {
	t.Helper()
	evs, err := s.Events(context.Background(), room, n)
	if err != nil {
		t.Fatalf("events %s %d: %v", room, n, err)
	}
	return evs
}

func windows(t *testing.T, s recent.Store) map[string][]chat.Event {
	t.Helper()
	out := make(map[string][]chat.Event)
	for _, room := range []string{"a", "b", "c"} {
		out[room] = events(t, s, room, recent.DefaultN)
	}
	return out
}

// equal compares exactly: times to the nanosecond, in UTC.
func equal[T any](t *testing.T, got, want T) {
	t.Helper()
	if reflect.ValueOf(got).Kind() == reflect.Slice && reflect.ValueOf(got).Len() == 0 && reflect.ValueOf(want).Len() == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("differ:\n got %+v\nwant %+v", got, want)
	}
}

func equal2(t *testing.T, got, want map[string][]chat.Event) {
	t.Helper()
	for room := range want {
		equal(t, got[room], want[room])
	}
	if len(got) != len(want) {
		t.Fatalf("rooms %d, want %d", len(got), len(want))
	}
}
