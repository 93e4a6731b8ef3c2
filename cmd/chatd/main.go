// Command chatd is one jetchat node. With no servers configured it runs
// everything in one process: an embedded nats-server with JetStream on the
// data dir, and dev login. With --nats-url it is one node of a cluster.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jetchat/jetchat/pkg/auth"
	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/pkg/node"
	"github.com/jetchat/jetchat/pkg/presence"
	"github.com/jetchat/jetchat/pkg/ratelimit"
	jetredis "github.com/jetchat/jetchat/pkg/redis"
	"github.com/jetchat/jetchat/pkg/web"
	"github.com/jetchat/jetchat/pkg/ws"
	"github.com/jetchat/jetchat/projections/recent"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, nil)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "chatd:", err)
		os.Exit(1)
	}
}

// config is every setting, from flags with environment fallbacks.
type config struct {
	Addr           string
	DataDir        string
	NATSURL        string
	MongoURL       string
	RedisURL       string
	RedisPrefix    string
	RecentSize     int
	PresenceExpiry time.Duration
	JWTSecret      string
	Dev            bool
	AllowedOrigins string
	NodeID         string
	Replicas       int
	DedupWindow    time.Duration
	SendRate       float64
	SendBurst      int
	MaxConnsUser   int
	MaxRoomsConn   int
	QueueSize      int
	Shutdown       time.Duration
	LogFormat      string
	LogLevel       string
	TailCheck      time.Duration
	ReplayWindow   int
	ReplayMemory   byteSize
	PprofAddr      string
	WriteDelay     time.Duration
	MaxWriteDelay  time.Duration
	AckDelay       time.Duration
	PingInterval   time.Duration
	Projector      bool
}

// byteSize is a flag of bytes: a count with an optional KiB, MiB or GiB
// suffix, or -1.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	switch {
	case err == nil && n == -1 && mult == 1:
		*b = -1
	case err != nil || n < 0 || n > (1<<63-1)/mult:
		return fmt.Errorf("%q is not a size: bytes, or a count of KiB, MiB or GiB (64MiB), or -1", s)
	default:
		*b = byteSize(n * mult)
	}
	return nil
}

func parse(args []string, getenv func(string) string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("chatd", flag.ContinueOnError)
	fs.SetOutput(out)
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
	envDur := func(name string, def time.Duration) time.Duration {
		if v, err := time.ParseDuration(getenv(name)); err == nil {
			return v
		}
		return def
	}
	envFloat := func(name string, def float64) float64 {
		if v, err := strconv.ParseFloat(getenv(name), 64); err == nil {
			return v
		}
		return def
	}
	fs.StringVar(&c.Addr, "addr", env("CHAT_ADDR", "127.0.0.1:8080"), "listen address (CHAT_ADDR)")
	fs.StringVar(&c.DataDir, "data-dir", env("CHAT_DATA_DIR", "./data"), "data directory for the embedded NATS store and secrets (CHAT_DATA_DIR)")
	fs.StringVar(&c.NATSURL, "nats-url", env("NATS_URL", ""), "NATS server URLs, comma-separated; empty starts an embedded nats-server (NATS_URL)")
	fs.StringVar(&c.MongoURL, "mongo-url", env("MONGO_URL", ""), "MongoDB URL for projections (MONGO_URL)")
	fs.StringVar(&c.RedisURL, "redis-url", env("REDIS_URL", ""), "Redis URL, or comma-separated addresses (Cluster, Sentinel), for presence, per-user rate limits and the recent cache; empty: in memory, this node only (REDIS_URL)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", env("CHAT_REDIS_PREFIX", "jetchat:"), "prefix of every Redis key (CHAT_REDIS_PREFIX)")
	fs.IntVar(&c.RecentSize, "recent-size", envInt("CHAT_RECENT_SIZE", recent.DefaultN), "events the recent projection keeps per room (CHAT_RECENT_SIZE)")
	fs.DurationVar(&c.PresenceExpiry, "presence-expiry", envDur("CHAT_PRESENCE_EXPIRY", 30*time.Second), "a crashed node's users leave presence within this (CHAT_PRESENCE_EXPIRY)")
	fs.StringVar(&c.JWTSecret, "jwt-secret", env("CHAT_JWT_SECRET", ""), "HS256 secret, at least 32 bytes; embedded default: generated once into the data dir (CHAT_JWT_SECRET)")
	devDefault := getenv("NATS_URL") == ""
	if v, err := strconv.ParseBool(getenv("CHAT_DEV")); err == nil {
		devDefault = v
	}
	fs.BoolVar(&c.Dev, "dev", devDefault, "dev mode: POST /api/v1/dev/login issues tokens for any name; default on only when embedded (CHAT_DEV)")
	fs.StringVar(&c.AllowedOrigins, "allowed-origins", env("CHAT_ALLOWED_ORIGINS", ""), "comma-separated host patterns allowed as browser Origin for /ws, e.g. 'chat.example.com,*.example.com'; the serving host is always allowed (CHAT_ALLOWED_ORIGINS)")
	fs.StringVar(&c.NodeID, "node-id", env("CHAT_NODE_ID", ""), "node name in welcome frames and metrics; default: host name and port (CHAT_NODE_ID)")
	fs.IntVar(&c.Replicas, "stream-replicas", envInt("CHAT_STREAM_REPLICAS", 1), "replicas of the CHAT stream: 1 embedded, 3 in a cluster (CHAT_STREAM_REPLICAS)")
	fs.DurationVar(&c.DedupWindow, "dedup-window", envDur("CHAT_DEDUP_WINDOW", 10*time.Minute), "JetStream dedup window for send ids (CHAT_DEDUP_WINDOW)")
	fs.Float64Var(&c.SendRate, "send-rate", envFloat("CHAT_SEND_RATE", 50), "frames per second per connection (token bucket) (CHAT_SEND_RATE)")
	fs.IntVar(&c.SendBurst, "send-burst", envInt("CHAT_SEND_BURST", 100), "token bucket burst (CHAT_SEND_BURST)")
	fs.IntVar(&c.MaxConnsUser, "max-conns-per-user", envInt("CHAT_MAX_CONNS_PER_USER", 32), "connections per user on one node (CHAT_MAX_CONNS_PER_USER)")
	fs.IntVar(&c.MaxRoomsConn, "max-rooms-per-conn", envInt("CHAT_MAX_ROOMS_PER_CONN", 100), "rooms joined per connection (CHAT_MAX_ROOMS_PER_CONN)")
	fs.IntVar(&c.QueueSize, "send-queue", envInt("CHAT_SEND_QUEUE", 1024), "frames queued per connection before it is closed as a slow reader (CHAT_SEND_QUEUE)")
	fs.DurationVar(&c.Shutdown, "shutdown-timeout", envDur("CHAT_SHUTDOWN_TIMEOUT", 10*time.Second), "graceful shutdown deadline (CHAT_SHUTDOWN_TIMEOUT)")
	fs.DurationVar(&c.WriteDelay, "write-delay", envDur("CHAT_WRITE_DELAY", ws.DefaultWriteDelay), "least time between two writes to one WebSocket: frames arriving meanwhile are sent together (CHAT_WRITE_DELAY)")
	fs.DurationVar(&c.MaxWriteDelay, "max-write-delay", envDur("CHAT_MAX_WRITE_DELAY", ws.DefaultMaxWriteDelay), "how far the write delay grows on a busy connection while writes carry several frames; 0 with --write-delay 0 writes every frame at once (CHAT_MAX_WRITE_DELAY)")
	fs.DurationVar(&c.AckDelay, "ack-delay", envDur("CHAT_ACK_DELAY", ws.DefaultAckDelay), "how long after a WebSocket's last write an ack may wait while more of its sends are in flight, so a fast sender's acks share writes; an ack with none after it goes out at once; 0: every ack at once (CHAT_ACK_DELAY)")
	fs.DurationVar(&c.PingInterval, "ping-interval", envDur("CHAT_PING_INTERVAL", 25*time.Second), "how often each WebSocket is pinged; one that has not answered by the next ping is closed with 4004 (CHAT_PING_INTERVAL)")
	fs.StringVar(&c.PprofAddr, "pprof-addr", env("CHAT_PPROF_ADDR", ""), "serve Go's /debug/pprof on this address (keep it on loopback), e.g. 127.0.0.1:6060; empty: off (CHAT_PPROF_ADDR)")
	fs.DurationVar(&c.TailCheck, "tail-check-interval", envDur("CHAT_TAIL_CHECK_INTERVAL", 2*time.Second), "how often rooms with clients are checked for a last event the live feed lost (CHAT_TAIL_CHECK_INTERVAL)")
	fs.IntVar(&c.ReplayWindow, "replay-window", envInt("CHAT_REPLAY_WINDOW", 128), "events per room kept in memory (at most 64 KiB) to replay resuming clients from without asking the log; -1: none (CHAT_REPLAY_WINDOW)")
	c.ReplayMemory = 128 << 20
	if v := getenv("CHAT_REPLAY_MEMORY"); v != "" {
		if err := c.ReplayMemory.Set(v); err != nil {
			return c, fmt.Errorf("CHAT_REPLAY_MEMORY: %w", err)
		}
	}
	fs.Var(&c.ReplayMemory, "replay-memory", "bytes (or KiB, MiB, GiB) of frames all rooms together keep for --replay-window: past it each room keeps an equal share; -1: no cap (CHAT_REPLAY_MEMORY)")
	fs.BoolVar(&c.Projector, "projector", getenv("NATS_URL") == "", "run the projector in this process (default on when embedded; a cluster runs cmd/projector) (CHAT_PROJECTOR)")
	fs.StringVar(&c.LogFormat, "log-format", env("CHAT_LOG_FORMAT", ""), "text or json; default text in dev mode, json otherwise (CHAT_LOG_FORMAT)")
	fs.StringVar(&c.LogLevel, "log-level", env("CHAT_LOG_LEVEL", "info"), "debug, info, warn or error (CHAT_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	devSet, projSet := getenv("CHAT_DEV") != "", false
	if v, err := strconv.ParseBool(getenv("CHAT_PROJECTOR")); err == nil {
		c.Projector, projSet = v, true
	}
	fs.Visit(func(f *flag.Flag) {
		devSet = devSet || f.Name == "dev"
		projSet = projSet || f.Name == "projector"
	})
	if !devSet {
		c.Dev = c.NATSURL == "" // dev login only in the embedded default
	}
	if !projSet {
		c.Projector = c.NATSURL == ""
	}
	return c, nil
}

func newLogger(c config, out io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	format := c.LogFormat
	if format == "" {
		format = "json"
		if c.Dev {
			format = "text"
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// run starts a node and serves until ctx ends. If ready is not nil, it
// receives the listening address once the node serves.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, ready chan<- string) error {
	c, err := parse(args, getenv, stdout)
	if err != nil {
		return err
	}
	logger := newLogger(c, stdout)
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	// The event log: an embedded nats-server unless a URL is given.
	var nc *nats.Conn
	var onReconnect func()
	natsOpts := []nats.Option{
		nats.Name("chatd"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) {
			logger.Info("nats reconnected")
			if onReconnect != nil {
				onReconnect()
			}
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { logger.Warn("nats disconnected", "err", err) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			logger.Warn("nats async error", "err", err)
			if errors.Is(err, nats.ErrSlowConsumer) && onReconnect != nil {
				go onReconnect()
			}
		}),
	}
	if c.NATSURL == "" {
		// The embedded server also listens on loopback, with a token kept in
		// the data dir, so that `projector --data-dir` can reach it.
		token, err := secretFile(filepath.Join(c.DataDir, "nats-token"), logger)
		if err != nil {
			return err
		}
		srv, err := jetstream.RunServer(jetstream.ServerOptions{StoreDir: filepath.Join(c.DataDir, "nats"), Name: "chatd-embedded", Port: -1, Token: string(token)})
		if err != nil {
			return err
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		urlFile := filepath.Join(c.DataDir, EmbeddedURLFile)
		if err := os.WriteFile(urlFile, []byte(srv.ClientURL()+"\n"), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", urlFile, err)
		}
		defer os.Remove(urlFile)
		logger.Info("embedded nats-server started", "store", filepath.Join(c.DataDir, "nats"), "url", srv.ClientURL())
		natsOpts = append(natsOpts, nats.InProcessServer(srv), nats.Token(string(token)))
		nc, err = nats.Connect("", natsOpts...)
		if err != nil {
			return fmt.Errorf("connect embedded nats: %w", err)
		}
	} else {
		nc, err = nats.Connect(c.NATSURL, append(natsOpts, nats.RetryOnFailedConnect(true))...)
		if err != nil {
			return fmt.Errorf("connect nats %s: %w", c.NATSURL, err)
		}
	}
	defer nc.Close()

	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	log, err := jetstream.Open(openCtx, nc, jetstream.Config{Replicas: c.Replicas, Duplicates: c.DedupWindow})
	cancel()
	if err != nil {
		return err
	}

	// Presence, per-user rate limits and the recent cache: Redis, shared
	// by the cluster's nodes, or memory in this process.
	var rdb redis.UniversalClient
	var pres node.Presence = presence.NewMemory(c.PresenceExpiry, nil)
	var limiter node.Limiter = ratelimit.NewMemory(nil)
	if c.RedisURL != "" {
		if rdb, err = jetredis.Open(c.RedisURL); err != nil {
			return err
		}
		defer rdb.Close()
		pres = jetredis.NewPresence(rdb, c.RedisPrefix, c.PresenceExpiry)
		limiter = jetredis.NewLimiter(rdb, c.RedisPrefix)
	}

	views, stopProjections, err := startProjections(ctx, c, log, rdb, logger)
	if err != nil {
		return fmt.Errorf("projections: %w", err)
	}
	defer stopProjections()
	var recentView node.Recent
	if views.recent != nil {
		recentView = recentEvents(views.recent)
	}

	secret, err := jwtSecret(c, logger)
	if err != nil {
		return err
	}
	tokens, err := auth.New(secret, "jetchat")
	if err != nil {
		return err
	}
	if c.Dev {
		logger.Warn("DEV MODE: POST /api/v1/dev/login issues a token for any name; never expose this node publicly")
	}

	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	nodeID := c.NodeID
	if nodeID == "" {
		host, _ := os.Hostname()
		nodeID = host + ":" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	}
	n := node.New(node.Config{
		ID: nodeID, MaxRoomsPerConn: c.MaxRoomsConn, MaxConnsPerUser: c.MaxConnsUser,
		SendRate: c.SendRate, SendBurst: c.SendBurst, TailCheckInterval: c.TailCheck,
		ReplayWindow: c.ReplayWindow, ReplayMemory: int64(c.ReplayMemory),
		History: views, RoomList: views, Reads: views, Recent: recentView,
		Presence: pres, PresenceExpiry: c.PresenceExpiry, Limiter: limiter,
	}, log, log, logger)
	onReconnect = n.CheckRooms

	srv := ws.New(ws.Config{
		Dev:            c.Dev,
		AllowedOrigins: splitList(c.AllowedOrigins),
		QueueSize:      c.QueueSize,
		WriteDelay:     c.WriteDelay,
		MaxWriteDelay:  c.MaxWriteDelay,
		AckDelay:       c.AckDelay,
		PingInterval:   c.PingInterval,
		Collectors:     views.collectors(),
		Static:         web.Handler(),
		Ready: func(context.Context) error {
			if !nc.IsConnected() {
				return errors.New("nats not connected")
			}
			return nil
		},
	}, n, tokens, logger)
	defer srv.Close() // also when Serve fails; after the sessions close otherwise
	if c.PprofAddr != "" {
		stop, err := servePprof(c.PprofAddr, logger)
		if err != nil {
			return err
		}
		defer stop()
	}
	httpSrv := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	logger.Info("chatd serving", "addr", "http://"+ln.Addr().String(), "node", nodeID, "embedded", c.NATSURL == "", "dev", c.Dev)
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
	// Shut down in order: stop accepting, tell clients to go elsewhere,
	// then let the deferred closes drain NATS and stop the embedded server.
	logger.Info("shutting down", "timeout", c.Shutdown)
	sctx, scancel := context.WithTimeout(context.Background(), c.Shutdown)
	defer scancel()
	done := make(chan struct{})
	go func() {
		_ = httpSrv.Shutdown(sctx) // hijacked WebSockets are not waited for here
		n.Shutdown(chat.CloseShutdown, "node shutting down: reconnect elsewhere")
		_ = nc.Drain()
		close(done)
	}()
	select {
	case <-done:
	case <-sctx.Done():
		logger.Warn("shutdown deadline passed")
	}
	return nil
}

// EmbeddedURLFile, in the data dir, holds the embedded nats-server's URL
// while chatd runs; its token is in nats-token beside it.
const EmbeddedURLFile = "nats.url"

// jwtSecret returns the configured secret or, in the embedded default, one
// generated once and kept in the data dir so tokens survive restarts.
func jwtSecret(c config, logger *slog.Logger) ([]byte, error) {
	if c.JWTSecret != "" {
		return []byte(c.JWTSecret), nil
	}
	if c.NATSURL != "" {
		return nil, errors.New("--jwt-secret (CHAT_JWT_SECRET) is required when joining a cluster: every node must share it")
	}
	return secretFile(filepath.Join(c.DataDir, "jwt-secret"), logger)
}

// secretFile returns the secret kept at path, generating it on first use.
func secretFile(path string, logger *slog.Logger) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) >= auth.MinSecretBytes {
		return b, nil
	}
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	b = []byte(fmt.Sprintf("%x", b))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("write secret: %w", err)
	}
	logger.Info("generated a secret", "path", path)
	return b, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
