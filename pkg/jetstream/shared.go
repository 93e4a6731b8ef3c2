package jetstream

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Shared feeds every projection of one process from one consumer. The
// in-process projector's projections (history, rooms, reads, recent) all
// follow the whole stream: with a consumer each, the nats-server delivered,
// and nats.go parsed and allocated, every event once per projection, about
// as much CPU as the projections' own work. Shared reads each batch once and
// hands it to each Run's apply in turn, each getting the events after its
// own position.
//
// A Run that starts behind the consumer (a projection's new version after a
// rebuild, a store restored from a backup) makes it start over from there;
// the others skip what they have. A batch is acknowledged once every Run
// has applied it; an apply that fails is retried, with backoff, and holds up
// the others meanwhile (they share a store, SQLite's file or one MongoDB, so
// what fails one mostly fails all).
type Shared struct {
	f       *Feed
	durable string

	mu      sync.Mutex
	runs    []*sharedRun
	running bool   // the loop runs
	cancel  func() // ends the loop's current consumer
	restart bool   // a Run started behind the consumer
	next    uint64 // the seq the consumer's next batch starts at, at least
	batch   int    // the largest batch a Run asked for
}

type sharedRun struct {
	ctx     context.Context
	durable string
	apply   func(context.Context, []chat.Event) error
	behind  bool // guarded by Shared.mu: started behind the consumer; gets nothing until it starts over

	mu   sync.Mutex // held while applying
	pos  uint64     // guarded by mu
	gone bool       // guarded by mu: Run returned
}

// Shared returns a feed whose Runs share one consumer, named durable.
func (f *Feed) Shared(durable string) *Shared {
	return &Shared{f: f, durable: durable}
}

// LastSeq is the stream's last sequence (Feed.LastSeq).
func (s *Shared) LastSeq(ctx context.Context) (uint64, error) { return s.f.LastSeq(ctx) }

// DeleteConsumer removes a durable consumer (Feed.DeleteConsumer): the ones
// the projections' versions had before, or a rebuild's.
func (s *Shared) DeleteConsumer(ctx context.Context, durable string) error {
	return s.f.DeleteConsumer(ctx, durable)
}

// Run delivers every event after position, in stream order and in batches of
// at most batch events, to apply, as Feed.Run does, until ctx ends. durable
// names the projection in logs; the consumer is the Shared's.
func (s *Shared) Run(ctx context.Context, durable string, position uint64, batch int, apply func(context.Context, []chat.Event) error) error {
	r := &sharedRun{ctx: ctx, durable: durable, apply: apply, pos: position}
	s.mu.Lock()
	s.runs = append(s.runs, r)
	s.batch = max(s.batch, batch)
	if s.running && position+1 < s.next {
		// The consumer has passed position: a batch already fetched would
		// leave a gap for r.
		s.restart, r.behind = true, true
	}
	if !s.running {
		s.running = true
		go s.loop()
	}
	s.mu.Unlock()

	<-ctx.Done()
	r.mu.Lock() // waits out an apply in progress
	r.gone = true
	r.mu.Unlock()
	s.mu.Lock()
	for i, o := range s.runs {
		if o == r {
			s.runs = append(s.runs[:i], s.runs[i+1:]...)
			break
		}
	}
	if len(s.runs) == 0 && s.cancel != nil {
		s.cancel() // the loop may be waiting on the stream: no one needs it
	}
	s.mu.Unlock()
	return nil
}

// loop runs the consumer while there are Runs: from the least position of
// them, and again from the start whenever a Run starts behind it.
func (s *Shared) loop() {
	for {
		s.mu.Lock()
		if len(s.runs) == 0 {
			s.running, s.cancel = false, nil
			s.mu.Unlock()
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		from := s.runs[0].position()
		for _, r := range s.runs {
			from = min(from, r.position())
			r.behind = false
		}
		s.restart, s.next = false, from+1
		batch := s.batch
		s.mu.Unlock()

		err := s.f.run(ctx, s.durable, from, batch, s.deliver, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.restart || len(s.runs) == 0
		})
		if err != nil && !errors.Is(err, errRestart) && ctx.Err() == nil {
			s.f.logger.Warn("shared projection feed", "consumer", s.durable, "err", err)
			sleep(ctx, time.Second)
		}
		cancel()
	}
}

// deliver hands a batch to every Run, each the events after its position.
func (s *Shared) deliver(events []chat.Event) bool {
	s.mu.Lock()
	var runs []*sharedRun
	for _, r := range s.runs {
		if !r.behind {
			runs = append(runs, r)
		}
	}
	s.next = max(s.next, events[len(events)-1].Seq+1)
	s.mu.Unlock()
	for _, r := range runs {
		r.mu.Lock()
		if !r.gone {
			i := 0
			for i < len(events) && events[i].Seq <= r.pos {
				i++
			}
			if i < len(events) && s.f.applyRetrying(r.ctx, r.durable, events[i:], r.apply) {
				r.pos = events[len(events)-1].Seq
			}
		}
		r.mu.Unlock()
	}
	return true
}

func (r *sharedRun) position() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pos
}
