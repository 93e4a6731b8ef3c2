package client

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

// ChainError reports an event that broke its room's seq/prev chain. A
// duplicate (Seq <= Last) is dropped; a gap (Prev != Last) is dropped too and
// repaired by re-joining the room from Last, so no event is lost.
type ChainError struct {
	Room string
	Last uint64 // the room's position when the event arrived
	Seq  uint64 // the event's seq
	Prev uint64 // the event's prev
}

// Duplicate reports whether the event had been delivered already.
func (e *ChainError) Duplicate() bool { return e.Seq <= e.Last }

func (e *ChainError) Error() string {
	what := "gap"
	if e.Duplicate() {
		what = "duplicate"
	}
	return fmt.Sprintf("client: %s in room %s: at %d, got seq %d prev %d", what, e.Room, e.Last, e.Seq, e.Prev)
}

// NotRecoveredError reports that a room could not be resumed from Since: the
// log no longer holds it. The events in between are lost; the room's position
// jumped to Head.
type NotRecoveredError struct {
	Room  string
	Since uint64
	Head  uint64
}

func (e *NotRecoveredError) Error() string {
	return fmt.Sprintf("client: room %s not recovered from %d: resumed at head %d", e.Room, e.Since, e.Head)
}

// verdict is what the chain check decides about one event.
type verdict int

const (
	deliver   verdict = iota // next in the chain: deliver it
	skip                     // not expected now: drop it silently
	duplicate                // seen already: drop and report
	gap                      // something is missing: drop, report and repair
)

// room is the client's state for one joined room: its position in the room's
// chain and the join in flight, if any. Guarded by Client.mu.
type room struct {
	pos  uint64 // seq of the last event delivered, or where delivery starts
	live bool   // pos is meaningful: a join without since has been answered, or one with since was sent

	subscribed  bool   // a joined frame has arrived at least once
	joinRef     string // ref of the join frame in flight; "" if none
	repairing   bool   // after a gap: deliver only events that extend the chain, drop the rest
	needsRepair bool   // a gap was seen while a join was in flight: repair once it is answered
	failures    int    // retryable join failures in a row, for backoff

	waiters []chan chat.ServerFrame // Join calls waiting for joined or a final error
}

// newRoom returns the state of a room about to be joined, from since if set.
func newRoom(since *uint64) *room {
	if since == nil {
		return &room{}
	}
	return &room{pos: *since, live: true}
}

// since is what a join of the room asks for: everything after pos, or (before
// the room's head is known) live events only.
func (r *room) since() *uint64 {
	if !r.live {
		return nil
	}
	s := r.pos
	return &s
}

// check decides about an event of the room and advances pos if it is to be
// delivered.
func (r *room) check(e *chat.Event) verdict {
	switch {
	case !r.live:
		return skip
	case r.repairing:
		if e.Prev != r.pos || e.Seq <= r.pos {
			return skip
		}
	case e.Seq <= r.pos:
		return duplicate
	case e.Prev != r.pos:
		return gap
	}
	r.pos = e.Seq
	return deliver
}

// joined applies the answer to the join in flight. It reports whether the
// position was reset to head because the log no longer held it.
func (r *room) joined(head uint64, recovered bool) (reset bool) {
	r.subscribed = true
	r.joinRef = ""
	r.failures = 0
	switch {
	case !r.live:
		r.pos, r.live = head, true
	case !recovered:
		// Never backwards: a lagging node's head must not make us
		// deliver again what we already have.
		r.pos, reset = max(r.pos, head), true
	}
	if !r.needsRepair {
		r.repairing = false
	}
	return reset
}

// backoff returns a random delay in [0, min(max, base*2^attempt)]:
// exponential backoff with full jitter.
func backoff(base, max time.Duration, attempt int) time.Duration {
	d := max
	if attempt >= 0 && attempt < 62 {
		if s := base << attempt; s>>attempt == base && s < max {
			d = s
		}
	}
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}
