package ws

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/coder/websocket"
)

const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xa
)

// clientFrame encodes a frame as a client sends it: masked.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n <= 0xffff:
		out = append(out, 0x80|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	key := [4]byte{0x11, 0x22, 0x33, 0x44}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

type frameSpec struct {
	fin     bool
	op      byte
	payload int
}

// expected is the stream the inbound must pass on for frames: each frame as
// sent, a marker after a ping or pong outside a fragmented message.
func expected(frames []frameSpec) (in, out []byte) {
	fragmented := false
	for i, f := range frames {
		b := clientFrame(f.fin, f.op, bytes.Repeat([]byte{byte('a' + i%26)}, f.payload))
		in = append(in, b...)
		out = append(out, b...)
		switch {
		case f.op == opText || f.op == opBinary:
			fragmented = !f.fin
		case f.op == opCont && f.fin:
			fragmented = false
		case (f.op == opPing || f.op == opPong) && !fragmented:
			out = append(out, markerFrame[:]...)
		}
	}
	return in, out
}

func TestInboundMarksControlFrames(t *testing.T) {
	cases := map[string][]frameSpec{
		"text":                     {{true, opText, 5}},
		"ping":                     {{true, opPing, 4}},
		"pong then text":           {{true, opPong, 0}, {true, opText, 3}},
		"pong inside a fragmented": {{false, opText, 3}, {true, opPong, 2}, {false, opCont, 4}, {true, opPing, 1}, {true, opCont, 2}, {true, opPong, 0}},
		"16-bit length":            {{true, opText, 300}, {true, opPong, 125}},
		"64-bit length":            {{true, opBinary, 70000}, {true, opPing, 0}},
		"close":                    {{true, opClose, 2}},
	}
	for name, frames := range cases {
		t.Run(name, func(t *testing.T) {
			src, want := expected(frames)
			for _, one := range []bool{false, true} {
				var r io.Reader = bytes.NewReader(src)
				if one {
					r = iotest.OneByteReader(r)
				}
				in := newInbound(r, nil)
				got, err := io.ReadAll(bufio.NewReaderSize(in, 16))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("one byte at a time %v: got %d bytes %q..., want %d bytes %q...", one, len(got), head(got), len(want), head(want))
				}
				if in.buf != nil {
					t.Errorf("the drained inbound still holds its buffer")
				}
			}
		})
	}
}

func head(b []byte) []byte { return b[:min(len(b), 24)] }

// TestInboundRandomStreams reads random frame sequences, with the bytes read
// ahead by net/http first, in random read sizes.
func TestInboundRandomStreams(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ops := []byte{opText, opBinary, opPing, opPong}
	for run := 0; run < 300; run++ {
		var frames []frameSpec
		fragmented := false
		for i := rng.IntN(20); i >= 0; i-- {
			var f frameSpec
			if fragmented && rng.IntN(2) == 0 {
				f = frameSpec{fin: rng.IntN(3) == 0, op: opCont, payload: rng.IntN(200)}
			} else {
				f = frameSpec{fin: true, op: ops[rng.IntN(len(ops))], payload: rng.IntN(126)}
				if !fragmented && f.op < opClose {
					f.fin = rng.IntN(3) != 0
					f.payload = []int{0, 10, 125, 126, 5000, 70000}[rng.IntN(6)]
				} else if fragmented && f.op < opClose {
					continue // a new message inside a fragmented one is a protocol error
				}
			}
			frames = append(frames, f)
			if f.op == opText || f.op == opBinary {
				fragmented = !f.fin
			} else if f.op == opCont && f.fin {
				fragmented = false
			}
		}
		src, want := expected(frames)
		split := rng.IntN(len(src) + 1)
		split = min(split, inboundBufferSize)
		in := newInbound(&chunky{r: bytes.NewReader(src[split:]), rng: rng}, src[:split])
		var got []byte
		p := make([]byte, 9000)
		for {
			n, err := in.Read(p[:1+rng.IntN(len(p))])
			got = append(got, p[:n]...)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("run %d (%v): got %d bytes, want %d", run, frames, len(got), len(want))
		}
	}
}

// chunky returns random-sized reads.
type chunky struct {
	r   io.Reader
	rng *rand.Rand
}

func (c *chunky) Read(p []byte) (int, error) { return c.r.Read(p[:1+c.rng.IntN(len(p))]) }

// TestInboundThroughLibrary runs coder/websocket over the hijacker: the
// library must read our stream as the client sent it, answer the client's
// pings, see the server's pongs, and return the marker after each.
func TestInboundThroughLibrary(t *testing.T) {
	type read struct {
		typ  websocket.MessageType
		data string
	}
	reads := make(chan read, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := &hijacker{ResponseWriter: w}
		c, err := websocket.Accept(h, r, nil)
		if err != nil {
			return
		}
		h.adopt()
		c.SetReadLimit(1 << 20)
		if h.raw == nil {
			t.Error("a TCP connection should be pollable")
		}
		ctx := context.Background()
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				close(reads)
				return
			}
			if typ == websocket.MessageBinary && len(data) == 0 && !h.in.isMarker(typ, data) {
				t.Error("an empty binary message that is no marker")
			}
			if n := h.br.Buffered(); n > 0 {
				t.Errorf("the library's reader holds %d bytes after a message", n)
			}
			reads <- read{typ, string(data)}
			if string(data) == "ping me" {
				go func() {
					ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					if err := c.Ping(ctx); err != nil {
						t.Errorf("server ping: %v", err)
					}
				}()
			}
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	go func() { // the client reads, so that it answers the server's ping
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	}()
	next := func() read {
		select {
		case r := <-reads:
			return r
		case <-ctx.Done():
			t.Fatal("no read")
			return read{}
		}
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if r := next(); r.data != "one" {
		t.Fatalf("read %+v", r)
	}
	if err := c.Ping(ctx); err != nil { // the server's library answers it
		t.Fatal(err)
	}
	if r := next(); r.typ != websocket.MessageBinary || r.data != "" {
		t.Fatalf("after a ping: read %+v, want the marker", r)
	}
	big := strings.Repeat("x", 100000)
	if err := c.Write(ctx, websocket.MessageText, []byte("ping me")); err != nil {
		t.Fatal(err)
	}
	if r := next(); r.data != "ping me" {
		t.Fatalf("read %+v", r)
	}
	if r := next(); r.typ != websocket.MessageBinary || r.data != "" { // the pong to the server's ping
		t.Fatalf("after a pong: read %+v, want the marker", r)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(big)); err != nil {
		t.Fatal(err)
	}
	if r := next(); r.data != big {
		t.Fatalf("read %d bytes, want %d", len(r.data), len(big))
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	for range reads {
	}
}

// FuzzInbound feeds arbitrary bytes, as a hostile client may send: the
// inbound must neither panic nor lose or invent bytes (only markers).
func FuzzInbound(f *testing.F) {
	f.Add([]byte{0x89, 0xff}, 3)
	f.Add(clientFrame(true, opPong, []byte("x")), 1)
	f.Add(append([]byte{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, make([]byte, 40)...), 7)
	f.Fuzz(func(t *testing.T, src []byte, chunk int) {
		in := newInbound(&chunky{r: bytes.NewReader(src), rng: rand.New(rand.NewPCG(uint64(chunk), 0))}, nil)
		got, err := io.ReadAll(in)
		if err != nil {
			t.Fatal(err)
		}
		if extra := len(got) - len(src); extra < 0 || extra%len(markerFrame) != 0 {
			t.Fatalf("passed on %d bytes of %d", len(got), len(src))
		}
		if bytes.Equal(got, src) != (len(got) == len(src)) {
			t.Fatalf("bytes changed")
		}
	})
}
