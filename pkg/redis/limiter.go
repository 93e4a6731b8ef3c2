package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jetchat/jetchat/pkg/ratelimit"
)

// Limiter is ratelimit.Limiter in Redis, one budget per key shared by every
// node: GCRA (as github.com/go-redis/redis_rate) in one Lua script on Redis's
// clock. A bucket is one key, <prefix>ratelimit:<key>, holding its
// theoretical arrival time (Unix µs) and expiring when the bucket is full
// again, so idle keys cost nothing.
type Limiter struct {
	client goredis.UniversalClient
	prefix string
}

var _ ratelimit.Limiter = (*Limiter)(nil)

// NewLimiter returns a Limiter whose keys start with prefix.
func NewLimiter(client goredis.UniversalClient, prefix string) *Limiter {
	return &Limiter{client: client, prefix: prefix}
}

// ARGV: interval µs, burst. Returns {1, 0} when a token was taken, else
// {0, µs until one is there}. The arithmetic is ratelimit.GCRA's.
var limiterAllow = goredis.NewScript(`
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
`)

// Allow implements ratelimit.Limiter.
func (l *Limiter) Allow(ctx context.Context, key string, rate float64, burst int) (bool, time.Duration, error) {
	interval, err := ratelimit.Interval(rate, burst)
	if err != nil {
		return false, 0, err
	}
	if err := ratelimit.ValidateKey(key); err != nil {
		return false, 0, err
	}
	res, err := limiterAllow.Run(ctx, l.client, []string{l.prefix + "ratelimit:" + key}, interval, burst).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("rate limit %s: %w", key, err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("rate limit %s: script answered %v", key, res)
	}
	if res[0] == 1 {
		return true, 0, nil
	}
	return false, time.Duration(res[1]) * time.Microsecond, nil
}
