// Command projector keeps jetchat's projections up to date from the event
// log, rebuilds them beside the live version, and reports their lag.
//
//	projector run               project the live version of every projection
//	projector rebuild history   build the next version from the first event, switch readers, drop the old
//	projector status            position and lag per projection
//
// Against the embedded default it finds the running chatd's nats-server
// through the data dir; in a cluster give --nats-url and --mongo-url.
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/history/stores"
	"github.com/nats-io/nats.go"
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

// known lists the projections this binary maintains.
var known = []string{"history"}

type config struct {
	NATSURL  string
	DataDir  string
	MongoURL string
	Batch    int
	Grace    time.Duration
	LogLevel string
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
	fs.StringVar(&c.NATSURL, "nats-url", env("NATS_URL", ""), "NATS URLs; empty: the embedded chatd running on --data-dir (NATS_URL)")
	fs.StringVar(&c.DataDir, "data-dir", env("CHAT_DATA_DIR", "./data"), "data dir of the embedded chatd: its NATS URL and token, and projections.db (CHAT_DATA_DIR)")
	fs.StringVar(&c.MongoURL, "mongo-url", env("MONGO_URL", ""), "MongoDB URL; empty: SQLite in the data dir (MONGO_URL)")
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
	st, err := stores.Open(c.MongoURL, filepath.Join(c.DataDir, "projections.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	feed := log.Feed(logger)
	open := func(v string) (projections.Store, error) { return st.Version(ctx, v) }

	switch cmd[0] {
	case "run":
		names := cmd[1:]
		if len(names) == 0 {
			names = known
		}
		for _, name := range names {
			if name != "history" {
				return fmt.Errorf("unknown projection %q (known: %s)", name, strings.Join(known, ", "))
			}
		}
		return projections.Follow(ctx, reg, feed, "history", open, c.Batch, logger)
	case "status":
		return status(ctx, stdout, reg, feed, st)
	case "rebuild":
		if len(cmd) != 2 || cmd[1] != "history" {
			return fmt.Errorf("usage: projector rebuild <projection> (known: %s)", strings.Join(known, ", "))
		}
		return rebuild(ctx, c, stderr, reg, feed, st, logger)
	}
	return fmt.Errorf("unknown command %q: run, rebuild or status", cmd[0])
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

func status(ctx context.Context, out io.Writer, reg projections.Registry, feed *jetstream.Feed, st *stores.Stores) error {
	last, err := feed.LastSeq(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%-12s %-14s %12s %12s %10s\n", "PROJECTION", "VERSION", "POSITION", "STREAM", "LAG")
	for _, name := range known {
		v, err := reg.Live(ctx, name, projections.FirstVersion(name))
		if err != nil {
			return err
		}
		s, err := st.Version(ctx, v)
		if err != nil {
			return err
		}
		pos, err := s.Position(ctx)
		_ = s.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%-12s %-14s %12d %12d %10d\n", name, v, pos, last, last-min(pos, last))
	}
	return nil
}

// rebuild builds the next version of history from the first event beside
// the live one, switches readers to it once it has caught up, and drops the
// old version after a grace period. Chat and reads go on throughout.
func rebuild(ctx context.Context, c config, stderr io.Writer, reg projections.Registry, feed *jetstream.Feed, st *stores.Stores, logger *slog.Logger) error {
	const name = "history"
	live, err := reg.Live(ctx, name, projections.FirstVersion(name))
	if err != nil {
		return err
	}
	next, err := projections.NextVersion(live)
	if err != nil {
		return err
	}
	// A version left by an interrupted rebuild starts over.
	if err := dropVersion(ctx, feed, st, next); err != nil {
		return err
	}
	store, err := st.Version(ctx, next)
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
	if err := dropVersion(ctx, feed, st, live); err != nil {
		logger.Warn("drop old version", "version", live, "err", err)
	}
	fmt.Fprintf(stderr, "dropped %s\n", live)
	return nil
}

func dropVersion(ctx context.Context, feed *jetstream.Feed, st *stores.Stores, version string) error {
	if err := feed.DeleteConsumer(ctx, projections.Durable(version)); err != nil {
		return fmt.Errorf("delete consumer of %s: %w", version, err)
	}
	s, err := st.Version(ctx, version)
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
