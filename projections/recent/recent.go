// Package recent is the recent-events read model: the last N events of every
// room (DefaultN), kept so that a node can answer "what happened lately in
// this room" without reading the log or the history projection.
//
// The rules live here once, in [Fold] (what a batch stores) and [Chain]
// (what a reader may be given); the stores only keep windows. [Memory] is
// the embedded node's store and the reference model; recent/redis is the
// cluster's (a sorted set per room). Both are held to one contract suite,
// recent/storetest.
//
// It is a cache: a store may lose events (Redis restarted, a key evicted),
// and then it must serve less, never something wrong. Events only ever
// returns a contiguous chain, each event's Prev the previous one's Seq, so a
// client that checks prev never sees a gap it did not have. It must not be
// the source of truth for anything and must not import an adapter.
package recent

import (
	"cmp"
	"context"
	"slices"

	"github.com/jetchat/jetchat/pkg/chat"
)

// DefaultN is how many events a room's window keeps by default.
const DefaultN = 100

// Store keeps each room's most recent events with its position: the stream
// sequence of the last event applied.
//
// A store has one writer, the projection's consumer; readers may call Events
// concurrently with Apply.
type Store interface {
	// Apply applies events in stream order. Events with Seq <= Position() are
	// skipped, so redelivered or overlapping batches change nothing; events
	// that are not valid (unknown or invalid type, missing fields) and events
	// whose room id is not valid only advance the position.
	//
	// Events must carry Prev (the room's previous event's seq) as the live
	// path and Replay deliver them: Events relies on it to find holes.
	Apply(ctx context.Context, events []chat.Event) error
	// Position is the sequence of the last event applied, 0 before any.
	Position(ctx context.Context) (uint64, error)
	// Events returns up to n of room's most recent events, oldest first,
	// forming a contiguous chain (each event's Prev is the previous one's
	// Seq). If the store lost part of a room's window (e.g. Redis restarted),
	// it returns only the contiguous newest suffix. n <= 0 gives none; an
	// invalid room id is a chat.ErrBadRequest error.
	Events(ctx context.Context, room string, n int) ([]chat.Event, error)
	Close() error
}

// Window is one room's events to store from a batch: ascending by Seq, at
// most the store's N.
type Window struct {
	Room   string
	Events []chat.Event
}

// Batch is what a store writes for a batch of events.
type Batch struct {
	Windows  []Window // by room
	Position uint64   // the largest seq seen, or the old position if every event was skipped
}

// Fold returns what applying events to a store at position with windows of
// n events writes:
//
//   - events with Seq <= position, or behind an event already seen in the
//     batch, are skipped;
//   - events that fail chat.Event.Validate (an unknown type, the Invalid
//     placeholder, missing fields, a room id that is not valid) only advance
//     the position;
//   - every other event goes to its room's window, its Time in UTC; only
//     the last n of each room are returned, as only those can stay.
//
// Writing a Batch is idempotent (a window is a set keyed by seq, trimmed to
// the n highest), so a store that cannot write windows and position at once
// may replay a batch whose windows were written but whose position was not.
func Fold(position uint64, events []chat.Event, n int) Batch {
	if n <= 0 {
		n = DefaultN
	}
	b := Batch{Position: position}
	byRoom := make(map[string][]chat.Event)
	for _, e := range events {
		if e.Seq <= b.Position {
			continue
		}
		b.Position = e.Seq
		if e.Validate() != nil {
			continue
		}
		e.Time = e.Time.UTC()
		byRoom[e.Room] = append(byRoom[e.Room], e)
	}
	for room, evs := range byRoom {
		if len(evs) > n {
			evs = evs[len(evs)-n:]
		}
		b.Windows = append(b.Windows, Window{Room: room, Events: evs})
	}
	slices.SortFunc(b.Windows, func(a, b Window) int { return cmp.Compare(a.Room, b.Room) })
	return b
}

// Chain returns the newest contiguous run of window (ascending by Seq, one
// event per seq), at most n events: it walks back from the newest event
// while each event's Prev is the Seq of the one before it.
func Chain(window []chat.Event, n int) []chat.Event {
	if n <= 0 || len(window) == 0 {
		return nil
	}
	i := len(window) - 1
	for i > 0 && len(window)-i < n && window[i].Prev == window[i-1].Seq {
		i--
	}
	return slices.Clone(window[i:])
}
