package projectiontest

import (
	"fmt"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Epoch is the time of a Log's seq 0.
var Epoch = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)

// Log hands out events as a stream would: increasing seqs across rooms, Prev
// per room, and, unless an event has them, increasing times with nanoseconds
// and an ID "e<seq>". A message.sent keeps the ID it has, none included: its
// ID is the client's, and a missing one is a case the suites test.
type Log struct {
	seq     uint64
	last    map[string]uint64
	pending []chat.Event
}

// Add stamps e as the next event of the log and queues it for Take.
func (l *Log) Add(e chat.Event) chat.Event {
	if l.last == nil {
		l.last = make(map[string]uint64)
	}
	l.seq++
	e.Seq, e.Prev = l.seq, l.last[e.Room]
	l.last[e.Room] = e.Seq
	if e.Time.IsZero() {
		e.Time = Epoch.Add(time.Duration(e.Seq)*time.Second + time.Duration(e.Seq)*time.Nanosecond)
	}
	if e.ID == "" && e.Type != chat.MessageSent {
		e.ID = fmt.Sprintf("e%d", e.Seq)
	}
	l.pending = append(l.pending, e)
	return e
}

// Take returns the events added since the last Take, as one batch.
func (l *Log) Take() []chat.Event {
	b := l.pending
	l.pending = nil
	return b
}

// Seq is the seq of the last event added.
func (l *Log) Seq() uint64 { return l.seq }
