package testrig_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/testrig"
)

func ping(t *testing.T, addr string) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		t.Fatalf("PING answered %q", line)
	}
	return nil
}

// TestRedisStopStartSamePort: a stopped server refuses connections and comes
// back on the same address.
func TestRedisStopStartSamePort(t *testing.T) {
	t.Parallel()
	r := testrig.StartRedis(t)
	if err := ping(t, r.Addr); err != nil {
		t.Fatalf("ping: %v", err)
	}
	r.Stop()
	if err := ping(t, r.Addr); err == nil {
		t.Fatal("a stopped server answered PING")
	}
	r.Stop() // idempotent
	r.Start()
	if err := ping(t, r.Addr); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
}

func TestRunRedisAnswersPing(t *testing.T) {
	t.Parallel()
	if err := ping(t, testrig.RunRedis(t)); err != nil {
		t.Fatal(err)
	}
}

func TestRedisClusterRestart(t *testing.T) {
	t.Parallel()
	r := testrig.StartRedisCluster(t)
	if err := ping(t, r.Addr); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	r.Start()
	if err := ping(t, r.Addr); err != nil {
		t.Fatal(err)
	}
}
