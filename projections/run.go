package projections

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Store is what the runner needs of a projection's store.
type Store interface {
	Apply(ctx context.Context, events []chat.Event) error
	Position(ctx context.Context) (uint64, error)
}

// Feed delivers the stream's events in order (pkg/jetstream.Feed).
type Feed interface {
	Run(ctx context.Context, durable string, position uint64, batch int, apply func(context.Context, []chat.Event) error) error
	LastSeq(ctx context.Context) (uint64, error)
	DeleteConsumer(ctx context.Context, durable string) error
}

// Registry names each projection's live version (pkg/jetstream.Versions).
type Registry interface {
	Live(ctx context.Context, projection, def string) (string, error)
	Switch(ctx context.Context, projection, from, to string) error
	Watch(ctx context.Context, projection string, fn func(version string)) error
}

// DefaultBatch is how many events one store write applies at most (measured:
// 4,000 projects about 40% faster than 1,000 into SQLite on 2 cores).
const DefaultBatch = 4000

// Durable names the consumer that feeds a version.
func Durable(version string) string { return "proj-" + version }

// FirstVersion is a projection's version before any rebuild.
func FirstVersion(projection string) string { return projection + "_v1" }

// NextVersion returns the version after v (history_v1 -> history_v2).
func NextVersion(v string) (string, error) {
	i := strings.LastIndex(v, "_v")
	if i < 0 {
		return "", fmt.Errorf("version %q has no _v<n> suffix", v)
	}
	n, err := strconv.Atoi(v[i+2:])
	if err != nil {
		return "", fmt.Errorf("version %q: %w", v, err)
	}
	return v[:i] + "_v" + strconv.Itoa(n+1), nil
}

// Run projects into store from its position until ctx ends.
func Run(ctx context.Context, feed Feed, version string, store Store, batch int) error {
	pos, err := store.Position(ctx)
	if err != nil {
		return fmt.Errorf("%s position: %w", version, err)
	}
	return feed.Run(ctx, Durable(version), pos, batch, store.Apply)
}

// Progress reports a catch-up: position reached, target (the stream's last
// seq) and events applied per second since the start.
type Progress func(position, target uint64, rate float64)

// CatchUp projects into store until it has caught up with the stream: its
// position is within 500 events (or one batch, if smaller) of the stream's
// last seq, measured anew each time (under steady traffic a live projection
// trails by about that much too), then stops its consumer and returns.
func CatchUp(ctx context.Context, feed Feed, version string, store Store, batch int, progress Progress) error {
	start, err := store.Position(ctx)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(rctx, feed, version, store, batch) }()
	began := time.Now()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s stopped before catching up: %v", version, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		pos, err := store.Position(ctx)
		if err != nil {
			continue
		}
		target, err := feed.LastSeq(ctx)
		if err != nil {
			continue
		}
		if progress != nil {
			progress(pos, target, float64(pos-start)/time.Since(began).Seconds())
		}
		if pos+uint64(min(batch, 500)) >= target {
			cancel()
			<-done
			return nil
		}
	}
}

// Follow keeps the live version of a projection projected: it runs it, and
// when a rebuild switches the registry to a new version it stops the old one
// and runs the new one from that version's position. open returns the store
// of a version (and is called once per version).
func Follow(ctx context.Context, reg Registry, feed Feed, projection string, open func(version string) (Store, error), batch int, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	live, err := reg.Live(ctx, projection, FirstVersion(projection))
	if err != nil {
		return err
	}
	switched := make(chan string, 1)
	if err := reg.Watch(ctx, projection, func(v string) {
		select {
		case <-switched:
		default:
		}
		switched <- v
	}); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		store, err := open(live)
		if err != nil {
			return fmt.Errorf("open %s: %w", live, err)
		}
		rctx, cancel := context.WithCancel(ctx)
		wg.Add(1)
		go func(version string) {
			defer wg.Done()
			logger.Info("projecting", "version", version)
			if err := Run(rctx, feed, version, store, batch); err != nil {
				logger.Error("projection stopped", "version", version, "err", err)
			}
		}(live)
		for {
			select {
			case <-ctx.Done():
				cancel()
				return nil
			case v := <-switched:
				if v == live {
					continue
				}
				logger.Info("projection switched", "from", live, "to", v)
				cancel()
				wg.Wait()
				live = v
			}
			break
		}
	}
}
