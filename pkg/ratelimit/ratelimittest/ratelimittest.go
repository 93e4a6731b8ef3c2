// Package ratelimittest is the contract suite every ratelimit.Limiter must
// pass: the in-memory one and the Redis one run it from their tests.
//
// It is for tests only: no shipped binary may import it.
package ratelimittest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/ratelimit"
)

// Backend is one fresh backend for a subtest (a key prefix on a shared
// Redis; a Memory with its own clock). Every Limiter that Node returns draws
// on the same buckets, as the chat nodes of one cluster do.
type Backend struct {
	// Node returns a Limiter on this backend (for Redis: a new client).
	Node func() ratelimit.Limiter
	// Sleep lets d pass on the backend's clock (a real sleep for Redis, a
	// fake clock's advance for Memory).
	Sleep func(d time.Duration)
}

// Run runs the suite. newBackend is called once or more per subtest; each
// call must give a backend isolated from every other.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	fresh := func(t *testing.T) (Backend, ratelimit.Limiter) {
		t.Helper()
		t.Parallel()
		b := newBackend(t)
		return b, b.Node()
	}

	t.Run("BurstThenRefusalWithRetryAfter", func(t *testing.T) {
		_, l := fresh(t)
		for i := range 3 {
			allow(t, l, "ann", 1, 3, fmt.Sprintf("token %d of the burst", i+1))
		}
		r1 := refuse(t, l, "ann", 1, 3)
		if r1 > time.Second || r1 < time.Second/2 {
			t.Fatalf("retryAfter %v after a burst at 1/s, want about 1s", r1)
		}
		r2 := refuse(t, l, "ann", 1, 3) // a refusal takes nothing
		if r2 > r1 {
			t.Fatalf("a second refusal's retryAfter %v grew from %v: the refusal took a token", r2, r1)
		}
	})

	t.Run("FractionalRate", func(t *testing.T) {
		_, l := fresh(t)
		allow(t, l, "ann", 0.5, 1, "the only token")
		if r := refuse(t, l, "ann", 0.5, 1); r > 2*time.Second || r < time.Second {
			t.Fatalf("retryAfter %v at 0.5/s, want about 2s", r)
		}
	})

	t.Run("RefillsOverTimeUpToBurst", func(t *testing.T) {
		b, l := fresh(t)
		const rate, burst = 10, 2 // a token every 100ms
		allow(t, l, "ann", rate, burst, "1st")
		allow(t, l, "ann", rate, burst, "2nd")
		r := refuse(t, l, "ann", rate, burst)
		if r > 100*time.Millisecond {
			t.Fatalf("retryAfter %v at 10/s, want at most 100ms", r)
		}
		b.Sleep(r)
		allow(t, l, "ann", rate, burst, "the token that retryAfter promised")
		refuse(t, l, "ann", rate, burst)
		b.Sleep(time.Second) // ten tokens' time: the bucket holds two
		allow(t, l, "ann", rate, burst, "1st after the refill")
		allow(t, l, "ann", rate, burst, "2nd after the refill")
		refuse(t, l, "ann", rate, burst)
	})

	t.Run("KeysIndependent", func(t *testing.T) {
		_, l := fresh(t)
		allow(t, l, "ann", 1, 1, "ann's token")
		refuse(t, l, "ann", 1, 1)
		allow(t, l, "bob", 1, 1, "bob's token")
		allow(t, l, "ann:typing", 1, 1, "another bucket of ann's")
		refuse(t, l, "bob", 1, 1)
	})

	t.Run("NodesShareTheBudget", func(t *testing.T) {
		b, l1 := fresh(t)
		l2 := b.Node()
		allow(t, l1, "ann", 0.1, 4, "1")
		allow(t, l2, "ann", 0.1, 4, "2")
		allow(t, l1, "ann", 0.1, 4, "3")
		allow(t, l2, "ann", 0.1, 4, "4")
		refuse(t, l1, "ann", 0.1, 4)
		refuse(t, l2, "ann", 0.1, 4)
	})

	t.Run("ConcurrentCallersTakeExactlyTheBurst", func(t *testing.T) {
		b, _ := fresh(t)
		const burst = 25
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			allowed int
		)
		for range 4 {
			l := b.Node()
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 10 {
						ok, _, err := l.Allow(context.Background(), "ann", 0.01, burst)
						if err != nil {
							t.Errorf("allow: %v", err)
							return
						}
						if ok {
							mu.Lock()
							allowed++
							mu.Unlock()
						}
					}
				}()
			}
		}
		wg.Wait()
		if allowed != burst {
			t.Fatalf("%d of 120 racing calls allowed, want exactly the burst, %d", allowed, burst)
		}
	})

	t.Run("BackendsIsolated", func(t *testing.T) {
		_, l1 := fresh(t)
		l2 := newBackend(t).Node()
		allow(t, l1, "ann", 1, 1, "on the first backend")
		refuse(t, l1, "ann", 1, 1)
		allow(t, l2, "ann", 1, 1, "on the second backend")
	})

	t.Run("ErrInvalidLimit", func(t *testing.T) {
		_, l := fresh(t)
		for _, c := range []struct {
			key   string
			rate  float64
			burst int
		}{
			{"ann", 0, 1}, {"ann", -1, 1}, {"ann", math.NaN(), 1}, {"ann", math.Inf(1), 1},
			{"ann", 1, 0}, {"ann", 1, -3}, {"", 1, 1},
		} {
			ok, _, err := l.Allow(context.Background(), c.key, c.rate, c.burst)
			if !errors.Is(err, ratelimit.ErrInvalidLimit) || ok {
				t.Errorf("Allow(%q, %v, %d) = %v, %v; want ErrInvalidLimit", c.key, c.rate, c.burst, ok, err)
			}
		}
		allow(t, l, "ann", 1, 1, "a valid call after the invalid ones")
	})
}

func allow(t *testing.T, l ratelimit.Limiter, key string, rate float64, burst int, what string) {
	t.Helper()
	ok, retry, err := l.Allow(context.Background(), key, rate, burst)
	if err != nil {
		t.Fatalf("allow %s: %v", what, err)
	}
	if !ok {
		t.Fatalf("%s refused (retry after %v), want allowed", what, retry)
	}
	if retry != 0 {
		t.Fatalf("%s allowed with retryAfter %v, want 0", what, retry)
	}
}

func refuse(t *testing.T, l ratelimit.Limiter, key string, rate float64, burst int) time.Duration {
	t.Helper()
	ok, retry, err := l.Allow(context.Background(), key, rate, burst)
	if err != nil {
		t.Fatalf("allow %s: %v", key, err)
	}
	if ok {
		t.Fatalf("%s allowed, want refused", key)
	}
	if retry <= 0 {
		t.Fatalf("%s refused with retryAfter %v, want > 0", key, retry)
	}
	return retry
}
