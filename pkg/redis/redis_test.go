package redis_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jetchat/jetchat/pkg/presence"
	"github.com/jetchat/jetchat/pkg/presence/presencetest"
	"github.com/jetchat/jetchat/pkg/ratelimit"
	"github.com/jetchat/jetchat/pkg/ratelimit/ratelimittest"
	"github.com/jetchat/jetchat/pkg/redis"
	"github.com/jetchat/jetchat/pkg/testrig"
)

// expiry is short so that the suite's expiries pass in real time; every
// "still alive" check in the suite happens well within it.
const expiry = 400 * time.Millisecond

var prefixes atomic.Int64

// uniquePrefix gives each backend of each subtest its own keys on the shared
// server.
func uniquePrefix() string { return fmt.Sprintf("jetchat-test-%d:", prefixes.Add(1)) }

// connect opens a client closed when the test ends: each is one node.
func connect(t *testing.T, url string) goredis.UniversalClient {
	t.Helper()
	c, err := redis.Open(url)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func presenceBackend(url string) func(t *testing.T) presencetest.Backend {
	return func(t *testing.T) presencetest.Backend {
		prefix := uniquePrefix()
		return presencetest.Backend{
			Expiry: expiry,
			Node:   func() presence.Presence { return redis.NewPresence(connect(t, url), prefix, expiry) },
			Sleep:  time.Sleep,
		}
	}
}

func limiterBackend(url string) func(t *testing.T) ratelimittest.Backend {
	return func(t *testing.T) ratelimittest.Backend {
		prefix := uniquePrefix()
		return ratelimittest.Backend{
			Node:  func() ratelimit.Limiter { return redis.NewLimiter(connect(t, url), prefix) },
			Sleep: time.Sleep,
		}
	}
}

// TestContracts runs both suites against one redis-server, every backend a
// key prefix and every node its own client.
func TestContracts(t *testing.T) {
	url := "redis://" + testrig.RunRedis(t)
	t.Run("Presence", func(t *testing.T) {
		t.Parallel()
		presencetest.Run(t, presenceBackend(url))
	})
	t.Run("Limiter", func(t *testing.T) {
		t.Parallel()
		ratelimittest.Run(t, limiterBackend(url))
	})
}

// TestContractsOnCluster runs both suites through a Cluster client against a
// one-node cluster, which refuses any script whose keys span hash slots.
func TestContractsOnCluster(t *testing.T) {
	url := testrig.StartRedisCluster(t).Addr + "?cluster=true"
	if _, ok := connect(t, url).(*goredis.ClusterClient); !ok {
		t.Fatalf("%s did not open a cluster client", url)
	}
	t.Run("Presence", func(t *testing.T) {
		t.Parallel()
		presencetest.Run(t, presenceBackend(url))
	})
	t.Run("Limiter", func(t *testing.T) {
		t.Parallel()
		ratelimittest.Run(t, limiterBackend(url))
	})
}

// TestKeyLayout pins the documented keys: a deployment's operators and its
// other tools rely on them.
func TestKeyLayout(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := connect(t, "redis://"+testrig.RunRedis(t))
	p := redis.NewPresence(c, "jc:", time.Minute)
	if _, err := p.Add(ctx, "general", "ann", "n1:7"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := redis.NewLimiter(c, "jc:").Allow(ctx, "send:ann", 1, 5); err != nil {
		t.Fatal(err)
	}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"jc:presence:{general}": true, "jc:presence:{general}:user": true, "jc:ratelimit:send:ann": true}
	if len(keys) != len(want) {
		t.Fatalf("keys %q, want %v", keys, want)
	}
	for _, k := range keys {
		if !want[k] {
			t.Fatalf("unexpected key %q (all: %q)", k, keys)
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 {
			t.Fatalf("key %q has no expiry (%v, %v)", k, ttl, err)
		}
	}
	if got, _ := c.ZScore(ctx, "jc:presence:{general}", "ann\x00n1:7").Result(); got < float64(time.Now().Add(50*time.Second).UnixMilli()) {
		t.Fatalf("entry score %v, want its expiry in Unix ms", got)
	}
}

// TestRedisRestart: while Redis is down every call returns an error that says
// what was being done (callers degrade on it), and after the restart the same
// clients work again, on a server that lost everything.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := testrig.StartRedis(t)
	c := connect(t, "redis://"+srv.Addr+"?max_retries=1&dial_timeout=500ms")
	p := redis.NewPresence(c, "r:", time.Minute)
	l := redis.NewLimiter(c, "r:")
	ctx := t.Context()
	if first, err := p.Add(ctx, "a", "ann", "n1:1"); err != nil || !first {
		t.Fatalf("add: %v %v", first, err)
	}
	if ok, _, err := l.Allow(ctx, "ann", 1, 1); err != nil || !ok {
		t.Fatalf("allow: %v %v", ok, err)
	}

	srv.Stop()
	down := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s succeeded with Redis down", what)
		}
		t.Logf("%s with Redis down: %v", what, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := p.Add(cctx, "a", "bob", "n1:2")
	down("add", err)
	if !strings.Contains(err.Error(), "presence add bob to a") {
		t.Errorf("error %q does not say what was being done", err)
	}
	_, err = p.Remove(cctx, "a", "ann", "n1:1")
	down("remove", err)
	down("refresh", p.Refresh(cctx, []presence.Entry{{Room: "a", User: "ann", Conn: "n1:1"}}))
	_, err = p.Online(cctx, "a")
	down("online", err)
	_, err = p.Expire(cctx, "a")
	down("expire", err)
	_, _, err = l.Allow(cctx, "ann", 1, 1)
	down("allow", err)

	srv.Start()
	// Scripts are gone with the old process: EVALSHA falls back to EVAL.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := p.Online(ctx, "a")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("online after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if first, err := p.Add(ctx, "a", "ann", "n1:1"); err != nil || !first {
		t.Fatalf("add after the restart: %v %v (want first: the server lost everything)", first, err)
	}
	if ok, _, err := l.Allow(ctx, "ann", 1, 1); err != nil || !ok {
		t.Fatalf("allow after the restart: %v %v (the bucket was lost: full again)", ok, err)
	}
	// Refresh pipelines EVALSHA: after another restart it must fall back too.
	srv.Stop()
	srv.Start()
	for {
		err := p.Refresh(ctx, []presence.Entry{{Room: "a", User: "ann", Conn: "n1:1"}, {Room: "b", User: "ann", Conn: "n1:1"}})
		if err == nil {
			break
		}
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("refresh after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, room := range []string{"a", "b"} {
		if users, err := p.Online(ctx, room); err != nil || len(users) != 1 {
			t.Fatalf("online %s after refresh: %q %v", room, users, err)
		}
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	addr := testrig.RunRedis(t)
	ctx := t.Context()
	for _, c := range []struct {
		url     string
		cluster bool
	}{
		{"redis://" + addr, false},
		{"redis://" + addr + "/2?dial_timeout=2s&pool_size=4", false},
		{addr, false},
		{" " + addr + " , ", false},
	} {
		client := connect(t, c.url)
		if _, ok := client.(*goredis.ClusterClient); ok != c.cluster {
			t.Errorf("%q: cluster client %v, want %v", c.url, ok, c.cluster)
		}
		if err := client.Ping(ctx).Err(); err != nil {
			t.Errorf("%q: ping: %v", c.url, err)
		}
	}
	cl := testrig.StartRedisCluster(t).Addr
	for _, url := range []string{cl + "?cluster=true", cl + "," + cl, "redis://" + cl + "?addr=" + cl, "redis://" + cl + ",redis://" + cl} {
		client := connect(t, url)
		if _, ok := client.(*goredis.ClusterClient); !ok {
			t.Errorf("%q: not a cluster client", url)
		}
		if err := client.Ping(ctx).Err(); err != nil {
			t.Errorf("%q: ping: %v", url, err)
		}
	}
	// Sentinel: parsed, not dialled (there is no sentinel here).
	if _, err := redis.Open("redis://127.0.0.1:26379?master_name=mymaster&addr=127.0.0.1:26380"); err != nil {
		t.Errorf("sentinel url: %v", err)
	}
	for _, bad := range []string{"", " , ", "http://" + addr, "redis://" + addr + "?no_such_option=1", "redis://" + addr + "/x", "redis://h:1?master_name=m,redis://h:2"} {
		if c, err := redis.Open(bad); err == nil {
			_ = c.Close()
			t.Errorf("Open(%q) succeeded, want an error", bad)
		}
	}
}
