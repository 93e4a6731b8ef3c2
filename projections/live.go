package projections

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Live holds the store of a projection's live version for readers, and
// follows the registry when a rebuild switches it: the new version's store is
// opened and swapped in, and the old one closed a little later, so readers
// in flight finish on it.
type Live[S interface{ Close() error }] struct {
	mu      sync.RWMutex
	version string
	store   S
}

// FollowLive opens the live version of projection and keeps following it
// until ctx ends.
func FollowLive[S interface{ Close() error }](ctx context.Context, reg Registry, projection string, open func(version string) (S, error), logger *slog.Logger) (*Live[S], error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	version, err := reg.Live(ctx, projection, FirstVersion(projection))
	if err != nil {
		return nil, err
	}
	store, err := open(version)
	if err != nil {
		return nil, err
	}
	l := &Live[S]{version: version, store: store}
	err = reg.Watch(ctx, projection, func(v string) {
		l.mu.RLock()
		same := v == l.version
		l.mu.RUnlock()
		if same {
			return
		}
		s, err := open(v)
		if err != nil {
			logger.Error("open switched projection", "version", v, "err", err)
			return
		}
		l.mu.Lock()
		old := l.store
		l.version, l.store = v, s
		l.mu.Unlock()
		logger.Info("readers switched", "projection", projection, "version", v)
		time.AfterFunc(5*time.Second, func() { _ = old.Close() })
	})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	return l, nil
}

// Store returns the live version's store.
func (l *Live[S]) Store() S {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.store
}

// Version returns the live version's name.
func (l *Live[S]) Version() string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.version
}
