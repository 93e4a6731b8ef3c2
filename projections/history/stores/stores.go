// Package stores wires the history read model to its configured database:
// MongoDB when a URL is given (a cluster), else a SQLite file (the embedded
// default). chatd and the projector open versions through it alike.
package stores

import (
	"context"
	"fmt"
	"strings"

	"github.com/jetchat/jetchat/projections/history"
	historymongo "github.com/jetchat/jetchat/projections/history/mongo"
	historysqlite "github.com/jetchat/jetchat/projections/history/sqlite"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Stores opens versions of the history store in one database.
type Stores struct {
	open   func(ctx context.Context, version string) (history.Store, error)
	client *mongo.Client
}

// Open connects to MongoDB at mongoURL (its path names the database, default
// "jetchat"), or, with no URL, uses the SQLite file at sqlitePath.
func Open(mongoURL, sqlitePath string) (*Stores, error) {
	if mongoURL == "" {
		return &Stores{open: func(ctx context.Context, version string) (history.Store, error) {
			return historysqlite.Open(ctx, sqlitePath, version)
		}}, nil
	}
	client, err := mongo.Connect(options.Client().ApplyURI(mongoURL))
	if err != nil {
		return nil, fmt.Errorf("mongo: %w", err)
	}
	db := client.Database(Database(mongoURL))
	return &Stores{client: client, open: func(ctx context.Context, version string) (history.Store, error) {
		return historymongo.New(ctx, db, version)
	}}, nil
}

// Version opens one version of the store.
func (s *Stores) Version(ctx context.Context, version string) (history.Store, error) {
	return s.open(ctx, version)
}

// Close disconnects from MongoDB (SQLite stores close themselves).
func (s *Stores) Close() {
	if s.client != nil {
		_ = s.client.Disconnect(context.Background())
	}
}

// Database is the database named in a MongoDB URL's path, or "jetchat".
func Database(url string) string {
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
