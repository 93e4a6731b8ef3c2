package main

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/history/stores"
	"github.com/prometheus/client_golang/prometheus"
)

// liveHistory serves reads from the live version of the history projection.
type liveHistory struct {
	live *projections.Live[history.Store]
	feed *jetstream.Feed
}

// collectors are the projection's metrics.
func (h liveHistory) collectors() []prometheus.Collector {
	return []prometheus.Collector{prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "jetchat_projection_invalid_events_total",
		Help: "Undecodable events the in-process projector skipped.",
	}, func() float64 { return float64(h.feed.Invalid.Load()) })}
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
	feed := log.Feed(logger)
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !c.Projector {
			return
		}
		err := projections.Follow(pctx, reg, feed, "history", func(v string) (projections.Store, error) {
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
	return liveHistory{live: live, feed: feed}, stop, nil
}
