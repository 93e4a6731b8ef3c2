package ws

import (
	"encoding/binary"
	"io"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
)

// inbound is what the WebSocket library reads a connection from: the socket,
// through a buffer that exists only while it holds bytes, with the frame
// boundaries tracked so that a ping or pong from the client is followed by a
// marker frame (an empty masked binary message).
//
// The marker is how a connection's reader can stop while the connection is
// idle: coder/websocket's Read answers control frames itself and returns only
// a data message, so a reader woken by a pong would otherwise stay blocked,
// its stack deep in the library, until the client next sends something. With
// the marker Read returns after the pong, and the reader ends (see idle).
//
// The library reads it through a 16-byte bufio.Reader, so an idle connection
// holds no read buffer at all. No read goes past the end of the current
// frame, so that reader is empty whenever the library has returned a
// message: what is left is in the inbound, and pending tells.
//
// pending and markers are read by the connection's reader while the
// library may be reading (its close handshake reads from the goroutine that
// closes), hence atomic.
type inbound struct {
	src io.Reader
	buf *[inboundBufferSize]byte // from inboundBuffers while r < w
	r   int
	w   int

	frameLeft  int64 // bytes of the current frame (header included) not yet passed on
	control    bool  // the current frame is a ping or a pong
	fragmented bool  // inside a data message sent in fragments: no marker there
	marker     int   // bytes of the marker still to pass on

	pending atomic.Bool  // bytes are buffered or a marker is due: the socket may show nothing to read
	markers atomic.Int32 // markers passed on that the reader has not yet seen
}

const inboundBufferSize = 4 << 10

var inboundBuffers = sync.Pool{New: func() any { return new([inboundBufferSize]byte) }}

// markerFrame is an empty, masked, final binary frame: a message no client of
// ours sends (binary frames are rejected), so the reader can tell it apart.
var markerFrame = [6]byte{0x82, 0x80}

func newInbound(src io.Reader, ahead []byte) *inbound {
	in := &inbound{src: src}
	if len(ahead) > 0 {
		// More than a buffer's worth cannot arrive before the upgrade is
		// answered: net/http reads ahead at most its own 4 KiB buffer.
		in.buf = inboundBuffers.Get().(*[inboundBufferSize]byte)
		in.w = copy(in.buf[:], ahead)
		in.pending.Store(true)
	}
	return in
}

// Read passes on the socket's bytes, a marker after each ping or pong.
func (in *inbound) Read(p []byte) (n int, err error) {
	if len(p) == 0 {
		return 0, nil
	}
	defer func() { in.pending.Store(in.r < in.w || in.marker > 0) }()
	if in.marker > 0 {
		n := copy(p, markerFrame[len(markerFrame)-in.marker:])
		in.marker -= n
		if in.marker == 0 {
			in.markers.Add(1)
		}
		return n, nil
	}
	for in.frameLeft == 0 {
		// At a frame boundary: the whole header must be buffered to know
		// the frame's length and kind.
		if n := headerLen(in.buf, in.r, in.w); n > 0 {
			in.startFrame(in.buf[in.r : in.r+n])
			break
		}
		if err := in.fill(); err != nil {
			if in.r == in.w {
				return 0, err
			}
			// The socket ended inside a header: pass on what came, for
			// the library to report.
			in.frameLeft, in.control = int64(in.w-in.r), false
			break
		}
	}
	if in.r == in.w {
		if err := in.fill(); err != nil {
			return 0, err
		}
	}
	n = copy(p, in.buf[in.r:min(in.w, in.r+int(min(in.frameLeft, int64(len(p)))))])
	in.r += n
	in.frameLeft -= int64(n)
	if in.frameLeft == 0 && in.control && !in.fragmented {
		in.marker = len(markerFrame)
	}
	in.release()
	return n, nil
}

// isMarker says whether a message the library returned is a marker, and
// counts it as seen: an empty binary message while markers are due (a
// client's own empty binary message in their place is taken for one and the
// marker that follows it is then rejected as binary, one for one).
func (in *inbound) isMarker(typ websocket.MessageType, data []byte) bool {
	if typ != websocket.MessageBinary || len(data) != 0 || in.markers.Load() == 0 {
		return false
	}
	in.markers.Add(-1)
	return true
}

// fill reads from the socket into the buffer, keeping the unread bytes.
func (in *inbound) fill() error {
	if in.buf == nil {
		in.buf = inboundBuffers.Get().(*[inboundBufferSize]byte)
	} else if in.r > 0 {
		in.w = copy(in.buf[:], in.buf[in.r:in.w])
		in.r = 0
	}
	n, err := in.src.Read(in.buf[in.w:])
	in.w += n
	if n > 0 {
		return nil
	}
	in.release()
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// release returns an empty buffer to the pool.
func (in *inbound) release() {
	if in.buf != nil && in.r == in.w {
		inboundBuffers.Put(in.buf)
		in.buf, in.r, in.w = nil, 0, 0
	}
}

// startFrame notes the frame whose complete header is h.
func (in *inbound) startFrame(h []byte) {
	fin, opcode := h[0]&0x80 != 0, h[0]&0x0f
	in.control = opcode == 0x9 || opcode == 0xa
	switch {
	case opcode == 0x1 || opcode == 0x2:
		in.fragmented = !fin
	case opcode == 0x0 && fin:
		in.fragmented = false
	}
	var length uint64
	switch l := h[1] & 0x7f; l {
	case 126:
		length = uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		length = binary.BigEndian.Uint64(h[2:])
	default:
		length = uint64(l)
	}
	// A length beyond int64 is a protocol error the library reports when
	// it reads the header; the count only has to stay positive until then.
	in.frameLeft = int64(min(length, 1<<62)) + int64(len(h))
}

// headerLen is the length of the frame header starting at buf[r:w], or 0 if
// it is not all there.
func headerLen(buf *[inboundBufferSize]byte, r, w int) int {
	if buf == nil || w-r < 2 {
		return 0
	}
	n := 2
	switch buf[r+1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if buf[r+1]&0x80 != 0 {
		n += 4
	}
	if w-r < n {
		return 0
	}
	return n
}
