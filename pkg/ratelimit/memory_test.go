package ratelimit_test

import (
	"sync"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/ratelimit"
	"github.com/jetchat/jetchat/pkg/ratelimit/ratelimittest"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Sleep(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestMemory holds the reference model to the contract on a fake clock: one
// Memory is the backend every node of the process shares.
func TestMemory(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T) ratelimittest.Backend {
		c := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		m := ratelimit.NewMemory(c.Now)
		return ratelimittest.Backend{Node: func() ratelimit.Limiter { return m }, Sleep: c.Sleep}
	})
}

// TestMemorySweepsFullBuckets: keys whose buckets refilled are forgotten, so
// memory does not grow with every key ever seen.
func TestMemorySweepsFullBuckets(t *testing.T) {
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	m := ratelimit.NewMemory(c.Now)
	for i := range 10_000 {
		if ok, _, err := m.Allow(t.Context(), "k"+string(rune('a'+i%26))+string(rune(i)), 1, 1); !ok || err != nil {
			t.Fatalf("allow: %v %v", ok, err)
		}
		c.Sleep(time.Millisecond) // each bucket is full again after 1s
	}
	if n := ratelimit.Buckets(m); n > 5000 {
		t.Fatalf("%d buckets kept after 10,000 keys over 10s at 1/s, want the sweep to drop the refilled ones", n)
	}
}
