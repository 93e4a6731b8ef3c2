package redis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jetchat/jetchat/pkg/presence"
)

// Presence is presence.Presence in Redis, shared by every node. Per room it
// keeps two keys in one hash slot:
//
//	<prefix>presence:{<room>}       sorted set: member user NUL conn, score its expiry (Unix ms, Redis's clock)
//	<prefix>presence:{<room>}:user  sorted set: the same members, score 0: an index by user (ZRANGEBYLEX)
//
// Add, Remove, Expire and Online are Lua scripts on both keys, so "first",
// "last" and "gone" are decided atomically across nodes, and the user index
// lets them look at one user's connections without scanning the room.
// Both keys expire 2 expiries + 1 minute after the last Add or Refresh: a
// room nobody refreshes goes away by itself.
type Presence struct {
	client goredis.UniversalClient
	prefix string
	expiry time.Duration
}

var _ presence.Presence = (*Presence)(nil)

// NewPresence returns a Presence whose entries live for expiry
// (presence.DefaultExpiry if <= 0) without a Refresh. Keys start with
// prefix.
func NewPresence(client goredis.UniversalClient, prefix string, expiry time.Duration) *Presence {
	if expiry <= 0 {
		expiry = presence.DefaultExpiry
	}
	return &Presence{client: client, prefix: prefix, expiry: expiry}
}

func (p *Presence) keys(room string) []string {
	k := p.prefix + "presence:{" + room + "}"
	return []string{k, k + ":user"}
}

func (p *Presence) ttl() int64 { return 2*p.expiry.Milliseconds() + 60_000 }

// presenceLib is shared by the scripts: the time from Redis, and one user's
// members from the index.
const presenceLib = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function members_of(user)
  return redis.call('ZRANGEBYLEX', KEYS[2], '[' .. user .. '\0', '(' .. user .. '\1')
end
`

// ARGV: user, conn, expiry ms, key ttl ms. Returns 1 if the user had no live
// entry before.
var presenceAdd = goredis.NewScript(presenceLib + `
local user, expiry, ttl = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local first = 1
local mine = members_of(user)
if #mine > 0 then
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(mine))
  for i = 1, #scores do
    if scores[i] and tonumber(scores[i]) > now then first = 0 break end
  end
end
local member = user .. '\0' .. ARGV[2]
redis.call('ZADD', KEYS[1], now + expiry, member)
redis.call('ZADD', KEYS[2], 0, member)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return first
`)

// ARGV: user, conn. Removes the entry and the user's expired entries;
// returns 1 if the entry was there and the user has none left.
var presenceRemove = goredis.NewScript(presenceLib + `
local user = ARGV[1]
local member = user .. '\0' .. ARGV[2]
if not redis.call('ZSCORE', KEYS[1], member) then
  redis.call('ZREM', KEYS[2], member)
  return 0
end
redis.call('ZREM', KEYS[1], member)
redis.call('ZREM', KEYS[2], member)
local last = 1
local mine = members_of(user)
if #mine > 0 then
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(mine))
  for i = 1, #scores do
    if scores[i] and tonumber(scores[i]) > now then
      last = 0
    else
      redis.call('ZREM', KEYS[1], mine[i])
      redis.call('ZREM', KEYS[2], mine[i])
    end
  end
end
return last
`)

// ARGV: expiry ms, key ttl ms, members... Sets each member's expiry.
var presenceRefresh = goredis.NewScript(presenceLib + `
local exp = now + tonumber(ARGV[1])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], exp, ARGV[i])
  redis.call('ZADD', KEYS[2], 0, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
`)

// Removes the expired entries; returns the users left with none.
var presenceExpire = goredis.NewScript(presenceLib + `
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if #expired == 0 then return {} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
for i = 1, #expired, 1000 do
  redis.call('ZREM', KEYS[2], unpack(expired, i, math.min(i + 999, #expired)))
end
local gone, seen = {}, {}
for _, m in ipairs(expired) do
  local user = string.sub(m, 1, string.find(m, '\0', 1, true) - 1)
  if not seen[user] then
    seen[user] = true
    if #redis.call('ZRANGEBYLEX', KEYS[2], '[' .. user .. '\0', '(' .. user .. '\1', 'LIMIT', 0, 1) == 0 then
      gone[#gone + 1] = user
    end
  end
end
return gone
`)

// Returns the live members.
var presenceOnline = goredis.NewScript(presenceLib + `
return redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%d', now), '+inf')
`)

// Add implements presence.Presence.
func (p *Presence) Add(ctx context.Context, room, user, conn string) (bool, error) {
	if err := presence.ValidateEntry(room, user, conn); err != nil {
		return false, err
	}
	n, err := presenceAdd.Run(ctx, p.client, p.keys(room), user, conn, p.expiry.Milliseconds(), p.ttl()).Int()
	if err != nil {
		return false, fmt.Errorf("presence add %s to %s: %w", user, room, err)
	}
	return n == 1, nil
}

// Remove implements presence.Presence.
func (p *Presence) Remove(ctx context.Context, room, user, conn string) (bool, error) {
	if err := presence.ValidateEntry(room, user, conn); err != nil {
		return false, err
	}
	n, err := presenceRemove.Run(ctx, p.client, p.keys(room), user, conn).Int()
	if err != nil {
		return false, fmt.Errorf("presence remove %s from %s: %w", user, room, err)
	}
	return n == 1, nil
}

// Refresh implements presence.Presence: one script per room, all in one
// pipeline.
func (p *Presence) Refresh(ctx context.Context, entries []presence.Entry) error {
	byRoom := make(map[string][]any)
	var rooms []string
	for _, e := range entries {
		if err := presence.ValidateEntry(e.Room, e.User, e.Conn); err != nil {
			return err
		}
		if byRoom[e.Room] == nil {
			rooms = append(rooms, e.Room)
			byRoom[e.Room] = []any{p.expiry.Milliseconds(), p.ttl()}
		}
		byRoom[e.Room] = append(byRoom[e.Room], e.User+"\x00"+e.Conn)
	}
	if len(rooms) == 0 {
		return nil
	}
	calls := make([]scriptCall, len(rooms))
	for i, room := range rooms {
		calls[i] = scriptCall{keys: p.keys(room), args: byRoom[room]}
	}
	if _, err := runPipelined(ctx, p.client, presenceRefresh, calls); err != nil {
		return fmt.Errorf("presence refresh %d entries in %d rooms: %w", len(entries), len(rooms), err)
	}
	return nil
}

// Online implements presence.Presence.
func (p *Presence) Online(ctx context.Context, room string) ([]string, error) {
	if err := presence.ValidateRoom(room); err != nil {
		return nil, err
	}
	members, err := presenceOnline.Run(ctx, p.client, p.keys(room)).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("presence online in %s: %w", room, err)
	}
	var users []string
	for _, m := range members {
		user, _, _ := strings.Cut(m, "\x00")
		users = append(users, user)
	}
	slices.Sort(users)
	return slices.Compact(users), nil
}

// Expire implements presence.Presence.
func (p *Presence) Expire(ctx context.Context, room string) ([]string, error) {
	if err := presence.ValidateRoom(room); err != nil {
		return nil, err
	}
	gone, err := presenceExpire.Run(ctx, p.client, p.keys(room)).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("presence expire in %s: %w", room, err)
	}
	if len(gone) == 0 {
		return nil, nil
	}
	slices.Sort(gone)
	return gone, nil
}
