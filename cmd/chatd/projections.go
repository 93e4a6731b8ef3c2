package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/history"
	historymongo "github.com/jetchat/jetchat/projections/history/mongo"
	historysqlite "github.com/jetchat/jetchat/projections/history/sqlite"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// historyStores opens versions of the history store: in MongoDB when a URL
// is configured, else in the SQLite file projections.db in the data dir.
type historyStores struct {
	open  func(ctx context.Context, version string) (history.Store, error)
	close func()
}

func openHistoryStores(ctx context.Context, c config) (*historyStores, error) {
	if c.MongoURL == "" {
		path := filepath.Join(c.DataDir, "projections.db")
		return &historyStores{
			open: func(ctx context.Context, version string) (history.Store, error) {
				return historysqlite.Open(ctx, path, version)
			},
			close: func() {},
		}, nil
	}
	client, err := mongo.Connect(options.Client().ApplyURI(c.MongoURL))
	if err != nil {
		return nil, fmt.Errorf("mongo: %w", err)
	}
	db := client.Database(mongoDatabase(c.MongoURL))
	return &historyStores{
		open: func(ctx context.Context, version string) (history.Store, error) {
			return historymongo.New(ctx, db, version)
		},
		close: func() { _ = client.Disconnect(context.Background()) },
	}, nil
}

// mongoDatabase is the database named in a MongoDB URL's path, or jetchat.
func mongoDatabase(url string) string {
	rest := url
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		name := rest[i+1:]
		if j := strings.IndexAny(name, "?#"); j >= 0 {
			name = name[:j]
		}
		if name != "" {
			return name
		}
	}
	return "jetchat"
}

// liveHistory serves reads from the live version of the history projection.
type liveHistory struct {
	live *projections.Live[history.Store]
}

func (h liveHistory) Messages(ctx context.Context, room string, p history.Page) ([]history.Message, error) {
	return h.live.Store().Messages(ctx, room, p)
}

// startHistory opens the history projection's live version for readers and,
// with runProjector, keeps it projected from the log in this process.
func startHistory(ctx context.Context, c config, log *jetstream.Log, logger *slog.Logger) (liveHistory, func(), error) {
	stores, err := openHistoryStores(ctx, c)
	if err != nil {
		return liveHistory{}, nil, err
	}
	reg, err := log.Versions(ctx, c.Replicas)
	if err != nil {
		stores.close()
		return liveHistory{}, nil, err
	}
	live, err := projections.FollowLive(ctx, reg, "history", func(v string) (history.Store, error) {
		return stores.open(ctx, v)
	}, logger)
	if err != nil {
		stores.close()
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
			return stores.open(pctx, v)
		}, projections.DefaultBatch, logger)
		if err != nil {
			logger.Error("history projector stopped", "err", err)
		}
	}()
	stop := func() {
		cancel()
		<-done
		_ = live.Store().Close()
		stores.close()
	}
	return liveHistory{live: live}, stop, nil
}
