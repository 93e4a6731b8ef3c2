package ws

import (
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// conn is one WebSocket connection's outgoing side: a bounded queue drained
// by one writer goroutine that packs pending frames into one message.
//
// The queue is a slice that grows with the backlog and shrinks back, so an
// idle connection holds no queue memory; past limit frames the connection is
// a slow reader and the node closes it.
type conn struct {
	ws           *websocket.Conn
	limit        int
	writeTimeout time.Duration
	pingInterval time.Duration

	mu     sync.Mutex
	queue  [][]byte
	wake   chan struct{} // one token: the writer has frames to write
	space  chan struct{} // closed and replaced when the writer takes frames
	closed chan struct{}
	code   websocket.StatusCode
	reason string
	isDone bool
}

func newConn(ws *websocket.Conn, limit int, writeTimeout, pingInterval time.Duration) *conn {
	return &conn{
		ws: ws, limit: limit, writeTimeout: writeTimeout, pingInterval: pingInterval,
		wake: make(chan struct{}, 1), space: make(chan struct{}), closed: make(chan struct{}),
	}
}

// Send queues a frame without blocking; false when the queue is full. A
// closed connection swallows it.
func (c *conn) Send(frame []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isDone {
		return true
	}
	if len(c.queue) >= c.limit {
		return false
	}
	c.queue = append(c.queue, frame)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

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
			c.mu.Unlock()
			select {
			case c.wake <- struct{}{}:
			default:
			}
			return nil
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

// Close asks the writer to close the connection with code; it never blocks.
func (c *conn) Close(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.isDone {
		c.isDone = true
		c.code, c.reason = websocket.StatusCode(code), reason
		close(c.closed)
	}
}

// maxBatch bounds how many bytes of queued frames share one message.
const maxBatch = 64 << 10

// take removes up to maxBatch bytes of frames from the queue into buf, one
// frame per line.
func (c *conn) take(buf []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for n < len(c.queue) && (n == 0 || len(buf)+len(c.queue[n]) < maxBatch) {
		if n > 0 {
			buf = append(buf, '\n')
		}
		buf = append(buf, c.queue[n]...)
		c.queue[n] = nil
		n++
	}
	c.queue = c.queue[n:]
	if len(c.queue) == 0 {
		c.queue = nil // release the backing array
	} else {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	if n > 0 {
		close(c.space)
		c.space = make(chan struct{})
	}
	return buf
}

// writeLoop writes queued frames until the connection closes, and pings the
// client every pingInterval; a client that does not answer is closed.
func (c *conn) writeLoop(noPong int) {
	var buf []byte
	ping := time.NewTicker(c.pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.closed:
			// Flush what was queued before the close (an error frame that
			// explains it), briefly: a slow reader gets no more time.
			if buf = c.take(buf[:0]); len(buf) > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = c.ws.Write(ctx, websocket.MessageText, buf)
				cancel()
			}
			_ = c.ws.Close(c.code, c.reason)
			return
		case <-ping.C:
			go c.ping(noPong)
		case <-c.wake:
			buf = c.take(buf[:0])
			if len(buf) == 0 {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.writeTimeout)
			err := c.ws.Write(ctx, websocket.MessageText, buf)
			cancel()
			if err != nil {
				c.Close(int(websocket.StatusGoingAway), "write failed")
				_ = c.ws.CloseNow()
				return
			}
			if cap(buf) > 4<<10 {
				buf = nil // do not keep a big buffer per idle connection
			}
		}
	}
}

func (c *conn) ping(noPong int) {
	ctx, cancel := context.WithTimeout(context.Background(), c.pingInterval)
	defer cancel()
	if err := c.ws.Ping(ctx); err != nil {
		c.Close(noPong, "no pong")
	}
}
