// Package stores wires the read models to their configured databases:
// MongoDB when a URL is given (a cluster), else SQLite files in the data dir
// (the embedded default); the recent projection lives in Redis when a client
// is given. chatd and the projector open versions through it alike.
package stores

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/history"
	historymongo "github.com/jetchat/jetchat/projections/history/mongo"
	historysqlite "github.com/jetchat/jetchat/projections/history/sqlite"
	"github.com/jetchat/jetchat/projections/reads"
	readsmongo "github.com/jetchat/jetchat/projections/reads/mongo"
	readssqlite "github.com/jetchat/jetchat/projections/reads/sqlite"
	"github.com/jetchat/jetchat/projections/recent"
	recentredis "github.com/jetchat/jetchat/projections/recent/redis"
	"github.com/jetchat/jetchat/projections/rooms"
	roomsmongo "github.com/jetchat/jetchat/projections/rooms/mongo"
	roomssqlite "github.com/jetchat/jetchat/projections/rooms/sqlite"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The projections.
const (
	History = "history"
	Rooms   = "rooms"
	Reads   = "reads"
	Recent  = "recent"
)

// Config says where the projections live.
type Config struct {
	MongoURL    string                // empty: SQLite files in SQLiteDir
	SQLiteDir   string                // projections.db (history), rooms.db, reads.db
	Redis       redis.UniversalClient // the recent projection's store; nil: none here
	RedisPrefix string                // key prefix in Redis
	RecentSize  int                   // events kept per room by recent; 0: recent.DefaultN
}

// Projection is one version of a read model as the projector drives it.
type Projection interface {
	Apply(ctx context.Context, events []chat.Event) error
	Position(ctx context.Context) (uint64, error)
	Drop(ctx context.Context) error
	Close() error
}

// Stores opens versions of the read models in their databases.
type Stores struct {
	cfg    Config
	client *mongo.Client
	db     *mongo.Database
}

// Open connects to MongoDB if a URL is configured (its path names the
// database, default "jetchat").
func Open(c Config) (*Stores, error) {
	if c.RecentSize == 0 {
		c.RecentSize = recent.DefaultN
	}
	s := &Stores{cfg: c}
	if c.MongoURL != "" {
		// Fail fast when MongoDB is down (the driver waits 30 s for a
		// server by default): readers answer "unavailable" and the
		// projector retries its batch. A serverSelectionTimeoutMS in the
		// URL wins.
		client, err := mongo.Connect(options.Client().SetServerSelectionTimeout(3 * time.Second).ApplyURI(c.MongoURL))
		if err != nil {
			return nil, fmt.Errorf("mongo: %w", err)
		}
		s.client, s.db = client, client.Database(Database(c.MongoURL))
	}
	return s, nil
}

// Names lists the durable projections this configuration keeps: history,
// rooms and reads, and recent when Redis is configured.
func (s *Stores) Names() []string {
	names := []string{History, Rooms, Reads}
	if s.cfg.Redis != nil {
		names = append(names, Recent)
	}
	return names
}

// Open opens a version of the named projection.
func (s *Stores) Open(ctx context.Context, projection, version string) (Projection, error) {
	switch projection {
	case History:
		return s.History(ctx, version)
	case Rooms:
		return s.Rooms(ctx, version)
	case Reads:
		return s.Reads(ctx, version)
	case Recent:
		if s.cfg.Redis == nil {
			return nil, fmt.Errorf("the recent projection needs Redis (--redis-url)")
		}
		return s.Recent(ctx, version)
	}
	return nil, fmt.Errorf("unknown projection %q (known: %s)", projection, strings.Join(s.Names(), ", "))
}

func (s *Stores) sqlite(file string) string { return filepath.Join(s.cfg.SQLiteDir, file) }

// History opens a version of the history read model.
func (s *Stores) History(ctx context.Context, version string) (history.Store, error) {
	if s.db != nil {
		return historymongo.New(ctx, s.db, version)
	}
	return historysqlite.Open(ctx, s.sqlite("projections.db"), version)
}

// Rooms opens a version of the room list read model.
func (s *Stores) Rooms(ctx context.Context, version string) (rooms.Store, error) {
	if s.db != nil {
		return roomsmongo.New(ctx, s.db, version)
	}
	return roomssqlite.Open(ctx, s.sqlite("rooms.db"), version)
}

// Reads opens a version of the read markers read model.
func (s *Stores) Reads(ctx context.Context, version string) (reads.Store, error) {
	if s.db != nil {
		return readsmongo.New(ctx, s.db, version)
	}
	return readssqlite.Open(ctx, s.sqlite("reads.db"), version)
}

// Recent opens a version of the recent events cache in Redis.
func (s *Stores) Recent(ctx context.Context, version string) (*recentredis.Store, error) {
	return recentredis.New(s.cfg.Redis, s.cfg.RedisPrefix+version+":", s.cfg.RecentSize), nil
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
