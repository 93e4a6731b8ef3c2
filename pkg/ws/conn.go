package ws

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// conn is one WebSocket connection's outgoing side: a bounded queue drained
// by a writer goroutine that packs pending frames into one message. A frame
// to a quiet connection skips both: Send writes it itself (see Send). While
// a busy connection waits out its write delay, the server's pacer holds it
// instead of its writer, and writes its next batch (see pacer).
//
// An idle connection holds neither a writer goroutine nor queue memory: a
// writer starts when frames arrive and ends when the queue has stayed empty
// for a while, the queue is a slice that grows with the backlog and is
// released when the writer ends, and the ping is a timer. Past limit frames
// the connection is a slow reader and the node closes it.
type conn struct {
	ws           *websocket.Conn
	limit        int
	writeTimeout time.Duration
	pingInterval time.Duration
	noPong       int // close code when a ping goes unanswered
	pinger       *time.Timer
	out          *outbound     // the socket, shared with the library: the writer frames its messages there itself
	onClosed     func()        // called once the writer has closed the connection
	writes       *atomic.Int64 // counts the messages written, if set

	pacer         *pacer        // writes for a busy connection between its writer's runs; nil: the writer waits out its delays itself
	writeDelay    time.Duration // least time between two writes at first; see Config.WriteDelay
	maxWriteDelay time.Duration // how far the delay grows while frames pile up
	ackDelay      time.Duration // how long after the last write FlushSoon may hold a reply; see Config.AckDelay

	mu      sync.Mutex
	queue   [][]byte
	writing bool // a writer goroutine runs (or the connection is closed)
	// lastWrite is when the connection last wrote while no writer ran:
	// Send's own write, or the last write of a writer that ended. Send
	// writes again only a write delay later, and a writer started sooner
	// counts its delay from there.
	lastWrite time.Time
	delay     time.Duration // the write delay, as the writer or the pacer adapted it (0: writeDelay)
	// While the pacer holds the connection (paced), no writer runs but
	// writing stays set: the pacer writes the queue at due.
	paced bool
	due   time.Time
	// pending is a message the pacer took from the queue but the socket
	// would not take at once: the writer it starts writes it first.
	pending       []byte
	pendingBuf    *[]byte
	pendingFrames int
	// The writer's signals exist while a writer runs (nil otherwise), so
	// that an idle connection holds none.
	wake    chan struct{} // one token: frames arrived while the writer lingers
	parked  bool          // the writer waits on wake: the next frame must send the token
	urgent  bool          // a queued frame must not wait for the write delay
	soon    bool          // a queued reply may wait ackDelay since the last write, no longer
	flushed chan struct{} // one token: urgent was set while the writer waits
	space   chan struct{} // made by a SendWait that waits; closed when the writer takes frames
	stall   *time.Timer   // the running writer's stall timer (nil otherwise)
	inWrite atomic.Bool   // the writer is inside a write: Close shortens its stall timer
	closed  chan struct{}
	code    websocket.StatusCode
	reason  string
	isDone  bool
}

func newConn(ws *websocket.Conn, out *outbound, limit int, writeTimeout, pingInterval time.Duration, noPong int) *conn {
	c := &conn{
		ws: ws, out: out, limit: limit, writeTimeout: writeTimeout, pingInterval: pingInterval, noPong: noPong,
		closed: make(chan struct{}),
	}
	return c
}

// start starts the ping timer, once the connection is set up.
func (c *conn) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.isDone {
		c.pinger = time.AfterFunc(c.pingInterval, c.ping)
	}
}

// writeMessage writes msg[headroom:] as one text message. The writer frames
// it itself, in one write call, when the connection has an outbound;
// otherwise the library writes it. There is no context: a write that stalls
// is ended by the writer's stall timer, which closes the connection (a
// context would cost an allocation and a registration per write).
func (c *conn) writeMessage(msg []byte) error {
	if c.out == nil {
		return c.ws.Write(context.Background(), websocket.MessageText, msg[headroom:])
	}
	return c.out.writeText(msg)
}

// Send queues a frame without blocking; false when the queue is full. A
// closed connection swallows it.
//
// A quiet connection (no writer, nothing queued, no write within the write
// delay) has the frame written at once, in the caller's goroutine, if the
// socket takes it without waiting. A room's fan-out to connections that get
// a frame now and again so costs a write call each, without a writer
// goroutine's wake-up, wait and end as well.
func (c *conn) Send(frame []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isDone {
		return true
	}
	if !c.writing && len(c.queue) == 0 && c.out != nil {
		now := time.Now()
		if now.Sub(c.lastWrite) >= c.writeDelay {
			if wrote, partial := c.out.tryText(frame); wrote {
				c.lastWrite = now
				if c.writes != nil {
					c.writes.Add(1)
				}
				if partial {
					c.kick() // the writer writes the rest
				}
				return true
			}
		}
	}
	if len(c.queue) >= c.limit {
		return false
	}
	c.queue = append(c.queue, frame)
	c.kick()
	return true
}

// kick starts a writer unless one runs, or wakes the one that lingers. A
// writer that is busy or waits out the write delay looks at the queue next
// anyway: it needs no token (a send on its channel for every frame of a busy
// connection cost as much as queueing it). Called with c.mu held.
func (c *conn) kick() {
	switch {
	case !c.writing:
		c.startWriter()
	case c.paced:
		// The pacer writes the queue when the delay ends.
	case c.parked:
		c.parked = false
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// startWriter starts a writer goroutine. Called with c.mu held.
func (c *conn) startWriter() {
	c.writing = true
	c.wake, c.flushed = make(chan struct{}, 1), make(chan struct{}, 1)
	go c.write(c.wake, c.flushed)
}

// linger is how long a writer waits for more frames before it ends: a busy
// connection keeps its writer instead of starting one per frame.
const linger = 50 * time.Millisecond

// SendWait queues a frame, waiting while the queue is half full: the other
// half stays free for live events, acks and joined, which must not find the
// queue full because a replay filled it.
func (c *conn) SendWait(ctx context.Context, frame []byte) error {
	for {
		c.mu.Lock()
		if c.isDone {
			c.mu.Unlock()
			return context.Canceled
		}
		if len(c.queue) < max(c.limit/2, 1) {
			c.queue = append(c.queue, frame)
			c.kick()
			c.mu.Unlock()
			return nil
		}
		if c.space == nil {
			c.space = make(chan struct{})
		}
		space := c.space
		c.mu.Unlock()
		select {
		case <-space:
		case <-c.closed:
			return context.Canceled
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Flush makes the writer write what is queued without waiting out the write
// delay. Nothing queued (Send wrote it already): nothing to do.
func (c *conn) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		return
	}
	c.urgent = true
	if c.paced {
		c.pace(time.Now())
		return
	}
	c.signalFlushed()
}

// FlushSoon is Flush for a reply that more replies follow shortly (acks of
// sends still in flight): it may wait until ackDelay has passed since the
// last write, so that a fast sender's acks share writes. A reply after a
// quiet spell goes out at once, as with Flush.
func (c *conn) FlushSoon() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		return
	}
	if c.ackDelay <= 0 {
		c.urgent = true
	} else if c.soon {
		return // the writer already holds for an earlier reply
	}
	c.soon = true
	if c.paced {
		at := c.lastWrite.Add(c.ackDelay)
		if c.urgent {
			at = time.Now()
		}
		if at.Before(c.due) {
			c.pace(at)
		}
		return
	}
	c.signalFlushed()
}

// signalFlushed tells a writer that waits out the delay to look again.
// Called with c.mu held; a no-op when no writer runs (flushed is nil).
func (c *conn) signalFlushed() {
	select {
	case c.flushed <- struct{}{}:
	default:
	}
}

// closeFlush bounds the writes after Close: what was queued before it (an
// error frame that explains the close) goes out within it, or not at all.
const closeFlush = time.Second

// Close asks the writer to close the connection with code; it never blocks.
// A write in progress (to a slow reader, the usual reason to close) gets
// closeFlush more at most, not the rest of the write timeout.
func (c *conn) Close(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.isDone {
		c.isDone = true
		c.code, c.reason = websocket.StatusCode(code), reason
		close(c.closed)
		if c.stall != nil && c.inWrite.Load() && c.writeTimeout > closeFlush {
			c.stall.Reset(closeFlush)
		}
		if c.paced {
			c.pace(time.Now())
		} else {
			c.kick()
		}
	}
}

// maxBatch bounds how many bytes of queued frames share one message.
const maxBatch = 64 << 10

// batchBuffers holds writers' batch buffers between their runs; one that a
// single large frame grew past twice maxBatch is not kept.
var batchBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, 4<<10)
	return &b
}}

// take appends up to maxBatch bytes of frames from the queue to buf, one
// frame per line, and says how many. Called with c.mu held.
func (c *conn) take(buf []byte) ([]byte, int) {
	n := 0
	for n < len(c.queue) && (n == 0 || len(buf)+len(c.queue[n]) < headroom+maxBatch) {
		if n > 0 {
			buf = append(buf, '\n')
		}
		buf = append(buf, c.queue[n]...)
		c.queue[n] = nil
		n++
	}
	// Keep the backing array while the writer runs (the writer drops it
	// when it ends): the frames left move to its front.
	m := copy(c.queue, c.queue[n:])
	clear(c.queue[m:])
	c.queue = c.queue[:m]
	if n > 0 && c.space != nil {
		close(c.space)
		c.space = nil
	}
	return buf, n
}

// write drains the queue, a batch per WebSocket message, and ends when it is
// empty. After Close it flushes what was queued before it (an error frame
// that explains the close), briefly, then closes the connection; the
// connection then never starts another writer.
func (c *conn) write(wake, flushed <-chan struct{}) {
	// The batch buffer comes from a pool while the writer has frames to
	// write: neither an idle connection nor a writer waiting for frames
	// holds one, and a busy connection does not grow a new one each time.
	var bp *[]byte
	var buf []byte
	release := func() {
		if bp != nil && cap(buf) <= 2*maxBatch { // one large frame (a joined page) made it bigger: let it go
			*bp = buf[:0]
			batchBuffers.Put(bp)
		}
		bp, buf = nil, nil
	}
	defer release()
	var idle *time.Timer
	// The stall timer closes the connection when a write takes longer than
	// writeTimeout: one per writer run, reset per write.
	stall := time.AfterFunc(time.Hour, func() {
		_ = c.ws.CloseNow()
		c.closedDown()
	})
	stall.Stop()
	defer stall.Stop()
	c.mu.Lock()
	c.stall = stall
	last := c.lastWrite // when the connection last wrote: this writer counts its delay from there
	delay := c.delay
	if delay <= 0 {
		delay = c.writeDelay
	}
	pending, pendingBuf, pendingFrames := c.pending, c.pendingBuf, c.pendingFrames
	c.pending, c.pendingBuf, c.pendingFrames = nil, nil, 0
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.stall == stall { // not a writer the pacer started since
			c.stall = nil
		}
		c.mu.Unlock()
	}()
	if pending != nil {
		// The pacer's batch, which the socket would not take at once.
		bp, buf = pendingBuf, pending
		err := c.timedWrite(stall, buf)
		release()
		last, delay = time.Now(), nextDelay(delay, pendingFrames, c.writeDelay, c.maxWriteDelay)
		if err != nil {
			c.failed()
			return
		}
	}
	var wait *time.Timer // the write delay's, made on first use
	for {
		// Let frames gather for the delay since the last write, unless a
		// reply or a close is queued: Flush writes at once, FlushSoon
		// waits until ackDelay since the last write at most. A quiet
		// connection (nothing queued, its delay back at the least) first
		// waits for frames instead: a wait for the delay would mostly find
		// nothing to write.
		for !last.IsZero() {
			c.mu.Lock()
			since := time.Since(last)
			d := delay - since
			if c.soon {
				d = min(d, c.ackDelay-since)
			}
			now, quiet := c.urgent || c.isDone, len(c.queue) == 0 && delay == c.writeDelay
			if d <= 0 || now || quiet {
				c.mu.Unlock()
				break
			}
			if c.pacer != nil && c.out != nil && c.out.raw != nil && !c.out.hasRest() {
				// The pacer writes the queue when the delay ends: no
				// goroutine and timer of this connection's wait for it.
				// (Not the rest of a frame: that is this writer's.)
				c.lastWrite, c.delay = last, delay
				if c.pace(time.Now().Add(d)) {
					c.wake, c.flushed = nil, nil
					c.mu.Unlock()
					return
				}
			}
			c.mu.Unlock()
			if wait == nil {
				wait = time.NewTimer(d)
				defer wait.Stop()
			} else {
				wait.Reset(d)
			}
			select {
			case <-wait.C:
			case <-flushed: // a reply: look again
			case <-c.closed:
			}
		}
		if bp == nil {
			bp = batchBuffers.Get().(*[]byte)
			buf = (*bp)[:0]
		}
		// The message is framed in the headroom in front of its frames.
		c.mu.Lock()
		c.urgent, c.soon = false, false
		done := c.isDone
		var frames int
		buf, frames = c.take(buf[:headroom])
		if frames == 0 && !done && c.out != nil && c.out.hasRest() {
			// Send wrote part of a frame itself and started this writer
			// for the rest.
			c.mu.Unlock()
			stall.Reset(c.writeTimeout)
			c.inWrite.Store(true)
			err := c.out.flushRest()
			c.inWrite.Store(false)
			stall.Stop()
			last = time.Now()
			if err != nil {
				c.failed()
				return
			}
			continue
		}
		if frames == 0 && !done {
			c.parked = true
			c.mu.Unlock()
			release()
			if idle == nil {
				idle = time.NewTimer(linger)
			} else {
				idle.Reset(linger)
			}
			select {
			case <-wake:
				continue
			case <-idle.C:
			}
			c.mu.Lock()
			c.parked = false
			if len(c.queue) > 0 || c.isDone {
				c.mu.Unlock()
				continue
			}
			c.writing = false
			c.lastWrite, c.delay = last, 0
			c.wake, c.flushed = nil, nil
			c.queue = nil // release the backing array
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if done {
			c.stopPinger()
			if frames > 0 {
				// The stall timer bounds the last write.
				stall.Reset(closeFlush)
				_ = c.writeMessage(buf)
				stall.Stop()
			}
			_ = c.ws.Close(c.code, c.reason)
			c.closedDown()
			return
		}
		err := c.timedWrite(stall, buf)
		last, delay = time.Now(), nextDelay(delay, frames, c.writeDelay, c.maxWriteDelay)
		if err != nil {
			c.failed()
			return
		}
	}
}

// timedWrite writes msg under the writer's stall timer, as a write in
// progress (which Close cuts short), and counts it.
func (c *conn) timedWrite(stall *time.Timer, msg []byte) error {
	stall.Reset(c.writeTimeout)
	c.inWrite.Store(true)
	err := c.writeMessage(msg)
	c.inWrite.Store(false)
	stall.Stop()
	if c.writes != nil {
		c.writes.Add(1)
	}
	return err
}

// nextDelay adapts the write delay after a write of frames: a write that
// carries more than one frame (they came faster than the delay: a busy
// room) doubles it, up to most, so each write carries more; a write of a
// single frame halves it back, down to least, so a quiet connection gets
// its frames at once. (Doubling only at 4 frames, a room at 640 messages a
// second kept its 2 ms delay, ~1.3 frames a write, until the node fell
// behind: every busy fan-out began with a backlog.)
func nextDelay(delay time.Duration, frames int, least, most time.Duration) time.Duration {
	switch {
	case frames >= 2:
		return min(max(2*delay, time.Millisecond), most)
	case frames == 1:
		return max(delay/2, least)
	}
	return delay
}

// pace hands the connection's writes to the pacer until at; false if the
// pacer is closed. Called with c.mu held, by the connection's writer or
// the pacer (writing is set).
func (c *conn) pace(at time.Time) bool {
	c.paced, c.due = true, at
	if c.pacer.add(c, at) {
		return true
	}
	c.paced, c.due = false, time.Time{}
	return false
}

// pacedWrite is the pacer's turn that was due at at: it writes what is
// queued with a call that never waits, and hands the connection back to the
// pacer for the next write, or to a writer goroutine for what may wait (a
// full socket, a close), or lets it go quiet if nothing came.
func (c *conn) pacedWrite(at time.Time) {
	c.mu.Lock()
	if !c.paced || !c.due.Equal(at) {
		c.mu.Unlock()
		return // moved sooner, and that turn came first
	}
	c.paced, c.due = false, time.Time{}
	if c.isDone {
		c.startWriter() // the close, with its last frames
		c.mu.Unlock()
		return
	}
	bp := batchBuffers.Get().(*[]byte)
	c.urgent, c.soon = false, false
	buf, frames := c.take((*bp)[:headroom])
	if frames == 0 {
		// Nothing came during the delay: the connection is quiet.
		c.writing, c.delay = false, 0
		c.queue = nil
		c.mu.Unlock()
		*bp = buf[:0]
		batchBuffers.Put(bp)
		return
	}
	c.mu.Unlock()
	wrote, partial := c.out.tryMessage(buf)
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !wrote {
		// The socket is full, or another writer is at it: a writer
		// goroutine writes the batch, waiting as long as it may.
		c.pending, c.pendingBuf, c.pendingFrames = buf, bp, frames
		c.startWriter()
		return
	}
	if cap(buf) <= 2*maxBatch {
		*bp = buf[:0]
		batchBuffers.Put(bp)
	}
	if c.writes != nil {
		c.writes.Add(1)
	}
	c.lastWrite = now
	c.delay = nextDelay(max(c.delay, c.writeDelay), frames, c.writeDelay, c.maxWriteDelay)
	next := now.Add(c.delay)
	switch {
	case partial || c.isDone:
		c.startWriter() // the rest of the frame, or the close
		return
	case c.urgent:
		next = now
	case c.soon && c.ackDelay < c.delay:
		next = now.Add(c.ackDelay)
	}
	if !c.pace(next) {
		c.startWriter()
	}
}

// unpace gives a connection the closing pacer held (due at at) a writer.
func (c *conn) unpace(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paced && c.due.Equal(at) {
		c.paced, c.due = false, time.Time{}
		c.startWriter()
	}
}

// failed ends a connection whose socket failed a write.
func (c *conn) failed() {
	c.Close(int(websocket.StatusGoingAway), "write failed")
	c.stopPinger()
	_ = c.ws.CloseNow()
	c.closedDown()
}

func (c *conn) stopPinger() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pinger != nil {
		c.pinger.Stop()
	}
}

// closedDown tells the reader that the connection is closed: an idle one has
// no goroutine that would notice.
func (c *conn) closedDown() {
	if c.onClosed != nil {
		c.onClosed()
	}
}

// ping runs on the ping timer: a client that does not answer within the
// interval is closed; otherwise the timer is set again.
func (c *conn) ping() {
	ctx, cancel := context.WithTimeout(context.Background(), c.pingInterval)
	defer cancel()
	if err := c.ws.Ping(ctx); err != nil {
		c.Close(c.noPong, "no pong")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.isDone {
		c.pinger.Reset(c.pingInterval)
	}
}
