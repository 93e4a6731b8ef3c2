package ws

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"syscall"
	"time"
)

// outbound is the socket under a connection, shared by two writers: the
// WebSocket library, which writes the control frames (pings, pongs, the
// close frame) from its own goroutines, and the connection's writer, which
// writes the data messages itself (writeText): it frames them in the
// headroom its batch buffer keeps in front, so that a message goes out in
// one write call with no copy and none of the library's per-message work
// (its locks, its writer state, its bufio buffer between us and the socket:
// the library's is 16 bytes, so it passes most of a frame straight through).
//
// Writers that must not wait come third: the sender of a frame to a quiet
// connection (tryText) and the pacer (tryMessage) write only if the lock is
// free and the socket takes the bytes at once; if it takes only part, the
// rest waits in rest and goes first, whoever writes next.
//
// Frames must not interleave. Every writer writes under mu, and outbound
// follows the library's frames through the pieces it writes: writeText
// waits while a library frame is half written, and writes nothing after the
// library's close frame.
type outbound struct {
	dst io.Writer
	raw syscall.RawConn // the socket, for tryText; nil: it always declines

	mu        sync.Mutex
	frameLeft int    // bytes of the library's current frame not yet written to us
	closeSent bool   // the library wrote a close frame
	rest      []byte // the end of a frame tryText could not write: next on the wire
	err       error  // a write to dst failed: the socket is unusable
}

// headroom is the space a message kept in front of its payload for the
// frame header: at most 10 bytes for a server's (unmasked) frame.
const headroom = 10

// errCloseSent refuses a data message after the close frame.
var errCloseSent = errors.New("websocket: close frame already sent")

// errWouldBlock: the socket's send buffer is full.
var errWouldBlock = errors.New("websocket: socket would block")

// Write is the library's writer: pieces of its frames, passed on at once.
func (o *outbound) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.writeRest(); err != nil {
		return 0, err
	}
	if o.track(p) {
		o.closeSent = true
	}
	n, err := o.dst.Write(p)
	if err != nil && o.err == nil {
		o.err = err
	}
	return n, err
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

// midFrameWait bounds how long writeText waits for the library to finish a
// frame it has begun: the library writes a frame's pieces back to back, so
// a frame unfinished for that long belongs to a writer that gave up (and
// closed the socket).
const midFrameWait = time.Second

// writeText writes msg[headroom:] as one final text frame in one write
// call, the header going into the headroom.
func (o *outbound) writeText(msg []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	// Rare: a ping, pong or close frame larger than the library's buffer is
	// on its way in pieces.
	var since time.Time
	for o.frameLeft > 0 && o.err == nil {
		if since.IsZero() {
			since = time.Now()
		} else if time.Since(since) >= midFrameWait {
			return errors.New("websocket: a control frame was left half written")
		}
		o.mu.Unlock()
		time.Sleep(100 * time.Microsecond)
		o.mu.Lock()
	}
	if err := o.writeRest(); err != nil {
		return err
	}
	switch {
	case o.err != nil:
		return o.err
	case o.closeSent:
		return errCloseSent
	}
	frame := msg[headroom-putHeader(msg[:headroom], len(msg)-headroom):]
	if _, err := o.dst.Write(frame); err != nil {
		o.err = err
		return err
	}
	return nil
}

// writeRest writes what tryText left, before anything else. Called with
// o.mu held.
func (o *outbound) writeRest() error {
	if o.rest == nil || o.err != nil {
		return o.err
	}
	_, err := o.dst.Write(o.rest)
	o.rest = nil
	if err != nil {
		o.err = err
	}
	return err
}

// flushRest writes what tryText left, if anything; the connection's writer
// calls it under its stall timer.
func (o *outbound) flushRest() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.writeRest()
}

// hasRest says whether tryText left part of a frame unwritten.
func (o *outbound) hasRest() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rest != nil
}

// tryText writes payload as one final text frame if that needs no waiting
// (see tryMessage).
func (o *outbound) tryText(payload []byte) (wrote, partial bool) {
	if o.raw == nil {
		return false, false
	}
	bp := batchBuffers.Get().(*[]byte)
	msg := append(append((*bp)[:0], make([]byte, headroom)...), payload...)
	wrote, partial = o.tryMessage(msg)
	if cap(msg) <= 2*maxBatch {
		*bp = msg[:0]
		batchBuffers.Put(bp)
	}
	return wrote, partial
}

// tryMessage writes msg[headroom:] as one final text frame, as writeText
// does, if that needs no waiting: not for another writer (the library or a
// connection's writer hold mu), not for a half-written frame, not for the
// socket. It reports whether it wrote any of it; if the socket took only
// part, the rest is kept (rest), and the connection's writer must write it
// (partial).
func (o *outbound) tryMessage(msg []byte) (wrote, partial bool) {
	if o.raw == nil || !o.mu.TryLock() {
		return false, false
	}
	defer o.mu.Unlock()
	if o.frameLeft > 0 || o.closeSent || o.rest != nil || o.err != nil {
		return false, false
	}
	frame := msg[headroom-putHeader(msg[:headroom], len(msg)-headroom):]
	n, err := writeNow(o.raw, frame)
	switch {
	case n == len(frame):
	case n > 0:
		// The socket took part: its rest goes next, whoever writes.
		o.rest = append([]byte(nil), frame[n:]...)
		partial = true
	case err != nil && err != errWouldBlock:
		o.err = err
	}
	return n > 0, partial
}

// putHeader writes a final, unmasked text frame's header for a payload of n
// bytes at the end of h (10 bytes) and returns its length.
func putHeader(h []byte, n int) int {
	switch {
	case n < 126:
		h[8], h[9] = 0x81, byte(n)
		return 2
	case n <= 0xffff:
		h[6], h[7] = 0x81, 126
		binary.BigEndian.PutUint16(h[8:], uint16(n))
		return 4
	default:
		h[0], h[1] = 0x81, 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
		return 10
	}
}
