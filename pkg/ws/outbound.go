package ws

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
)

// outbound is what the WebSocket library writes a connection to: the socket,
// with no buffer of its own between messages.
//
// The library writes a frame's header and payload through its bufio.Writer
// and flushes at the end of the frame; given a 16-byte one, it passes most
// of a message straight through. Between begin and end (the writer's whole
// message) outbound gathers the pieces and sends them in one write call
// (writev): small pieces are copied, large ones (the writer's own batch,
// which stays untouched until end) are referenced, so a message is never
// copied whole. Outside begin and end (pings, pongs and the close frame,
// written by the library from other goroutines) pieces go out at once.
type outbound struct {
	dst io.Writer

	mu        sync.Mutex
	frameLeft int // bytes of the library's current frame not yet written to us
	batching  bool
	small     [64]byte    // copied pieces, until full
	smallLen  int         // bytes used in small
	pieces    net.Buffers // what end writes, in order
}

// largePiece is the size from which a piece written while batching is
// referenced rather than copied: larger than any control frame, whose
// payload the library may reuse.
const largePiece = 256

func (o *outbound) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	closing := o.track(p)
	if closing && o.batching {
		// The library closes the socket right after a close frame that
		// answers the peer's: it cannot wait for end. What was gathered
		// goes first.
		o.batching = false
		if err := o.flush(); err != nil {
			return 0, err
		}
	}
	if !o.batching {
		return o.dst.Write(p)
	}
	if len(p) >= largePiece {
		o.pieces = append(o.pieces, p)
		return len(p), nil
	}
	if o.smallLen+len(p) > len(o.small) {
		o.pieces = append(o.pieces, append([]byte(nil), p...))
		return len(p), nil
	}
	// Extend the last piece if it ends where this copy goes.
	start := o.smallLen
	o.smallLen += copy(o.small[start:], p)
	if n := len(o.pieces); n > 0 && len(o.pieces[n-1]) > 0 && start > 0 && &o.pieces[n-1][len(o.pieces[n-1])-1] == &o.small[start-1] {
		o.pieces[n-1] = o.small[start-len(o.pieces[n-1]) : o.smallLen]
	} else {
		o.pieces = append(o.pieces, o.small[start:o.smallLen])
	}
	return len(p), nil
}

// track follows the library's frames through the pieces written, and says
// whether p starts a close frame. The library flushes its buffer at the end
// of every frame (all of ours are final) and a server frame's header is at
// most 10 bytes, so a frame's first piece holds its whole header.
func (o *outbound) track(p []byte) (closing bool) {
	if o.frameLeft == 0 && len(p) >= 2 {
		n, length := 2, int(p[1]&0x7f)
		switch {
		case length == 126 && len(p) >= 4:
			n, length = 4, int(binary.BigEndian.Uint16(p[2:]))
		case length == 127 && len(p) >= 10:
			n, length = 10, int(min(binary.BigEndian.Uint64(p[2:]), 1<<40))
		}
		o.frameLeft = n + length
		closing = p[0]&0x0f == 0x8
	}
	o.frameLeft -= min(o.frameLeft, len(p))
	return closing
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
	return o.flush()
}

// flush writes the pieces gathered. Called with o.mu held.
func (o *outbound) flush() error {
	var err error
	switch len(o.pieces) {
	case 0:
	case 1:
		_, err = o.dst.Write(o.pieces[0])
	default:
		bufs := o.pieces // WriteTo consumes the slice it is given
		_, err = bufs.WriteTo(o.dst)
	}
	clear(o.pieces)
	o.pieces, o.smallLen = o.pieces[:0], 0
	if cap(o.pieces) > 8 {
		o.pieces = nil
	}
	return err
}
