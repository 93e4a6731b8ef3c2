package node

import (
	"context"
	"sync"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

// A hub is a node's view of one room: one live subscription, the position
// last delivered, and the sessions that receive the room.
//
// Invariant: every frame a hub queues to a live subscriber is the event whose
// prev is the last seq it queued to that subscriber. Events the live path
// skipped are fetched from the log before anything after them is delivered.
type hub struct {
	n    *Node
	room string
	refs int // guarded by n.mu

	startOnce sync.Once
	startErr  error

	mu          sync.Mutex
	closed      bool
	stop        func()
	last        uint64       // seq of the last event delivered
	lastEventAt time.Time    // when the live path last brought an event
	subs        []*roomSub   // in no order; a sub's idx is its place
	recent      recentFrames // the frames last delivered, ending at last
}

// roomSub is one session's subscription to one room.
type roomSub struct {
	s     *Session
	h     *hub
	live  bool   // guarded by h.mu: receives live events
	after uint64 // guarded by h.mu: deliver only events after this seq
	idx   int    // guarded by h.mu: its place in h.subs, while there

	active    bool          // guarded by s.mu: the join completed; Close must release h
	cancelled bool          // guarded by s.mu: unsubscribed or left while joining
	ready     chan struct{} // closed when the join has completed or failed
}

func newHub(n *Node, room string) *hub {
	return &hub{n: n, room: room}
}

// start subscribes to the room and reads its head. Live events that arrive
// meanwhile wait on h.mu and are then judged against the head.
func (h *hub) start() error {
	h.startOnce.Do(func() {
		// Not the first joiner's context: its disconnect must not fail the
		// others who share this hub.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.mu.Lock()
		defer h.mu.Unlock()
		stop, err := h.n.log.Subscribe(h.room, h.onEvent, h.onSignal)
		if err != nil {
			h.startErr, h.closed = err, true
			return
		}
		head, err := h.n.log.Head(ctx, h.room)
		if err != nil {
			stop()
			h.startErr, h.closed = err, true
			return
		}
		h.stop, h.last, h.lastEventAt = stop, head, time.Now()
	})
	return h.startErr
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		if h.stop != nil {
			h.stop()
		}
		// Nothing is delivered once closed: the frames go back to the
		// node's total for good.
		h.n.Stats.ReplayBytes.Add(-int64(h.recent.bytes))
		h.recent.reset()
	}
}

func (h *hub) onEvent(ev chat.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.lastEventAt = time.Now()
	h.accept(ev)
}

// accept delivers ev after filling any gap before it. Called with h.mu held.
func (h *hub) accept(ev chat.Event) {
	if ev.Seq <= h.last {
		return // already delivered (a repair fetched it first)
	}
	if ev.Prev > h.last {
		if !h.repair(ev.Prev) {
			return // the tail check retries once the log answers
		}
		h.n.Stats.GapsRepaired.Add(1)
	}
	if ev.Prev < h.last {
		// The log removed events between (a purge): keep the chain whole
		// for clients, who hold h.last.
		h.n.logger.Warn("room chain skips back", "room", h.room, "seq", ev.Seq, "prev", ev.Prev, "last", h.last)
		ev.Prev = h.last
	}
	h.deliver(ev)
}

// repair delivers the room's events after h.last up to and including upto
// from the log. Called with h.mu held.
func (h *hub) repair(upto uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.n.log.Replay(ctx, h.room, h.last, upto, func(ev chat.Event) error {
		h.deliver(ev)
		return nil
	})
	if err != nil {
		h.n.logger.Warn("repair from log failed", "room", h.room, "after", h.last, "upto", upto, "err", err)
		return false
	}
	return h.last >= upto
}

// deliver queues ev to every live subscriber. Called with h.mu held.
func (h *hub) deliver(ev chat.Event) {
	if ev.Type == chat.Invalid {
		h.n.Stats.InvalidEvents.Add(1)
	}
	frame, err := chat.AppendEventFrame(make([]byte, 0, 256), &ev)
	if err != nil {
		h.n.logger.Error("encode event", "room", h.room, "seq", ev.Seq, "err", err)
		return
	}
	held := h.n.Stats.ReplayBytes.Add(int64(h.recent.push(ev.Seq, ev.Prev, frame, h.n.cfg.ReplayWindow)))
	if limit := h.n.cfg.ReplayMemory; limit >= 0 && held > limit {
		h.n.Stats.ReplayBytes.Add(int64(h.recent.trim(h.n.replayShare())))
	}
	var sent int64
	// A slice, not a map: the fan-out walks it for every event.
	for _, sub := range h.subs {
		if !sub.live || ev.Seq <= sub.after {
			continue
		}
		if sub.s.conn.Send(frame) {
			sent++
		} else {
			sub.s.slow()
		}
	}
	h.n.Stats.Delivered.Add(sent)
	h.last = ev.Seq
}

// idle reports whether the room brought no event within minIdle: a room
// that did has its tail still in flight.
func (h *hub) idle(minIdle time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.closed && (minIdle <= 0 || time.Since(h.lastEventAt) >= minIdle)
}

// repairTail fetches the events after the last one delivered up to head,
// the room's last in the log: the live path lost them at the room's end.
func (h *hub) repairTail(head uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed && h.last < head {
		// Counted when found, before the repair delivers it: a client that
		// sees the event must find it counted.
		h.n.Stats.TailRepairs.Add(1)
		h.repair(head)
	}
}

// add registers a subscriber that is not yet live.
func (h *hub) add(sub *roomSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.has(sub) {
		sub.idx = len(h.subs)
		h.subs = append(h.subs, sub)
	}
}

func (h *hub) remove(sub *roomSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.has(sub) {
		last := len(h.subs) - 1
		h.subs[sub.idx] = h.subs[last]
		h.subs[sub.idx].idx = sub.idx
		h.subs[last] = nil
		h.subs = h.subs[:last]
	}
}

// has says whether sub is registered. Called with h.mu held.
func (h *hub) has(sub *roomSub) bool {
	return sub.idx < len(h.subs) && h.subs[sub.idx] == sub
}

// goLive makes sub live if it holds everything up to the hub's position
// (cursor >= last), queueing joined before any live event. Otherwise it
// returns the position the subscriber must first replay up to, and, if the
// hub's recent frames hold every event up to it, those frames (appended to
// buf) for the subscriber to queue before it asks again.
func (h *hub) goLive(sub *roomSub, cursor uint64, joined chat.ServerFrame, buf [][]byte) (upto uint64, recent [][]byte, live bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0, nil, false
	}
	if cursor < h.last {
		if recent, upto, ok := h.recent.after(cursor, buf); ok && upto == h.last {
			return upto, recent, false
		}
		return h.last, nil, false
	}
	sub.live, sub.after = true, cursor
	joined.Head = cursor
	sub.s.reply(joined)
	return cursor, nil, true
}

// holds reports whether the event at seq is the hub's position or among its
// recent frames: the log held it a moment ago.
func (h *hub) holds(seq uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if seq == h.last {
		return true
	}
	_, _, ok := h.recent.after(seq, nil)
	return ok
}

// rejoined answers a join of a room the session already receives, under the
// hub's lock so no live event slips between the head it names and the frame.
func (h *hub) rejoined(sub *roomSub, joined chat.ServerFrame) {
	h.mu.Lock()
	defer h.mu.Unlock()
	joined.Head = h.last
	if sub.after > h.last {
		joined.Head = sub.after
	}
	sub.s.reply(joined)
}

// position returns the hub's last delivered seq.
func (h *hub) position() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}
