package testrig

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/localcluster"
)

// RunCluster starts the cluster topology of docker-compose.yaml as local
// processes (see localcluster): 3 NATS servers, Redis, FerretDB, 4 chatd
// nodes, the projector and nginx, on free loopback ports. It stops when the
// test ends; any part that exited on its own meanwhile fails the test, and a
// failed test keeps the cluster dir and lists its log files.
func RunCluster(tb testing.TB) *localcluster.Cluster {
	tb.Helper()
	return RunClusterWith(tb, localcluster.Options{})
}

// RunClusterWith is RunCluster with options (node flags, dev mode); Dir is
// chosen here unless set.
func RunClusterWith(tb testing.TB, opts localcluster.Options) *localcluster.Cluster {
	tb.Helper()
	Need(tb, "redis-server", "redis-server")
	Need(tb, "nginx", "nginx")
	own := opts.Dir == ""
	if own {
		dir, err := os.MkdirTemp("", "jetchat-"+dirName(tb.Name())+"-")
		if err != nil {
			tb.Fatal(err)
		}
		opts.Dir = dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := localcluster.Start(ctx, opts)
	if err != nil {
		tb.Fatalf("start the local cluster: %v\n(logs kept in %s)", err, opts.Dir)
	}
	tb.Logf("local cluster up in %v: %s (dir %s)", time.Since(start).Round(time.Millisecond), c.URL(), c.Dir())
	tb.Cleanup(func() {
		c.Stop()
		for _, r := range c.StartRetries() {
			tb.Logf("started again, as compose's restart policy would: %s", r)
		}
		if crashes := c.Crashes(); len(crashes) > 0 {
			tb.Errorf("cluster processes exited on their own:\n  %s", strings.Join(crashes, "\n  "))
		}
		if tb.Failed() {
			tb.Logf("cluster logs (kept):\n%s", c.LogList())
			return
		}
		if own {
			_ = os.RemoveAll(opts.Dir)
		}
	})
	return c
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

func dirName(test string) string {
	s := unsafeName.ReplaceAllString(test, "_")
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}
