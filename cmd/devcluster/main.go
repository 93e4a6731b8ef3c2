// Command devcluster runs jetchat's cluster topology (docker-compose.yaml)
// on this machine without Docker: three nats-server processes in a
// JetStream cluster, redis-server, FerretDB standing in for MongoDB, four
// chatd nodes in dev mode, the projector and nginx in front, all on
// loopback.
//
//	go run ./cmd/devcluster              start, print the URL, run until Ctrl-C
//	go run ./cmd/devcluster down         stop the one running on this state dir
//
// It is a developer tool: it links FerretDB, a test double, and is never
// shipped (docker/Dockerfile builds only chatd, projector and chatbench).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jetchat/jetchat/pkg/localcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "devcluster:", err)
		os.Exit(1)
	}
}

const pidFile = "devcluster.pid"

type config struct {
	Dir   string
	Port  int
	Nodes int
	Auto  bool // the port was not chosen: 8080 if free, else any
}

func parse(args []string, getenv func(string) string, out io.Writer) (config, []string, error) {
	var c config
	fs := flag.NewFlagSet("devcluster", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: devcluster [flags] [up | down]")
		fs.PrintDefaults()
	}
	dir := getenv("JETCHAT_DEVCLUSTER_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "jetchat-devcluster")
	}
	port := 8080
	if v, err := strconv.Atoi(getenv("JETCHAT_PORT")); err == nil {
		port = v
	}
	fs.StringVar(&c.Dir, "dir", dir, "state dir: pid file, and the cluster's data and logs (wiped on each start) (JETCHAT_DEVCLUSTER_DIR)")
	fs.IntVar(&c.Port, "port", port, "nginx port, the cluster's URL; default 8080, or a free port if 8080 is taken (JETCHAT_PORT)")
	fs.IntVar(&c.Nodes, "nodes", 4, "chatd nodes")
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	c.Auto = getenv("JETCHAT_PORT") == ""
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "port" {
			c.Auto = false
		}
	})
	return c, fs.Args(), nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c, cmd, err := parse(args, getenv, stdout)
	if err != nil {
		return err
	}
	switch {
	case len(cmd) == 0 || cmd[0] == "up":
		return up(ctx, c, stdout)
	case cmd[0] == "down":
		return down(c, stdout)
	}
	return fmt.Errorf("unknown command %q: up or down", strings.Join(cmd, " "))
}

func up(ctx context.Context, c config, stdout io.Writer) error {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	if pid, ok := running(c.Dir); ok {
		return fmt.Errorf("a devcluster is already running on %s (pid %d): stop it with `devcluster down` (task cluster:down)", c.Dir, pid)
	}
	if c.Auto && !free(c.Port) {
		fmt.Fprintf(stdout, "port %d is taken: using a free one (set --port to choose)\n", c.Port)
		c.Port = 0
	}
	pidPath := filepath.Join(c.Dir, pidFile)
	if err := os.WriteFile(pidPath, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(pidPath)
	clusterDir := filepath.Join(c.Dir, "cluster")
	if err := os.RemoveAll(clusterDir); err != nil {
		return err
	}

	logger := slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
	start := time.Now()
	cl, err := localcluster.Start(ctx, localcluster.Options{
		Dir: clusterDir, Port: c.Port, Nodes: c.Nodes, Dev: true, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer cl.Stop()

	fmt.Fprintf(stdout, "\njetchat local cluster up in %v\n\n", time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "  URL        %s   (web client, REST, /ws; dev login: POST /api/v1/dev/login)\n\n", cl.URL())
	for _, p := range cl.Parts() {
		fmt.Fprintf(stdout, "  %-10s %-60s log %s\n", p.Name, p.Addr, p.Log)
	}
	fmt.Fprintf(stdout, "\n  JWT secret %s\n  state dir  %s\n\nCtrl-C (or `task cluster:down`) stops everything.\n", cl.Secret(), c.Dir)

	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping the cluster...")
	stopped := time.Now()
	cl.Stop()
	if crashes := cl.Crashes(); len(crashes) > 0 {
		fmt.Fprintf(stdout, "processes that exited on their own while it ran:\n  %s\n", strings.Join(crashes, "\n  "))
	}
	fmt.Fprintf(stdout, "stopped in %v\n", time.Since(stopped).Round(time.Millisecond))
	return nil
}

// down signals the devcluster running on the state dir and waits for it to
// stop.
func down(c config, stdout io.Writer) error {
	pid, ok := running(c.Dir)
	if !ok {
		fmt.Fprintf(stdout, "no devcluster is running on %s\n", c.Dir)
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal pid %d: %w", pid, err)
	}
	fmt.Fprintf(stdout, "stopping devcluster (pid %d)...\n", pid)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			fmt.Fprintln(stdout, "stopped")
			return nil
		}
	}
	return fmt.Errorf("pid %d still running after 60s", pid)
}

// running returns the pid in the state dir's pid file if that process lives.
func running(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0, false
	}
	return pid, true
}

func free(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
