package ws

import (
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// conn is one WebSocket connection's outgoing side: a bounded queue drained
// by one writer goroutine that packs pending frames into one message.
type conn struct {
	ws           *websocket.Conn
	queue        chan []byte
	writeTimeout time.Duration

	closeOnce sync.Once
	closed    chan struct{}
	code      websocket.StatusCode
	reason    string
}

func newConn(ws *websocket.Conn, queueSize int, writeTimeout time.Duration) *conn {
	return &conn{ws: ws, queue: make(chan []byte, queueSize), writeTimeout: writeTimeout, closed: make(chan struct{})}
}

// Send queues a frame without blocking. A closed connection swallows it.
func (c *conn) Send(frame []byte) bool {
	select {
	case <-c.closed:
		return true
	default:
	}
	select {
	case c.queue <- frame:
		return true
	default:
		return false
	}
}

// SendWait queues a frame, waiting for room.
func (c *conn) SendWait(ctx context.Context, frame []byte) error {
	select {
	case c.queue <- frame:
		return nil
	case <-c.closed:
		return context.Canceled
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close asks the writer to close the connection with code; it never blocks.
func (c *conn) Close(code int, reason string) {
	c.closeOnce.Do(func() {
		c.code, c.reason = websocket.StatusCode(code), reason
		close(c.closed)
	})
}

// maxBatch bounds how many bytes of queued frames share one message.
const maxBatch = 64 << 10

// writeLoop writes queued frames until the connection closes. Frames that are
// queued together go out as one message, one frame per line.
func (c *conn) writeLoop() {
	var buf []byte
	for {
		select {
		case <-c.closed: // a close wins over queued frames
			_ = c.ws.Close(c.code, c.reason)
			return
		default:
		}
		select {
		case <-c.closed:
			_ = c.ws.Close(c.code, c.reason)
			return
		case f := <-c.queue:
			buf = append(buf[:0], f...)
		drain:
			for len(buf) < maxBatch {
				select {
				case f := <-c.queue:
					buf = append(buf, '\n')
					buf = append(buf, f...)
				default:
					break drain
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.writeTimeout)
			err := c.ws.Write(ctx, websocket.MessageText, buf)
			cancel()
			if err != nil {
				c.Close(int(websocket.StatusGoingAway), "write failed")
				_ = c.ws.CloseNow()
				return
			}
			if cap(buf) > 4*maxBatch {
				buf = nil // do not keep a huge buffer per idle connection
			}
		}
	}
}

// pingLoop pings the client; a client that does not answer is closed.
func (c *conn) pingLoop(interval time.Duration, code int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			err := c.ws.Ping(ctx)
			cancel()
			if err != nil {
				c.Close(code, "no pong")
				return
			}
		}
	}
}
