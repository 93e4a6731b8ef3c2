package ws

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
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

// TestOutboundGathers writes random frames between begin and end: nothing
// reaches the socket before end, then all of it in order; outside a batch
// each piece goes out at once.
func TestOutboundGathers(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for run := 0; run < 200; run++ {
		rec := &recorder{}
		o := &outbound{dst: rec}
		var want []byte
		o.begin()
		for i := rng.IntN(6); i >= 0; i-- {
			op := []byte{opText, opPing, opPong}[rng.IntN(3)]
			n := rng.IntN(126)
			if op == opText {
				n = []int{1, 14, 100, 300, 4000, 70000}[rng.IntN(6)]
			}
			f := serverFrame(op, bytes.Repeat([]byte{byte('a' + i)}, n))
			want = append(want, f...)
			writeLikeLibrary(t, o, f)
		}
		if len(rec.writes) != 0 {
			t.Fatalf("run %d: %d writes before end", run, len(rec.writes))
		}
		if err := o.end(); err != nil {
			t.Fatal(err)
		}
		if got := rec.all(); !bytes.Equal(got, want) {
			t.Fatalf("run %d: wrote %q, want %q", run, head(got), head(want))
		}
		n := len(rec.writes)
		writeLikeLibrary(t, o, serverFrame(opPing, []byte("1")))
		if len(rec.writes) != n+1 {
			t.Fatalf("outside a batch a frame must go out at once")
		}
	}
}

// TestOutboundCloseFrameGoesOut: a close frame written during a batch (the
// library answering the peer's close, then closing the socket) goes out at
// once, after what was gathered.
func TestOutboundCloseFrameGoesOut(t *testing.T) {
	rec := &recorder{}
	o := &outbound{dst: rec}
	data := serverFrame(opText, bytes.Repeat([]byte("x"), 500))
	closing := serverFrame(opClose, []byte{0x03, 0xe8})
	o.begin()
	writeLikeLibrary(t, o, data)
	writeLikeLibrary(t, o, closing)
	if got, want := rec.all(), append(bytes.Clone(data), closing...); !bytes.Equal(got, want) {
		t.Fatalf("before end: wrote %q, want the data frame then the close frame", head(got))
	}
	if err := o.end(); err != nil {
		t.Fatal(err)
	}
}

// TestOutboundCopiesSmallPieces: a small piece (a control frame's payload,
// which the library reuses) is copied; the caller may change it at once.
func TestOutboundCopiesSmallPieces(t *testing.T) {
	rec := &recorder{}
	o := &outbound{dst: rec}
	f := serverFrame(opPong, []byte("payload"))
	want := bytes.Clone(f)
	o.begin()
	writeLikeLibrary(t, o, f)
	clear(f)
	if err := o.end(); err != nil {
		t.Fatal(err)
	}
	if got := rec.all(); !bytes.Equal(got, want) {
		t.Fatalf("wrote %q, want %q", got, want)
	}
}
