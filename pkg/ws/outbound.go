package ws

import (
	"io"
	"sync"
)

// outbound is what the WebSocket library writes a connection to: the socket,
// through a buffer that exists only while a message is being written.
//
// The library writes a frame's header and payload through its bufio.Writer
// and flushes at the end of the frame; given a 16-byte one, it passes most
// of a message straight through in pieces. Between begin and end (the
// writer's whole WriteMessage) outbound gathers the pieces and sends them in
// one write call; outside (pings, pongs, the close frame, written by the
// library from other goroutines) it passes them on at once. An idle
// connection thus holds no write buffer.
type outbound struct {
	dst io.Writer

	mu       sync.Mutex
	batching bool
	buf      *[]byte // from outboundBuffers while batching
}

var outboundBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func (o *outbound) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.batching {
		return o.dst.Write(p)
	}
	if o.buf == nil {
		o.buf = outboundBuffers.Get().(*[]byte)
	}
	*o.buf = append(*o.buf, p...)
	return len(p), nil
}

// begin gathers what the library writes until end.
func (o *outbound) begin() {
	o.mu.Lock()
	o.batching = true
	o.mu.Unlock()
}

// end writes what was gathered, in one call, and stops gathering.
func (o *outbound) end() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.batching = false
	if o.buf == nil {
		return nil
	}
	_, err := o.dst.Write(*o.buf)
	if cap(*o.buf) <= maxBatch+64 {
		*o.buf = (*o.buf)[:0]
		outboundBuffers.Put(o.buf)
	}
	o.buf = nil
	return err
}
