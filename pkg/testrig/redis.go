package testrig

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Redis is a redis-server child process on a loopback port. Stop and Start
// restart it on the same port and directory, as an operator restarting Redis
// would: with no persistence configured, it comes back empty.
type Redis struct {
	Addr    string // host:port
	Cluster bool   // started with cluster-enabled and every slot assigned to itself

	tb   testing.TB
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

// RunRedis starts Debian's redis-server on a free loopback port with a temp
// dir and no persistence (--save "" --appendonly no), waits until it answers
// PING, and kills it when the test ends. Give each test its own key prefix.
func RunRedis(tb testing.TB) (addr string) {
	tb.Helper()
	return StartRedis(tb).Addr
}

// StartRedis is RunRedis returning the server, for tests that stop and start
// it (a Redis restart).
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	return startRedis(tb, false)
}

// StartRedisCluster starts a one-node Redis Cluster (cluster-enabled, all
// 16384 slots on this node). A cluster client works against it, and the
// server refuses any command or script whose keys span slots (CROSSSLOT), so
// it proves that keys meant to be used together share a hash tag.
func StartRedisCluster(tb testing.TB) *Redis {
	tb.Helper()
	return startRedis(tb, true)
}

func startRedis(tb testing.TB, cluster bool) *Redis {
	tb.Helper()
	bin := Need(tb, "redis-server", "redis-server")
	r := &Redis{tb: tb, bin: bin, dir: tb.TempDir(), Cluster: cluster}
	tb.Cleanup(r.Stop)
	var err error
	for range 5 { // the free port may be taken before redis-server binds it
		if r.port, err = freePort(); err != nil {
			tb.Fatalf("redis-server: free port: %v", err)
		}
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
		if err = r.start(); err == nil {
			return r
		}
	}
	tb.Fatalf("redis-server: %v", err)
	return nil
}

// Start starts the server again on the same port and dir after Stop; it
// fails the test if it does not answer PING within 10 s.
func (r *Redis) Start() {
	r.tb.Helper()
	if err := r.start(); err != nil {
		r.tb.Fatalf("redis-server restart: %v", err)
	}
}

// Stop kills the server (SIGKILL, as a crash) and waits for it to exit;
// idempotent.
func (r *Redis) Stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return fmt.Errorf("redis-server on %s is already running", r.Addr)
	}
	args := []string{
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--protected-mode", "no",
		"--logfile", "",
		"--loglevel", "warning",
	}
	if r.Cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes-"+strconv.Itoa(r.port)+".conf")
	}
	cmd := exec.Command(r.bin, args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", r.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		reply, err := redisCommand(r.Addr, "PING")
		if err == nil && reply == "+PONG" {
			break
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited on %s: %s", r.Addr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on %s did not answer PING within 10s (last: %q, %v): %s", r.Addr, reply, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.Cluster {
		// A restarted node keeps its slots in its config file; a new one claims
		// them all, then waits until the cluster state is ok.
		if reply, err := redisCommand(r.Addr, "CLUSTER ADDSLOTSRANGE 0 16383"); err != nil {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("cluster addslots: %w", err)
		} else if reply != "+OK" && !strings.Contains(reply, "already busy") {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("cluster addslots: %s", reply)
		}
		for {
			reply, err := redisCommand(r.Addr, "CLUSTER INFO")
			if err == nil && strings.Contains(reply, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				<-done
				return fmt.Errorf("redis cluster on %s not ok within 10s: %q %v", r.Addr, reply, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	r.cmd, r.out, r.done = cmd, out, done
	return nil
}

// redisCommand sends one inline command and returns the first line of the
// reply (with a bulk reply's payload appended).
func redisCommand(addr, command string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(command + "\r\n")); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = line[:len(line)-2]
	if len(line) > 0 && line[0] == '$' {
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return line, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects the server's output for error messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
