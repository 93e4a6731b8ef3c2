// Command projector keeps jetchat's projections up to date from the event
// log, rebuilds them beside the live version, and reports their lag.
//
//	projector run [name...]      project the live version of every projection (or the named ones)
//	projector rebuild <name>     build the next version from the first event, switch readers, drop the old
//	projector status             position and lag per projection
//
// The projections are history, rooms and reads (SQLite in the data dir, or
// MongoDB), and recent when Redis is configured. Against the embedded default
// it finds the running chatd's nats-server through the data dir; in a cluster
// give --nats-url, --mongo-url and --redis-url.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jetchat/jetchat/pkg/jetstream"
	jetredis "github.com/jetchat/jetchat/pkg/redis"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/recent"
	"github.com/jetchat/jetchat/projections/stores"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "projector:", err)
		os.Exit(1)
	}
}

type config struct {
	NATSURL     string
	DataDir     string
	MongoURL    string
	RedisURL    string
	RedisPrefix string
	RecentSize  int
	Batch       int
	Grace       time.Duration
	MetricsAddr string
	LogLevel    string
}

func parse(args []string, getenv func(string) string, out io.Writer) (config, []string, error) {
	var c config
	fs := flag.NewFlagSet("projector", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: projector [flags] run | rebuild <projection> | status")
		fs.PrintDefaults()
	}
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	envInt := func(name string, def int) int {
		if v, err := strconv.Atoi(getenv(name)); err == nil {
			return v
		}
		return def
	}
	fs.StringVar(&c.NATSURL, "nats-url", env("NATS_URL", ""), "NATS URLs; empty: the embedded chatd running on --data-dir (NATS_URL)")
	fs.StringVar(&c.DataDir, "data-dir", env("CHAT_DATA_DIR", "./data"), "data dir of the embedded chatd: its NATS URL and token, and projections.db (CHAT_DATA_DIR)")
	fs.StringVar(&c.MongoURL, "mongo-url", env("MONGO_URL", ""), "MongoDB URL; empty: SQLite in the data dir (MONGO_URL)")
	fs.StringVar(&c.RedisURL, "redis-url", env("REDIS_URL", ""), "Redis URL (or comma-separated addresses) for the recent projection; empty: no recent projection here (REDIS_URL)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", env("CHAT_REDIS_PREFIX", "jetchat:"), "prefix of every Redis key (CHAT_REDIS_PREFIX)")
	fs.IntVar(&c.RecentSize, "recent-size", envInt("CHAT_RECENT_SIZE", recent.DefaultN), "events the recent projection keeps per room (CHAT_RECENT_SIZE)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", env("CHAT_METRICS_ADDR", ""), "serve Prometheus /metrics on this address during run, e.g. :9090; empty: off (CHAT_METRICS_ADDR)")
	fs.IntVar(&c.Batch, "batch", projections.DefaultBatch, "events applied per store write")
	fs.DurationVar(&c.Grace, "grace", 6*time.Second, "rebuild: how long readers get to switch before the old version is dropped")
	fs.StringVar(&c.LogLevel, "log-level", env("CHAT_LOG_LEVEL", "info"), "debug, info, warn or error (CHAT_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return c, nil, errors.New("a command is required")
	}
	return c, fs.Args(), nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, cmd, err := parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	nc, err := connect(c)
	if err != nil {
		return err
	}
	defer nc.Close()
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	log, err := jetstream.Attach(actx, nc)
	cancel()
	if err != nil {
		return err
	}
	reg, err := log.Versions(ctx, 0)
	if err != nil {
		return err
	}
	var rdb redis.UniversalClient
	if c.RedisURL != "" {
		if rdb, err = jetredis.Open(c.RedisURL); err != nil {
			return err
		}
		defer rdb.Close()
	}
	st, err := stores.Open(stores.Config{MongoURL: c.MongoURL, SQLiteDir: c.DataDir, Redis: rdb, RedisPrefix: c.RedisPrefix, RecentSize: c.RecentSize})
	if err != nil {
		return err
	}
	defer st.Close()
	feed := log.Feed(logger)

	switch cmd[0] {
	case "run":
		names := cmd[1:]
		if len(names) == 0 {
			names = st.Names()
		}
		for _, name := range names {
			if !slices.Contains(st.Names(), name) {
				return fmt.Errorf("unknown projection %q (known: %s)", name, strings.Join(st.Names(), ", "))
			}
		}
		return runAll(ctx, c, reg, feed, st, names, logger)
	case "status":
		return status(ctx, stdout, reg, feed, st)
	case "rebuild":
		if len(cmd) != 2 || !slices.Contains(st.Names(), cmd[1]) {
			return fmt.Errorf("usage: projector rebuild <projection> (known: %s)", strings.Join(st.Names(), ", "))
		}
		return rebuild(ctx, c, stderr, reg, feed, st, cmd[1], logger)
	}
	return fmt.Errorf("unknown command %q: run, rebuild or status", cmd[0])
}

// runAll keeps the named projections projected, each by its own consumer,
// until ctx ends or one of them fails.
func runAll(ctx context.Context, c config, reg projections.Registry, feed *jetstream.Feed, st *stores.Stores, names []string, logger *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.MetricsAddr != "" {
		stop, err := serveMetrics(ctx, c.MetricsAddr, reg, feed, st, names, logger)
		if err != nil {
			return err
		}
		defer stop()
	}
	errc := make(chan error, len(names))
	for _, name := range names {
		go func() {
			err := projections.Follow(ctx, reg, feed, name, func(v string) (projections.Store, error) {
				return st.Open(ctx, name, v)
			}, c.Batch, logger.With("projection", name))
			if err != nil && ctx.Err() == nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
			errc <- err
		}()
	}
	var first error
	for range names {
		if err := <-errc; err != nil && first == nil && ctx.Err() == nil {
			first = err
			cancel()
		}
	}
	return first
}

// connect reaches NATS at --nats-url or the embedded chatd of --data-dir.
func connect(c config) (*nats.Conn, error) {
	url, opts := c.NATSURL, []nats.Option{nats.Name("projector"), nats.MaxReconnects(-1)}
	if url == "" {
		b, err := os.ReadFile(filepath.Join(c.DataDir, "nats.url"))
		if err != nil {
			return nil, fmt.Errorf("no --nats-url, and no running embedded chatd in %s: %w", c.DataDir, err)
		}
		token, err := os.ReadFile(filepath.Join(c.DataDir, "nats-token"))
		if err != nil {
			return nil, fmt.Errorf("embedded chatd's token: %w", err)
		}
		url = strings.TrimSpace(string(b))
		opts = append(opts, nats.Token(string(token)))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	return nc, nil
}

// positions reads the live version and position of each projection.
func positions(ctx context.Context, reg projections.Registry, st *stores.Stores, names []string) (versions []string, pos []uint64, err error) {
	for _, name := range names {
		v, err := reg.Live(ctx, name, projections.FirstVersion(name))
		if err != nil {
			return nil, nil, err
		}
		s, err := st.Open(ctx, name, v)
		if err != nil {
			return nil, nil, err
		}
		p, err := s.Position(ctx)
		_ = s.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("%s position: %w", v, err)
		}
		versions, pos = append(versions, v), append(pos, p)
	}
	return versions, pos, nil
}

func status(ctx context.Context, out io.Writer, reg projections.Registry, feed *jetstream.Feed, st *stores.Stores) error {
	last, err := feed.LastSeq(ctx)
	if err != nil {
		return err
	}
	names := st.Names()
	versions, pos, err := positions(ctx, reg, st, names)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%-12s %-14s %12s %12s %10s\n", "PROJECTION", "VERSION", "POSITION", "STREAM", "LAG")
	for i, name := range names {
		fmt.Fprintf(out, "%-12s %-14s %12d %12d %10d\n", name, versions[i], pos[i], last, last-min(pos[i], last))
	}
	return nil
}

// rebuild builds the next version of a projection from the first event
// beside the live one, switches readers to it once it has caught up, and
// drops the old version after a grace period. Chat and reads go on
// throughout.
func rebuild(ctx context.Context, c config, stderr io.Writer, reg projections.Registry, feed *jetstream.Feed, st *stores.Stores, name string, logger *slog.Logger) error {
	live, err := reg.Live(ctx, name, projections.FirstVersion(name))
	if err != nil {
		return err
	}
	next, err := projections.NextVersion(live)
	if err != nil {
		return err
	}
	// A version left by an interrupted rebuild starts over.
	if err := dropVersion(ctx, feed, st, name, next); err != nil {
		return err
	}
	store, err := st.Open(ctx, name, next)
	if err != nil {
		return err
	}
	defer store.Close()
	fmt.Fprintf(stderr, "rebuilding %s into %s (live: %s)\n", name, next, live)
	began := time.Now()
	bar := progressBar(stderr, next)
	if err := projections.CatchUp(ctx, feed, next, store, c.Batch, bar); err != nil {
		return fmt.Errorf("rebuild %s: %w", next, err)
	}
	pos, _ := store.Position(ctx)
	fmt.Fprintf(stderr, "\n%s caught up at %d in %s\n", next, pos, time.Since(began).Round(time.Millisecond))
	if err := reg.Switch(ctx, name, live, next); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "readers switched to %s; dropping %s in %s\n", next, live, c.Grace)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(c.Grace):
	}
	if err := dropVersion(ctx, feed, st, name, live); err != nil {
		logger.Warn("drop old version", "version", live, "err", err)
	}
	fmt.Fprintf(stderr, "dropped %s\n", live)
	return nil
}

func dropVersion(ctx context.Context, feed *jetstream.Feed, st *stores.Stores, name, version string) error {
	if err := feed.DeleteConsumer(ctx, projections.Durable(version)); err != nil {
		return fmt.Errorf("delete consumer of %s: %w", version, err)
	}
	s, err := st.Open(ctx, name, version)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Drop(ctx)
}

// progressBar draws "[=====>    ]  52% 520000/1000000  48211 ev/s  ETA 9s".
func progressBar(w io.Writer, label string) projections.Progress {
	return func(pos, target uint64, rate float64) {
		frac := 1.0
		if target > 0 {
			frac = min(float64(pos)/float64(target), 1)
		}
		const width = 30
		done := int(frac * width)
		bar := strings.Repeat("=", done)
		if done < width {
			bar += ">" + strings.Repeat(" ", width-done-1)
		}
		eta := "-"
		if rate > 0 && target > pos {
			eta = (time.Duration(float64(target-pos)/rate) * time.Second).Round(time.Second).String()
		}
		fmt.Fprintf(w, "\r%s [%s] %3.0f%% %d/%d  %s ev/s  ETA %s   ", label, bar, frac*100, pos, target, strconv.FormatFloat(rate, 'f', 0, 64), eta)
	}
}
