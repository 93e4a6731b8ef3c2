package ws

import (
	"container/heap"
	"sync"
	"time"
)

// A pacer writes the batches of busy connections when their write delay
// ends, from one goroutine, instead of each connection's writer goroutine
// waking on its own timer for each write: at 640 messages a second to 1,000
// connections that was 20,000 wake-ups, selects and timer resets a second.
// A connection's writer hands the connection to the pacer when it would
// wait out the delay; the pacer writes with calls that never wait (see
// outbound.tryMessage) and hands the connection back to a writer goroutine
// for whatever may block: a full socket, a close.
type pacer struct {
	mu      sync.Mutex
	due     pacedHeap
	next    time.Time // when run's timer fires; zero: it waits for add
	started bool
	closed  bool
	nudge   chan struct{} // one token: a connection is due before next
	stop    chan struct{}
}

func newPacer() *pacer {
	return &pacer{nudge: make(chan struct{}, 1), stop: make(chan struct{})}
}

// pacedTurn is a connection's place in a pacer: at is when it is due. A
// connection moved sooner has a second entry; the first is then stale (at
// no longer its due) and skipped.
type pacedTurn struct {
	c  *conn
	at time.Time
}

type pacedHeap []pacedTurn

func (h pacedHeap) Len() int           { return len(h) }
func (h pacedHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h pacedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pacedHeap) Push(x any)        { *h = append(*h, x.(pacedTurn)) }
func (h *pacedHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = pacedTurn{}
	*h = old[:len(old)-1]
	return t
}

// add makes c due at at; false once the pacer is closed (c keeps its
// writer). Called with c.mu held.
func (p *pacer) add(c *conn, at time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if !p.started {
		p.started = true
		go p.run()
	}
	heap.Push(&p.due, pacedTurn{c: c, at: at})
	if p.next.IsZero() || at.Before(p.next) {
		select {
		case p.nudge <- struct{}{}:
		default:
		}
	}
	return true
}

// run gives each connection its turn when it is due.
func (p *pacer) run() {
	var timer *time.Timer
	var turns []pacedTurn
	for {
		p.mu.Lock()
		now := time.Now()
		turns = turns[:0]
		for len(p.due) > 0 && !p.due[0].at.After(now) {
			turns = append(turns, heap.Pop(&p.due).(pacedTurn))
		}
		wait := time.Duration(-1)
		p.next = time.Time{}
		if len(turns) == 0 && len(p.due) > 0 {
			p.next = p.due[0].at
			wait = p.next.Sub(now)
		}
		p.mu.Unlock()
		if len(turns) > 0 {
			for i, t := range turns {
				t.c.pacedWrite(t.at)
				turns[i] = pacedTurn{}
			}
			continue // the writes took time: more may be due
		}
		var fire <-chan time.Time
		if wait >= 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			fire = timer.C
		}
		select {
		case <-fire:
		case <-p.nudge:
		case <-p.stop:
			return
		}
	}
}

// close stops the pacer; the connections it held get writer goroutines.
func (p *pacer) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.stop)
	turns := p.due
	p.due = nil
	p.mu.Unlock()
	for _, t := range turns {
		t.c.unpace(t.at)
	}
}
