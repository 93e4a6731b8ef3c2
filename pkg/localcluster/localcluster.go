// Package localcluster runs jetchat's cluster topology (docker-compose.yaml)
// as processes on loopback: three nats-server processes in a JetStream
// cluster, redis-server, FerretDB in-process standing in for MongoDB, N chatd
// nodes, the projector and nginx with the repository's own nginx.conf in
// front. Every part can be killed and started again on the same port, so
// tests can inject faults and cmd/devcluster can give a developer the
// cluster without Docker.
//
// It links FerretDB, a test double: no shipped binary may import it. It
// must never leave a process behind: every child runs in its own process
// group, dies with its parent, and Stop kills what it started.
package localcluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configure a cluster. The zero value is a test cluster of 4 nodes
// in a new temp dir.
type Options struct {
	Dir    string // cluster dir: configs, data and logs; default a new temp dir, removed by Stop
	BinDir string // where chatd, projector and nats-server are built; default DefaultBinDir
	Root   string // the jetchat checkout; default the module of the working directory
	// NGINXConf is the nginx.conf to render; default Root/nginx.conf.
	NGINXConf string

	Nodes int    // chatd nodes; default 4
	Port  int    // nginx port; 0: a free one
	Dev   bool   // chatd --dev (dev login)
	DB    string // MongoDB database name; default "jetchat"

	Secret string // JWT secret shared by the nodes; default random

	// ChatdArgs are extra flags for every chatd.
	ChatdArgs []string
	// OptionalChatdArgs are flags (name without dashes -> value) passed to
	// chatd only if its --help lists them: settings of features that may
	// not have landed yet.
	OptionalChatdArgs map[string]string

	// Logger reports progress (which part started, where its log is);
	// default: discard.
	Logger *slog.Logger
}

// Cluster is a running local cluster. Its methods are safe for concurrent
// use, but each part should be driven by one goroutine at a time.
type Cluster struct {
	opts    Options
	dir     string
	ownDir  bool
	bin     string
	secret  string
	log     *slog.Logger
	chatdFl map[string]bool
	projFl  map[string]bool

	natsPorts, natsMon, natsRoutes []int
	nats                           []*proc
	redisPort                      int
	redis                          *proc
	mongo                          *ferret
	mongoLog                       *os.File
	nodePorts                      []int
	nodes                          []*proc
	projector                      *proc
	nginxPort                      int
	nginx                          *proc

	mu       sync.Mutex
	crashes  []string // unexpected exits
	retries  []string // nodes started again after exiting while starting
	stopped  bool
	stopOnce sync.Once
}

// Start builds the binaries and starts every part, waiting until each is
// ready. On error everything started so far is stopped.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 4
	}
	if opts.DB == "" {
		opts.DB = "jetchat"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Secret == "" {
		opts.Secret = rand.Text() + rand.Text() // 52 base32 characters
	}
	if opts.Root == "" {
		if opts.Root, err = RepoRoot(); err != nil {
			return nil, err
		}
	}
	if opts.BinDir == "" {
		opts.BinDir = DefaultBinDir(opts.Root)
	}
	c := &Cluster{opts: opts, dir: opts.Dir, bin: opts.BinDir, secret: opts.Secret, log: opts.Logger}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "jetchat-localcluster-"); err != nil {
			return nil, err
		}
		c.ownDir = true
	} else if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for _, prog := range []string{"redis-server", "nginx"} {
		if _, err := lookPath(prog); err != nil {
			return nil, err
		}
	}

	c.log.Info("building chatd, projector and nats-server", "bin", c.bin)
	if err := Build(ctx, opts.Root, c.bin); err != nil {
		return nil, err
	}
	c.chatdFl, c.projFl = flags(c.binPath("chatd")), flags(c.binPath("projector"))

	n := opts.Nodes
	ports, err := freePorts(3*3 + 2 + n + 1)
	if err != nil {
		return nil, err
	}
	c.natsPorts, c.natsMon, c.natsRoutes = ports[0:3], ports[3:6], ports[6:9]
	c.redisPort = ports[9]
	mongoPort := ports[10]
	c.nodePorts = ports[11 : 11+n]
	c.nginxPort = ports[11+n]
	if opts.Port != 0 {
		c.nginxPort = opts.Port
	}

	// MongoDB (FerretDB in-process) and Redis: projections and presence.
	if err := os.MkdirAll(filepath.Join(c.dir, "ferretdb"), 0o755); err != nil {
		return nil, err
	}
	c.mongoLog, err = os.OpenFile(c.logPath("ferretdb"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	c.mongo = &ferret{
		addr: fmt.Sprintf("127.0.0.1:%d", mongoPort), dir: filepath.Join(c.dir, "ferretdb"),
		// Errors only: it warns once for every command it lacks, such as
		// endSessions, which every client disconnect sends.
		logger: slog.New(slog.NewTextHandler(c.mongoLog, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	if err := c.mongo.start(); err != nil {
		return nil, err
	}
	c.log.Info("ferretdb (mongodb) ready", "url", c.MongoURL())

	if err := c.setupRedis(); err != nil {
		return nil, err
	}
	if err := c.StartRedis(); err != nil {
		return nil, err
	}
	c.log.Info("redis ready", "addr", c.RedisAddr())

	// NATS: the event log. All three must be up for the cluster to elect a
	// meta leader; /healthz answers 200 only then.
	if err := c.setupNATS(); err != nil {
		return nil, err
	}
	for _, p := range c.nats {
		if err := p.start(); err != nil {
			return nil, err
		}
	}
	if err := parallel(3, func(i int) error { return c.waitNATS(ctx, i) }); err != nil {
		return nil, err
	}
	c.log.Info("nats cluster ready", "urls", c.NATSURLs())

	// chatd: the first creates the stream and buckets, the rest follow.
	c.setupNodes()
	if err := c.StartNode(0); err != nil {
		return nil, err
	}
	if err := parallel(n-1, func(i int) error { return c.StartNode(i + 1) }); err != nil {
		return nil, err
	}
	c.log.Info("chatd nodes ready", "n", n)

	c.setupProjector()
	if err := c.StartProjector(); err != nil {
		return nil, err
	}

	if err := c.setupNGINX(); err != nil {
		return nil, err
	}
	if err := c.nginx.start(); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, c.URL()+"/healthz", c.nginx, 20*time.Second); err != nil {
		return nil, err
	}
	c.log.Info("nginx ready", "url", c.URL())
	return c, nil
}

func lookPath(prog string) (string, error) {
	for _, dir := range append(filepath.SplitList(os.Getenv("PATH")), "/usr/sbin", "/sbin") {
		p := filepath.Join(dir, prog)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed: apt-get install -y %s", prog, map[string]string{"redis-server": "redis-server", "nginx": "nginx"}[prog])
}

// parallel runs f(0..n-1) concurrently and returns the first error.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f(i) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) binPath(name string) string { return filepath.Join(c.bin, name) }
func (c *Cluster) logPath(name string) string { return filepath.Join(c.dir, name+".log") }

// crashed records a process that exited without being asked to.
func (c *Cluster) crashed(p *proc, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	msg := fmt.Sprintf("%s exited unexpectedly at %s: %s (log %s)", p.name, time.Now().Format("15:04:05.000"), exitText(err), p.log)
	c.crashes = append(c.crashes, msg)
	c.log.Error(msg)
}

// Crashes lists the processes that exited without being stopped or killed
// through the cluster (a crash, or a refusal to start), in order.
func (c *Cluster) Crashes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.crashes...)
}

// Dir is the cluster dir: configs, data and every log.
func (c *Cluster) Dir() string { return c.dir }

// URL is nginx's address, the cluster's only entry point in compose.
func (c *Cluster) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", c.nginxPort) }

// NodeAddr is chatd node i's own address (host:port), bypassing nginx.
func (c *Cluster) NodeAddr(i int) string { return fmt.Sprintf("127.0.0.1:%d", c.nodePorts[i]) }

// Nodes is the number of chatd nodes.
func (c *Cluster) Nodes() int { return len(c.nodePorts) }

// NATSURLs are the three servers' client URLs.
func (c *Cluster) NATSURLs() []string {
	out := make([]string, len(c.natsPorts))
	for i, p := range c.natsPorts {
		out[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	return out
}

// NATSName is the server name of NATS server i ("nats-1" for 0), as
// JetStream reports stream leaders.
func (c *Cluster) NATSName(i int) string { return "nats-" + strconv.Itoa(i+1) }

// NATSMonitor is NATS server i's monitoring address (http://host:port).
func (c *Cluster) NATSMonitor(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.natsMon[i])
}

// MongoURL is the MongoDB URL of the projections, database included.
func (c *Cluster) MongoURL() string { return "mongodb://" + c.mongo.addr + "/" + c.opts.DB }

// RedisAddr is redis-server's host:port.
func (c *Cluster) RedisAddr() string { return fmt.Sprintf("127.0.0.1:%d", c.redisPort) }

// Secret is the JWT secret every node verifies tokens with.
func (c *Cluster) Secret() string { return c.secret }

// ChatdHasFlag reports whether the built chatd has the flag (name without
// dashes), so a test can check a feature only once it has landed.
func (c *Cluster) ChatdHasFlag(name string) bool { return c.chatdFl[name] }

// Part is one process (or in-process server) of the cluster.
type Part struct {
	Name string // nats-1, redis, ferretdb, chatd-1, projector, nginx
	Addr string // what clients connect to
	Log  string // log file
	PID  int    // 0 when not running or in-process
}

// Parts lists every part in start order.
func (c *Cluster) Parts() []Part {
	var out []Part
	add := func(p *proc, addr string) {
		if p != nil {
			out = append(out, Part{Name: p.name, Addr: addr, Log: p.log, PID: p.pid()})
		}
	}
	out = append(out, Part{Name: "ferretdb", Addr: c.MongoURL(), Log: c.logPath("ferretdb")})
	add(c.redis, "redis://"+c.RedisAddr())
	for i, p := range c.nats {
		add(p, c.NATSURLs()[i]+" (monitor "+c.NATSMonitor(i)+")")
	}
	for i, p := range c.nodes {
		add(p, "http://"+c.NodeAddr(i))
	}
	add(c.projector, "")
	add(c.nginx, c.URL())
	return out
}

// Logs maps every part to its log file.
func (c *Cluster) Logs() map[string]string {
	m := map[string]string{}
	for _, p := range c.Parts() {
		m[p.Name] = p.Log
	}
	return m
}

// LogList is the parts' log files, one "name: path" a line, for a failure
// report.
func (c *Cluster) LogList() string {
	var lines []string
	for _, p := range c.Parts() {
		lines = append(lines, fmt.Sprintf("  %-10s %s", p.Name, p.Log))
	}
	return strings.Join(lines, "\n")
}

// --- NATS ---

func (c *Cluster) setupNATS() error {
	var routes []string
	for _, p := range c.natsRoutes {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	for i := range 3 {
		name := c.NATSName(i)
		store := filepath.Join(c.dir, name)
		conf := fmt.Sprintf(`# %s of the local cluster (written by localcluster; see docker/nats.conf)
server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
max_payload: 1MB
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 8GB
}
cluster {
  name: jetchat
  listen: 127.0.0.1:%d
  routes: [
    %s
  ]
}
`, name, name, c.natsPorts[i], c.natsMon[i], store, c.natsRoutes[i], strings.Join(routes, "\n    "))
		path := filepath.Join(c.dir, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return err
		}
		p := &proc{name: name, path: c.binPath("nats-server"), args: []string{"--config", path}, log: c.logPath(name), dir: c.dir}
		p.onExit = func(err error) { c.crashed(p, err) }
		c.nats = append(c.nats, p)
	}
	return nil
}

// waitNATS waits until server i's JetStream is healthy: it has a meta
// leader and its streams are current.
func (c *Cluster) waitNATS(ctx context.Context, i int) error {
	return waitHTTP(ctx, c.NATSMonitor(i)+"/healthz", c.nats[i], 60*time.Second)
}

// KillNATS SIGKILLs NATS server i.
func (c *Cluster) KillNATS(i int) error {
	c.nats[i].stop(syscall.SIGKILL, 0)
	return nil
}

// StopNATS stops NATS server i gracefully (SIGTERM).
func (c *Cluster) StopNATS(i int) error {
	c.nats[i].stop(syscall.SIGTERM, 15*time.Second)
	return nil
}

// StartNATS starts NATS server i again on its ports and store, and waits
// until it is healthy (caught up with the cluster).
func (c *Cluster) StartNATS(i int) error {
	if err := c.nats[i].start(); err != nil {
		return err
	}
	return c.waitNATS(context.Background(), i)
}

// --- Redis ---

func (c *Cluster) setupRedis() error {
	bin, err := lookPath("redis-server")
	if err != nil {
		return err
	}
	dir := filepath.Join(c.dir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p := &proc{name: "redis", path: bin, log: c.logPath("redis"), dir: dir, args: []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(c.redisPort), "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
	}}
	p.onExit = func(err error) { c.crashed(p, err) }
	c.redis = p
	return nil
}

// StopRedis stops redis-server (SIGTERM; no persistence, so it comes back
// empty).
func (c *Cluster) StopRedis() error {
	c.redis.stop(syscall.SIGTERM, 10*time.Second)
	return nil
}

// StartRedis starts redis-server on its port and waits until it answers PING.
func (c *Cluster) StartRedis() error {
	if err := c.redis.start(); err != nil {
		return err
	}
	return waitRedis(context.Background(), c.RedisAddr(), c.redis, 10*time.Second)
}

// --- MongoDB (FerretDB) ---

// StopMongo stops FerretDB: MongoDB is down until StartMongo.
func (c *Cluster) StopMongo() error {
	c.mongo.stop()
	return nil
}

// StartMongo starts FerretDB again on the same port and data.
func (c *Cluster) StartMongo() error { return c.mongo.start() }

// --- chatd ---

func (c *Cluster) setupNodes() {
	for i, port := range c.nodePorts {
		name := fmt.Sprintf("chatd-%d", i+1)
		data := filepath.Join(c.dir, name)
		args := []string{
			"--addr", fmt.Sprintf("127.0.0.1:%d", port),
			"--nats-url", strings.Join(c.NATSURLs(), ","),
			"--mongo-url", c.MongoURL(),
			"--redis-url", "redis://" + c.RedisAddr(),
			"--stream-replicas", "3",
			"--node-id", name,
			"--jwt-secret", c.secret,
			"--data-dir", data,
			"--projector=false",
		}
		if c.opts.Dev {
			args = append(args, "--dev")
		}
		args = append(args, c.optional(c.chatdFl, c.opts.OptionalChatdArgs)...)
		args = append(args, c.opts.ChatdArgs...)
		p := &proc{name: name, path: c.binPath("chatd"), args: args, log: c.logPath(name), dir: c.dir}
		p.onExit = func(err error) { c.crashed(p, err) }
		c.nodes = append(c.nodes, p)
	}
}

// optional returns the flags of opt that the binary lists, sorted.
func (c *Cluster) optional(has map[string]bool, opt map[string]string) []string {
	var names []string
	for name := range opt {
		if has[name] {
			names = append(names, name)
		} else {
			c.log.Info("flag not passed: the binary does not have it yet", "flag", name)
		}
	}
	sort.Strings(names)
	var args []string
	for _, name := range names {
		args = append(args, "--"+name+"="+opt[name])
	}
	return args
}

// KillNode SIGKILLs chatd node i: its clients lose their connections.
func (c *Cluster) KillNode(i int) error {
	c.nodes[i].stop(syscall.SIGKILL, 0)
	return nil
}

// StopNode stops chatd node i gracefully (SIGTERM: clients are told to
// reconnect elsewhere) and waits for it to exit.
func (c *Cluster) StopNode(i int) error {
	c.nodes[i].stop(syscall.SIGTERM, 20*time.Second)
	return nil
}

// StartNode starts chatd node i on its port and waits for GET /readyz. A
// node that exits before it is ready is started again, twice at most, as
// compose's restart policy would; those exits are listed by StartRetries.
func (c *Cluster) StartNode(i int) error {
	p := c.nodes[i]
	p.setStarting(true)
	defer p.setStarting(false)
	for attempt := 1; ; attempt++ {
		if err := p.start(); err != nil {
			return err
		}
		err := waitHTTP(context.Background(), "http://"+c.NodeAddr(i)+"/readyz", p, 60*time.Second)
		if err == nil || p.exited() == nil || attempt == 3 {
			return err
		}
		c.mu.Lock()
		c.retries = append(c.retries, fmt.Sprintf("%s exited while starting (attempt %d): %s", p.name, attempt, lastLine(p.log)))
		c.mu.Unlock()
		c.log.Warn("chatd exited while starting: starting it again", "node", p.name, "log", p.log)
		time.Sleep(time.Second)
	}
}

// StartRetries lists the nodes that exited while starting and were started
// again, with the last line of their log.
func (c *Cluster) StartRetries() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.retries...)
}

// lastLine returns the last line of a log that is not one of proc's markers.
func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.HasPrefix(lines[i], "=== ") {
			return lines[i]
		}
	}
	return ""
}

// RestartNode stops chatd node i gracefully and starts it again.
func (c *Cluster) RestartNode(i int) error {
	if err := c.StopNode(i); err != nil {
		return err
	}
	return c.StartNode(i)
}

// --- projector ---

func (c *Cluster) setupProjector() {
	args := []string{"--nats-url", strings.Join(c.NATSURLs(), ","), "--mongo-url", c.MongoURL(), "--data-dir", filepath.Join(c.dir, "projector")}
	if c.projFl["redis-url"] {
		args = append(args, "--redis-url", "redis://"+c.RedisAddr())
	}
	args = append(args, "run")
	p := &proc{name: "projector", path: c.binPath("projector"), args: args, log: c.logPath("projector"), dir: c.dir}
	// Like compose's restart policy: a projector that exits on its own is
	// started again (after it is recorded as a crash).
	p.onExit = func(err error) {
		c.crashed(p, err)
		time.Sleep(time.Second)
		c.mu.Lock()
		stopped := c.stopped
		c.mu.Unlock()
		if !stopped {
			_ = p.start()
		}
	}
	c.projector = p
}

// KillProjector SIGKILLs the projector; history stops advancing.
func (c *Cluster) KillProjector() error {
	c.projector.stop(syscall.SIGKILL, 0)
	return nil
}

// StartProjector starts the projector. It has no readiness endpoint: this
// returns once it has run for a moment without exiting.
func (c *Cluster) StartProjector() error {
	if err := c.projector.start(); err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond)
	return c.projector.exited()
}

// --- nginx ---

func (c *Cluster) setupNGINX() error {
	bin, err := lookPath("nginx")
	if err != nil {
		return err
	}
	path := c.opts.NGINXConf
	if path == "" {
		path = filepath.Join(c.opts.Root, "nginx.conf")
	}
	conf, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var ups []string
	for i := range c.nodePorts {
		ups = append(ups, c.NodeAddr(i))
	}
	out, err := RenderNGINX(string(conf), ups, fmt.Sprintf("127.0.0.1:%d", c.nginxPort))
	if err != nil {
		return err
	}
	prefix := filepath.Join(c.dir, "nginx")
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return err
	}
	path = filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		return err
	}
	global := "daemon off;"
	if os.Geteuid() == 0 {
		// As root nginx's workers would run as nobody, who cannot enter the
		// (private) cluster dir for the temp files of large responses.
		global += " user root;"
	}
	p := &proc{name: "nginx", path: bin, log: c.logPath("nginx"), dir: prefix,
		args: []string{"-p", prefix + "/", "-c", path, "-e", "stderr", "-g", global}}
	p.onExit = func(err error) { c.crashed(p, err) }
	c.nginx = p
	return nil
}

// Stop stops every part (nginx, projector, nodes, NATS, Redis, FerretDB),
// gracefully within deadlines, then by SIGKILL, and removes the cluster dir
// if Start created it. It is idempotent.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.stopped = true
		c.mu.Unlock()
		if c.nginx != nil {
			c.nginx.stop(syscall.SIGTERM, 5*time.Second)
		}
		if c.projector != nil {
			c.projector.stop(syscall.SIGTERM, 10*time.Second)
		}
		_ = parallel(len(c.nodes), func(i int) error { c.nodes[i].stop(syscall.SIGTERM, 15*time.Second); return nil })
		_ = parallel(len(c.nats), func(i int) error { c.nats[i].stop(syscall.SIGTERM, 10*time.Second); return nil })
		if c.redis != nil {
			c.redis.stop(syscall.SIGTERM, 5*time.Second)
		}
		if c.mongo != nil {
			c.mongo.stop()
		}
		if c.mongoLog != nil {
			_ = c.mongoLog.Close()
		}
		if c.ownDir {
			_ = os.RemoveAll(c.dir)
		}
	})
}
