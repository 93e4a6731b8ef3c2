package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/nats-io/nats.go/jetstream"
)

// Feed feeds projections from the CHAT stream through durable pull consumers.
type Feed struct {
	log    *Log
	logger *slog.Logger

	// Invalid counts events that could not be decoded (or named a room
	// that is not valid): they reach projections as chat.Invalid, which
	// only advances their position.
	Invalid atomic.Int64
	// invalidSeq is the largest seq counted in Invalid: every consumer of
	// the feed meets the same events, and each is counted once.
	invalidSeq atomic.Uint64
}

// Feed returns the log's projection feed.
func (l *Log) Feed(logger *slog.Logger) *Feed {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Feed{log: l, logger: logger}
}

// LastSeq is the stream's last sequence: a projection at that position has
// caught up.
func (f *Feed) LastSeq(ctx context.Context) (uint64, error) {
	info, err := f.log.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w: %w", chat.ErrLogDown, err)
	}
	return info.State.LastSeq, nil
}

// Run delivers every event after position, in stream order and in batches of
// at most batch events, to apply, through the durable consumer named
// durable; it returns when ctx ends. A batch is acknowledged only after apply
// returned nil; a failing apply is retried with the same batch, with backoff,
// so a store that is down delays the projection and loses nothing. Events
// that cannot be decoded reach apply as chat.Invalid with their Seq, so the
// projection's position passes them.
//
// The projection's store holds its position, so the consumer is made anew at
// every start, at position+1: a consumer kept from before would wait out
// the ack wait of messages delivered to a projector that crashed before
// acking them.
func (f *Feed) Run(ctx context.Context, durable string, position uint64, batch int, apply func(context.Context, []chat.Event) error) error {
	return f.run(ctx, durable, position, batch, func(events []chat.Event) bool {
		return f.applyRetrying(ctx, durable, events, apply)
	}, nil)
}

// applyRetrying applies events until apply succeeds, with backoff; false
// when ctx ended first.
func (f *Feed) applyRetrying(ctx context.Context, durable string, events []chat.Event, apply func(context.Context, []chat.Event) error) bool {
	for attempt := 0; ; attempt++ {
		err := apply(ctx, events)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		f.logger.Warn("projection apply failed; retrying", "consumer", durable, "err", err, "attempt", attempt)
		sleep(ctx, min(time.Duration(1<<min(attempt, 5))*100*time.Millisecond, 5*time.Second))
	}
}

// errRestart ends run when its stop says so.
var errRestart = errors.New("feed restart")

// run makes the consumer durable at position+1 and hands each batch of
// events to handle, acknowledging it once handle returns true; it returns
// nil when ctx ends (or handle returns false), errRestart when stop (polled
// before each fetch) says so.
func (f *Feed) run(ctx context.Context, durable string, position uint64, batch int, handle func([]chat.Event) bool, stop func() bool) error {
	cons, err := retry(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		if err := f.DeleteConsumer(ctx, durable); err != nil {
			return nil, err
		}
		return f.log.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       durable,
			Description:   "jetchat projection " + durable,
			FilterSubject: RoomPrefix + "*",
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:   position + 1,
			AckPolicy:     jetstream.AckAllPolicy,
			AckWait:       time.Minute,
			MaxAckPending: 4 * batch,
			Replicas:      0, // as the stream
		})
	})
	if err != nil {
		return fmt.Errorf("projection consumer %s: %w", durable, err)
	}
	events := make([]chat.Event, 0, batch)
	// Each room's last seq, to give events their Prev (consumer messages do
	// not carry it). From the start of the stream every room's first event
	// has Prev 0; from a later position, a room's first event asks the
	// stream for the room's last event before it.
	prevs := make(map[string]uint64)
	prevOf := func(room string, seq uint64) uint64 {
		if p, ok := prevs[room]; ok || position == 0 {
			return p
		}
		p, err := f.log.lastBefore(ctx, room, seq)
		if err != nil {
			f.logger.Warn("projection: previous event of room unknown", "room", room, "seq", seq, "err", err)
		}
		return p
	}
	for ctx.Err() == nil {
		if stop != nil && stop() {
			return errRestart
		}
		msgs, err := cons.Fetch(batch, jetstream.FetchMaxWait(250*time.Millisecond))
		if err != nil {
			f.logger.Warn("projection fetch", "consumer", durable, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		events = events[:0]
		var last jetstream.Msg
		for m := range msgs.Messages() {
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			room := m.Subject()[len(RoomPrefix):]
			ev := f.log.dec.decode(md.Sequence.Stream, m.Data(), room)
			{
				ev.Prev = prevOf(room, ev.Seq)
				prevs[room] = ev.Seq
			}
			if ev.Type == chat.Invalid && f.firstToMeet(ev.Seq) {
				f.Invalid.Add(1)
				f.logger.Warn("skipping an undecodable event", "consumer", durable, "seq", ev.Seq, "subject", m.Subject())
			}
			events = append(events, ev)
			last = m
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			f.logger.Warn("projection fetch", "consumer", durable, "err", err)
		}
		if last == nil {
			continue
		}
		if !handle(events) {
			return nil
		}
		if err := last.Ack(); err != nil {
			f.logger.Warn("projection ack", "consumer", durable, "err", err)
		}
	}
	return nil
}

// firstToMeet reports whether no consumer of the feed has passed seq yet.
func (f *Feed) firstToMeet(seq uint64) bool {
	for {
		seen := f.invalidSeq.Load()
		if seq <= seen {
			return false
		}
		if f.invalidSeq.CompareAndSwap(seen, seq) {
			return true
		}
	}
}

// DeleteConsumer removes a projection's durable consumer (after a rebuild
// replaced it).
func (f *Feed) DeleteConsumer(ctx context.Context, durable string) error {
	err := f.log.stream.DeleteConsumer(ctx, durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
