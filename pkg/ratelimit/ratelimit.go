// Package ratelimit limits how often something may happen per key (a user's
// sends, across nodes): the contract ([Limiter]), its in-memory
// implementation for the embedded node ([Memory]), and the algorithm both
// use, GCRA (the generic cell rate algorithm: a token bucket kept as one
// "theoretical arrival time" per key). pkg/redis holds the cluster's
// implementation; ratelimit/ratelimittest is the suite both pass.
//
// A limiter must never be the reason a chat action fails: callers that get
// an error from Allow let the action through (fail open) and log it.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Limiter takes tokens from per-key buckets.
type Limiter interface {
	// Allow takes one token from key's bucket, which refills at rate tokens
	// per second up to burst. When the bucket is empty it takes nothing and
	// returns ok=false and how long until a token is there.
	Allow(ctx context.Context, key string, rate float64, burst int) (ok bool, retryAfter time.Duration, err error)
}

// ErrInvalidLimit is returned for a rate or burst Allow cannot use.
var ErrInvalidLimit = errors.New("ratelimit: invalid limit")

// Bounds of the limits Allow accepts.
const (
	MinRate  = 1e-6 // tokens per second: about one in 11.6 days
	MaxRate  = 1e6
	MaxBurst = 1 << 20
)

// Interval checks a limit and returns the time between two tokens, in
// microseconds (the unit both implementations compute in).
func Interval(rate float64, burst int) (float64, error) {
	if math.IsNaN(rate) || rate < MinRate || rate > MaxRate {
		return 0, fmt.Errorf("%w: rate %v must be within [%v, %v] per second", ErrInvalidLimit, rate, MinRate, MaxRate)
	}
	if burst < 1 || burst > MaxBurst {
		return 0, fmt.Errorf("%w: burst %d must be within [1, %d]", ErrInvalidLimit, burst, MaxBurst)
	}
	return 1e6 / rate, nil
}

// ValidateKey checks a bucket's key.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidLimit)
	}
	return nil
}

// GCRA is one step of the algorithm, in microseconds: given the bucket's
// theoretical arrival time tat (0 for a full bucket), now, the interval
// between tokens and the burst, it returns whether a token is taken, the new
// tat to store if so, and otherwise how long until a token is there.
//
// The bucket is full when tat <= now; each token moves tat one interval on;
// a token is there while tat - now <= (burst-1) * interval.
func GCRA(tat, now, interval float64, burst int) (ok bool, newTAT, retryAfter float64) {
	tat = math.Max(tat, now)
	newTAT = tat + interval
	allowAt := newTAT - float64(burst)*interval
	if allowAt > now {
		return false, 0, allowAt - now
	}
	return true, newTAT, 0
}
