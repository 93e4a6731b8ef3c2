package jetstream

import (
	"hash/maphash"
	"sync"

	"github.com/jetchat/jetchat/pkg/chat"
)

// decodedSize is how many recently decoded events a Log keeps: about a
// second of a busy node's stream, enough for the projections' consumers,
// which read the same events a batch apart, to find them decoded.
const decodedSize = 8192

// decoded keeps the last events decoded from the stream by sequence, so that
// the live subscription and each projection's consumer, which all read every
// event, decode each once. An entry is used only for the same seq and the
// same stored bytes (by hash, so that the cache keeps no message buffers): a
// stream deleted and made again reuses seqs.
type decoded struct {
	mu      sync.Mutex
	entries []decodedEntry // nil until the first use; indexed by seq % decodedSize
}

type decodedEntry struct {
	seq uint64
	sum uint64 // maphash of the stored body
	ev  chat.Event
}

var decodedSeed = maphash.MakeSeed()

// decode is DecodeStored through the cache, with ev.Seq set to seq.
func (d *decoded) decode(seq uint64, data []byte, room string) chat.Event {
	i := seq % decodedSize
	sum := maphash.Bytes(decodedSeed, data)
	d.mu.Lock()
	if d.entries != nil {
		if e := &d.entries[i]; e.seq == seq && e.sum == sum && e.ev.Room == room {
			ev := e.ev
			d.mu.Unlock()
			return ev
		}
	}
	d.mu.Unlock()
	ev := DecodeStored(data, room)
	ev.Seq = seq
	d.mu.Lock()
	if d.entries == nil {
		d.entries = make([]decodedEntry, decodedSize)
	}
	d.entries[i] = decodedEntry{seq: seq, sum: sum, ev: ev}
	d.mu.Unlock()
	return ev
}
