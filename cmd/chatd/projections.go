package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/reads"
	"github.com/jetchat/jetchat/projections/recent"
	"github.com/jetchat/jetchat/projections/rooms"
	"github.com/jetchat/jetchat/projections/stores"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// views serves reads from the live version of each projection.
type views struct {
	history *projections.Live[history.Store]
	rooms   *projections.Live[rooms.Store]
	reads   *projections.Live[reads.Store]
	recent  func() recent.Store // nil: no recent projection on this node
	feed    *jetstream.Feed
}

func (v *views) Messages(ctx context.Context, room string, p history.Page) ([]history.Message, error) {
	return v.history.Store().Messages(ctx, room, p)
}

func (v *views) List(ctx context.Context, user string, limit int) ([]rooms.Room, error) {
	return v.rooms.Store().List(ctx, user, limit)
}

func (v *views) Markers(ctx context.Context, user string, rs []string) (map[string]reads.Marker, error) {
	return v.reads.Store().Markers(ctx, user, rs)
}

func (v *views) All(ctx context.Context, user string) ([]reads.Marker, error) {
	return v.reads.Store().All(ctx, user)
}

// recentEvents reads the recent projection (node.Recent).
type recentEvents func() recent.Store

func (r recentEvents) Events(ctx context.Context, room string, n int) ([]chat.Event, error) {
	return r().Events(ctx, room, n)
}

// collectors are the in-process projector's metrics.
func (v *views) collectors() []prometheus.Collector {
	return []prometheus.Collector{prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "jetchat_projection_invalid_events_total",
		Help: "Undecodable events the in-process projector skipped.",
	}, func() float64 { return float64(v.feed.Invalid.Load()) })}
}

// startProjections opens the live version of every projection for readers
// and, with --projector, keeps them projected from the log in this process.
// The recent projection is in Redis when a client is given; else, with
// --projector (the embedded default), in memory, filling from the head on.
func startProjections(ctx context.Context, c config, log *jetstream.Log, rdb redis.UniversalClient, logger *slog.Logger) (*views, func(), error) {
	st, err := stores.Open(stores.Config{MongoURL: c.MongoURL, SQLiteDir: c.DataDir, Redis: rdb, RedisPrefix: c.RedisPrefix, RecentSize: c.RecentSize})
	if err != nil {
		return nil, nil, err
	}
	var closers []func() error
	fail := func(err error) (*views, func(), error) {
		for _, c := range closers {
			_ = c()
		}
		st.Close()
		return nil, nil, err
	}
	reg, err := log.Versions(ctx, c.Replicas)
	if err != nil {
		return fail(err)
	}
	v := &views{feed: log.Feed(logger)}
	if v.history, err = projections.FollowLive(ctx, reg, stores.History, func(ver string) (history.Store, error) { return st.History(ctx, ver) }, logger); err != nil {
		return fail(err)
	}
	closers = append(closers, func() error { return v.history.Store().Close() })
	if v.rooms, err = projections.FollowLive(ctx, reg, stores.Rooms, func(ver string) (rooms.Store, error) { return st.Rooms(ctx, ver) }, logger); err != nil {
		return fail(err)
	}
	closers = append(closers, func() error { return v.rooms.Store().Close() })
	if v.reads, err = projections.FollowLive(ctx, reg, stores.Reads, func(ver string) (reads.Store, error) { return st.Reads(ctx, ver) }, logger); err != nil {
		return fail(err)
	}
	closers = append(closers, func() error { return v.reads.Store().Close() })

	names := []string{stores.History, stores.Rooms, stores.Reads}
	var memRecent *recent.Memory
	switch {
	case rdb != nil:
		live, err := projections.FollowLive(ctx, reg, stores.Recent, func(ver string) (recent.Store, error) { return st.Recent(ctx, ver) }, logger)
		if err != nil {
			return fail(err)
		}
		v.recent = live.Store
		names = append(names, stores.Recent)
	case c.Projector:
		head, err := v.feed.LastSeq(ctx)
		if err != nil {
			return fail(fmt.Errorf("recent projection: %w", err))
		}
		memRecent = recent.NewMemory(c.RecentSize, head)
		v.recent = func() recent.Store { return memRecent }
	}

	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// One consumer feeds every projection of this process: a consumer
	// each made the nats-server deliver, and nats.go parse, each event once
	// per projection (pkg/jetstream.Shared).
	feed := v.feed.Shared(projections.Durable("embedded"))
	if c.Projector {
		for _, name := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := projections.Follow(pctx, reg, feed, name, func(ver string) (projections.Store, error) {
					return st.Open(pctx, name, ver)
				}, projections.DefaultBatch, logger.With("projection", name))
				if err != nil && pctx.Err() == nil {
					logger.Error("projector stopped", "projection", name, "err", err)
				}
			}()
		}
		if memRecent != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// One embedded process per data dir, so one durable name.
				err := projections.Run(pctx, feed, "recent_memory", memRecent, projections.DefaultBatch)
				if err != nil && pctx.Err() == nil {
					logger.Error("recent projection stopped", "err", err)
				}
			}()
		}
	}
	stop := func() {
		cancel()
		wg.Wait()
		for _, c := range closers {
			_ = c()
		}
		st.Close()
	}
	return v, stop, nil
}
