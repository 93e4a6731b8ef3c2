package main

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/history/stores"
)

// liveHistory serves reads from the live version of the history projection.
type liveHistory struct {
	live *projections.Live[history.Store]
}

func (h liveHistory) Messages(ctx context.Context, room string, p history.Page) ([]history.Message, error) {
	return h.live.Store().Messages(ctx, room, p)
}

// startHistory opens the history projection's live version for readers and,
// with --projector, keeps it projected from the log in this process.
func startHistory(ctx context.Context, c config, log *jetstream.Log, logger *slog.Logger) (liveHistory, func(), error) {
	st, err := stores.Open(c.MongoURL, filepath.Join(c.DataDir, "projections.db"))
	if err != nil {
		return liveHistory{}, nil, err
	}
	reg, err := log.Versions(ctx, c.Replicas)
	if err != nil {
		st.Close()
		return liveHistory{}, nil, err
	}
	live, err := projections.FollowLive(ctx, reg, "history", func(v string) (history.Store, error) {
		return st.Version(ctx, v)
	}, logger)
	if err != nil {
		st.Close()
		return liveHistory{}, nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !c.Projector {
			return
		}
		err := projections.Follow(pctx, reg, log.Feed(logger), "history", func(v string) (projections.Store, error) {
			return st.Version(pctx, v)
		}, projections.DefaultBatch, logger)
		if err != nil {
			logger.Error("history projector stopped", "err", err)
		}
	}()
	stop := func() {
		cancel()
		<-done
		_ = live.Store().Close()
		st.Close()
	}
	return liveHistory{live: live}, stop, nil
}
