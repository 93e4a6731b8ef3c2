package ws

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

type recorder struct{ writes [][]byte }

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func (r *recorder) all() []byte { return bytes.Join(r.writes, nil) }

// TestOutboundGathers writes random pieces between begin and end: nothing
// reaches the socket before end, then all of it in order; outside a batch
// each piece goes out at once.
func TestOutboundGathers(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for run := 0; run < 200; run++ {
		rec := &recorder{}
		o := &outbound{dst: rec}
		var want []byte
		o.begin()
		for i := rng.IntN(12); i >= 0; i-- {
			p := bytes.Repeat([]byte{byte('a' + i)}, []int{1, 2, 14, 16, 60, 255, 256, 4000}[rng.IntN(8)])
			want = append(want, p...)
			if _, err := o.Write(p); err != nil {
				t.Fatal(err)
			}
			clear(p) // small pieces must have been copied...
			if len(p) >= largePiece {
				copy(p, bytes.Repeat([]byte{byte('a' + i)}, len(p))) // ...large ones are the caller's until end
			}
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
		if _, err := o.Write([]byte("ping")); err != nil || len(rec.writes) != n+1 {
			t.Fatalf("outside a batch a piece must go out at once")
		}
	}
}
