package node

import (
	"fmt"
	"testing"
)

func frameOf(seq uint64) []byte { return []byte(fmt.Sprint(seq)) }

func seqsOf(frames [][]byte) string { return fmt.Sprintf("%s", frames) }

func TestRecentFrames(t *testing.T) {
	var r recentFrames
	if _, _, ok := r.after(0, nil); ok {
		t.Fatal("an empty ring holds nothing")
	}
	// A chain with gaps in seq (other rooms' events): 10, 12, 15, ... after base 7.
	prev := uint64(7)
	var chain []uint64
	for i := range 20 {
		seq := prev + uint64(1+i%3)
		r.push(seq, prev, frameOf(seq), 8)
		chain = append(chain, seq)
		prev = seq
	}
	// 8 kept: chain[12:], after chain[11].
	if r.n != 8 {
		t.Fatalf("holds %d, want 8", r.n)
	}
	got, last, ok := r.after(chain[11], nil)
	if !ok || last != chain[19] || seqsOf(got) != fmt.Sprintf("%v", chain[12:]) {
		t.Fatalf("after the base: %s %d %v", got, last, ok)
	}
	got, _, ok = r.after(chain[16], got[:0])
	if !ok || seqsOf(got) != fmt.Sprintf("%v", chain[17:]) {
		t.Fatalf("after %d: %s %v", chain[16], got, ok)
	}
	if got, _, ok := r.after(chain[19], nil); !ok || len(got) != 0 {
		t.Fatalf("after the last: %s %v, want nothing, held", got, ok)
	}
	between := uint64(0) // a seq inside the ring's span that is no link of it
	for i := 12; i < 19 && between == 0; i++ {
		if chain[i+1]-chain[i] > 1 {
			between = chain[i] + 1
		}
	}
	for _, c := range []uint64{chain[10], between, chain[19] + 1} {
		if _, _, ok := r.after(c, nil); ok {
			t.Errorf("after %d: claimed, but the ring cannot tell what follows it", c)
		}
	}
	// A link that does not follow the last starts over.
	r.push(100, 90, frameOf(100), 8)
	if _, _, ok := r.after(chain[19], nil); ok || r.n != 1 {
		t.Fatalf("after a broken link the old chain is still served (%d held)", r.n)
	}
	// Bytes bound the ring too; a frame over the bound empties it.
	r.reset()
	big := make([]byte, replayWindowBytes/3+1)
	for seq := uint64(1); seq <= 5; seq++ {
		r.push(seq, seq-1, big, 128)
	}
	if r.n != 2 || r.bytes > replayWindowBytes {
		t.Fatalf("holds %d frames, %d bytes; want 2 within %d", r.n, r.bytes, replayWindowBytes)
	}
	r.push(6, 5, make([]byte, replayWindowBytes+1), 128)
	if r.n != 0 {
		t.Fatalf("a frame over the bound kept %d", r.n)
	}
	// A window of -1 keeps nothing.
	r.push(7, 6, frameOf(7), -1)
	if r.n != 0 {
		t.Fatal("window -1 kept a frame")
	}
}

// push and trim report every change in bytes held, and trim keeps the newest
// frames (at least one) of the chain.
func TestRecentFramesTrim(t *testing.T) {
	var r recentFrames
	total := 0
	prev := uint64(0)
	for seq := uint64(1); seq <= 20; seq++ {
		total += r.push(seq, prev, make([]byte, 100), 16)
		prev = seq
	}
	if total != r.bytes || r.bytes != 1600 || r.n != 16 {
		t.Fatalf("after 20 pushes into 16: deltas sum to %d, holds %d bytes in %d", total, r.bytes, r.n)
	}
	total += r.trim(550)
	if total != r.bytes || r.n != 5 || r.at(0).seq != 16 || r.at(r.n-1).seq != 20 {
		t.Fatalf("trimmed to 550: %d entries from %d to %d, %d bytes (deltas %d)", r.n, r.at(0).seq, r.at(r.n-1).seq, r.bytes, total)
	}
	if got, last, ok := r.after(15, nil); !ok || len(got) != 5 || last != 20 {
		t.Fatalf("after 15: %d frames up to %d, %v", len(got), last, ok)
	}
	total += r.trim(0)
	if total != r.bytes || r.n != 1 || r.at(0).seq != 20 {
		t.Fatalf("trimmed to 0: %d entries, last %d, %d bytes (deltas %d)", r.n, r.at(0).seq, r.bytes, total)
	}
	total += r.push(22, 21, make([]byte, 100), 16) // not the next link: starts over
	if total != r.bytes || r.n != 1 {
		t.Fatalf("after a break in the chain: %d entries, %d bytes (deltas %d)", r.n, r.bytes, total)
	}
}
