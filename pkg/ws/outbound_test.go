package ws

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

type recorder struct{ writes [][]byte }

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func (r *recorder) all() []byte { return bytes.Join(r.writes, nil) }

// serverFrame encodes a final, unmasked frame, as the library writes it.
func serverFrame(op byte, payload []byte) []byte {
	out := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		out = append(out, byte(n))
	case n <= 0xffff:
		out = append(out, 126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	return append(out, payload...)
}

// writeLikeLibrary writes a frame in the pieces a 16-byte bufio.Writer
// passes on: the first 16 bytes, then the rest in one piece.
func writeLikeLibrary(t *testing.T, o *outbound, frame []byte) {
	t.Helper()
	for _, p := range [][]byte{frame[:min(16, len(frame))], frame[min(16, len(frame)):]} {
		if len(p) == 0 {
			continue
		}
		if _, err := o.Write(p); err != nil {
			t.Fatal(err)
		}
	}
}

// withHeadroom returns payload behind headroom bytes of junk, as the writer
// hands a message over.
func withHeadroom(payload []byte) []byte {
	return append(bytes.Repeat([]byte{0xee}, headroom), payload...)
}

// TestOutboundFramesText: writeText sends exactly the frame the library
// would, in one write call, at every header size.
func TestOutboundFramesText(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 4000, 0xffff, 0x10000, 70000} {
		rec := &recorder{}
		o := &outbound{dst: rec}
		payload := bytes.Repeat([]byte{'x'}, n)
		if err := o.writeText(withHeadroom(payload)); err != nil {
			t.Fatal(err)
		}
		if len(rec.writes) != 1 {
			t.Fatalf("%d bytes: %d write calls, want 1", n, len(rec.writes))
		}
		if got, want := rec.all(), serverFrame(opText, payload); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: wrote %q, want %q", n, head(got), head(want))
		}
	}
}

// TestOutboundInterleaves writes the library's frames and text messages in
// random order, the library's in pieces: the socket gets them all, whole and
// in order, the library's passed on at once.
func TestOutboundInterleaves(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for run := 0; run < 200; run++ {
		rec := &recorder{}
		o := &outbound{dst: rec}
		var want []byte
		for i := rng.IntN(8); i >= 0; i-- {
			if rng.IntN(2) == 0 {
				payload := bytes.Repeat([]byte{byte('a' + i)}, []int{1, 14, 100, 300, 4000, 70000}[rng.IntN(6)])
				if err := o.writeText(withHeadroom(payload)); err != nil {
					t.Fatal(err)
				}
				want = append(want, serverFrame(opText, payload)...)
				continue
			}
			f := serverFrame([]byte{opPing, opPong}[rng.IntN(2)], bytes.Repeat([]byte{byte('a' + i)}, rng.IntN(126)))
			n := len(rec.writes)
			writeLikeLibrary(t, o, f)
			if len(rec.writes) == n {
				t.Fatalf("run %d: a control frame was held back", run)
			}
			want = append(want, f...)
		}
		if got := rec.all(); !bytes.Equal(got, want) {
			t.Fatalf("run %d: wrote %q, want %q", run, head(got), head(want))
		}
	}
}

// TestOutboundWaitsForLibraryFrame: a text message written while the
// library is half way through a frame goes out after that frame, not into
// it.
func TestOutboundWaitsForLibraryFrame(t *testing.T) {
	rec := &lockedRecorder{}
	o := &outbound{dst: rec}
	pong := serverFrame(opPong, bytes.Repeat([]byte("p"), 100))
	if _, err := o.Write(pong[:16]); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- o.writeText(withHeadroom([]byte("hello"))) }()
	select {
	case err := <-done:
		t.Fatalf("writeText returned (%v) in the middle of a frame", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := o.Write(pong[16:]); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := rec.all(), append(bytes.Clone(pong), serverFrame(opText, []byte("hello"))...); !bytes.Equal(got, want) {
		t.Fatalf("wrote %q, want the pong then the text", head(got))
	}
}

// TestOutboundGivesUpOnHalfFrame: a library frame never finished (its
// writer gave up) fails the text message instead of blocking it forever.
func TestOutboundGivesUpOnHalfFrame(t *testing.T) {
	rec := &recorder{}
	o := &outbound{dst: rec}
	if _, err := o.Write(serverFrame(opPong, bytes.Repeat([]byte("p"), 100))[:16]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := o.writeText(withHeadroom([]byte("hello"))); err == nil {
		t.Fatal("writeText succeeded inside an unfinished frame")
	}
	if d := time.Since(start); d < midFrameWait/2 || d > 10*midFrameWait {
		t.Fatalf("gave up after %v, want about %v", d, midFrameWait)
	}
	if len(rec.writes) != 1 {
		t.Fatalf("%d writes, want only the library's piece", len(rec.writes))
	}
}

// TestOutboundNothingAfterClose: once the library has written its close
// frame, text messages are refused and nothing follows it.
func TestOutboundNothingAfterClose(t *testing.T) {
	rec := &recorder{}
	o := &outbound{dst: rec}
	closing := serverFrame(opClose, []byte{0x03, 0xe8})
	writeLikeLibrary(t, o, closing)
	if err := o.writeText(withHeadroom([]byte("late"))); !errors.Is(err, errCloseSent) {
		t.Fatalf("writeText after close: %v, want errCloseSent", err)
	}
	if got := rec.all(); !bytes.Equal(got, closing) {
		t.Fatalf("wrote %q, want only the close frame", head(got))
	}
}

// TestOutboundKeepsWriteError: after a failed write every text message
// fails at once.
func TestOutboundKeepsWriteError(t *testing.T) {
	o := &outbound{dst: failingWriter{}}
	if _, err := o.Write(serverFrame(opPing, []byte("1"))); err == nil {
		t.Fatal("write to a failing socket succeeded")
	}
	if err := o.writeText(withHeadroom([]byte("x"))); !errors.Is(err, errBroken) {
		t.Fatalf("writeText after a failed write: %v, want the write's error", err)
	}
}

var errBroken = errors.New("broken pipe")

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errBroken }

type lockedRecorder struct {
	mu sync.Mutex
	recorder
}

func (r *lockedRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recorder.Write(p)
}

func (r *lockedRecorder) all() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recorder.all()
}
