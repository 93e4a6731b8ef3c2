package ratelimit

import (
	"context"
	"math"
	"sync"
	"time"
)

// Memory is a Limiter within one process: the embedded node's, and the
// reference model of the contract. Its buckets are lost on restart, which
// only refills them.
type Memory struct {
	now func() time.Time

	mu    sync.Mutex
	tat   map[string]float64 // key -> theoretical arrival time, Unix microseconds
	calls int
}

var _ Limiter = (*Memory)(nil)

// sweepEvery is how many calls pass between sweeps of full buckets.
const sweepEvery = 4096

// NewMemory returns a Memory on the clock now (time.Now if nil; tests pass a
// fake one).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, tat: make(map[string]float64)}
}

// Allow implements Limiter.
func (m *Memory) Allow(_ context.Context, key string, rate float64, burst int) (bool, time.Duration, error) {
	interval, err := Interval(rate, burst)
	if err != nil {
		return false, 0, err
	}
	if err := ValidateKey(key); err != nil {
		return false, 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := float64(m.now().UnixMicro())
	if m.calls++; m.calls%sweepEvery == 0 {
		for k, tat := range m.tat {
			if tat <= now { // full again: the same as absent
				delete(m.tat, k)
			}
		}
	}
	ok, tat, retry := GCRA(m.tat[key], now, interval, burst)
	if !ok {
		return false, time.Duration(math.Ceil(retry)) * time.Microsecond, nil
	}
	m.tat[key] = tat
	return true, 0, nil
}
