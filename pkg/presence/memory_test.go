package presence_test

import (
	"sync"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/presence"
	"github.com/jetchat/jetchat/pkg/presence/presencetest"
)

// clock is a fake clock safe for concurrent use.
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
// Memory is the backend that every node of the process shares.
func TestMemory(t *testing.T) {
	presencetest.Run(t, func(t *testing.T) presencetest.Backend {
		c := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		m := presence.NewMemory(presence.DefaultExpiry, c.Now)
		return presencetest.Backend{
			Expiry: presence.DefaultExpiry,
			Node:   func() presence.Presence { return m },
			Sleep:  c.Sleep,
		}
	})
}
