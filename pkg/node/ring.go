package node

import "sort"

// recentFrames keeps a room's last delivered event frames in memory: a piece
// of the room's chain (each entry's prev is the seq of the entry before it)
// that ends at the hub's position. A client resuming from a position inside
// it is replayed from here, with no request to the log: after a node dies,
// every client it held resumes on the others at once, and those requests
// are what the log would otherwise have to answer.
type recentFrames struct {
	ents     []ringEntry // circular; grows to maxN
	start, n int
	bytes    int
}

type ringEntry struct {
	seq, prev uint64
	frame     []byte // shared with the connections it was queued to; never written
}

// Bounds of a room's recent frames.
const (
	defaultReplayWindow = 128       // events
	replayWindowBytes   = 64 << 10  // bytes of frames
	defaultReplayMemory = 128 << 20 // bytes of frames of all rooms together
)

func (r *recentFrames) at(i int) *ringEntry { return &r.ents[(r.start+i)%len(r.ents)] }

// push appends the frame of the event after the last one, dropping the
// oldest to stay within maxN entries and replayWindowBytes. It returns the
// change in bytes held, for the node's total.
func (r *recentFrames) push(seq, prev uint64, frame []byte, maxN int) int {
	before := r.bytes
	size := cap(frame) // what the ring keeps alive
	if maxN <= 0 || size > replayWindowBytes {
		r.reset()
		return r.bytes - before
	}
	if r.n > 0 && r.at(r.n-1).seq != prev {
		r.reset() // not the next link: keep the chain whole
	}
	for r.n > 0 && (r.n >= maxN || r.bytes+size > replayWindowBytes) {
		r.dropOldest()
	}
	if r.n == len(r.ents) {
		grown := make([]ringEntry, min(max(2*len(r.ents), 8), maxN))
		for i := range r.n {
			grown[i] = *r.at(i)
		}
		r.ents, r.start = grown, 0
	}
	*r.at(r.n) = ringEntry{seq: seq, prev: prev, frame: frame}
	r.n++
	r.bytes += size
	return r.bytes - before
}

func (r *recentFrames) dropOldest() {
	e := r.at(0)
	r.bytes -= cap(e.frame)
	*e = ringEntry{}
	r.start = (r.start + 1) % len(r.ents)
	r.n--
}

// trim drops the oldest frames until at most maxBytes are held (the newest
// frame stays, whatever its size: the chain still ends at the hub's
// position). It returns the change in bytes held.
func (r *recentFrames) trim(maxBytes int) int {
	before := r.bytes
	for r.n > 1 && r.bytes > maxBytes {
		r.dropOldest()
	}
	return r.bytes - before
}

func (r *recentFrames) reset() {
	*r = recentFrames{}
}

// after appends to dst the frames of every event after cursor and returns the
// last one's seq, if the ring holds them all: cursor is the prev of an entry,
// or the last entry's seq (nothing follows).
func (r *recentFrames) after(cursor uint64, dst [][]byte) ([][]byte, uint64, bool) {
	if r.n > 0 && r.at(r.n-1).seq == cursor {
		return dst, cursor, true
	}
	i := sort.Search(r.n, func(i int) bool { return r.at(i).prev >= cursor })
	if i == r.n || r.at(i).prev != cursor {
		return dst, 0, false
	}
	for ; i < r.n; i++ {
		dst = append(dst, r.at(i).frame)
	}
	return dst, r.at(r.n - 1).seq, true
}
