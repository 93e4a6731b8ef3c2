// Package redis stores the recent-events read model in Redis: the cluster's
// store, shared by every node.
//
// Keys (prefix chosen by the caller, so deployments and tests can share a
// server):
//
//	<prefix>recent:{<room>}    sorted set: score = seq, member = the event's JSON
//	                           (with seq and prev), trimmed to the newest N
//	<prefix>recent:position    the position, a decimal string
//
// Apply reads the position, folds the batch with recent.Fold, and writes
// each room's window with one Lua script (remove any member at the event's
// seq, add the event, trim with ZREMRANGEBYRANK), all rooms in one pipeline;
// then, once every room's write succeeded, it sets the position (never moving
// it back). With Cluster the rooms live on different nodes, so the windows and
// the position are not one transaction: a crash or error between them leaves
// windows ahead of the position, and the batch is delivered again. That is
// harmless because writing a window is idempotent: an event is stored under
// its seq as deterministic JSON (json.Marshal of chat.Event, time in UTC), so
// adding it again replaces it by itself, and trimming to the N highest seqs
// gives the same set however often it runs.
//
// Redis is a cache here: if it loses data (a restart without persistence, an
// eviction, a failover to a lagging replica), Events serves only the
// contiguous newest part of a window (recent.Chain), never a gap. A lost
// position is 0, and the projection then refills from the start of the log.
// Configure Redis so that it does not evict the position key (e.g.
// maxmemory-policy volatile-lru or noeviction).
//
// This package must not be imported by the domain or by another adapter.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/recent"
)

// Store is a recent.Store in Redis.
type Store struct {
	client goredis.UniversalClient
	prefix string
	n      int
}

var _ recent.Store = (*Store)(nil)

// New returns a store with windows of n events (recent.DefaultN if n <= 0)
// whose keys start with prefix. The client is the caller's: Close does not
// close it.
func New(client goredis.UniversalClient, prefix string, n int) *Store {
	if n <= 0 {
		n = recent.DefaultN
	}
	return &Store{client: client, prefix: prefix, n: n}
}

// RoomKey is the key of room's window.
func (s *Store) RoomKey(room string) string { return s.prefix + "recent:{" + room + "}" }

func (s *Store) positionKey() string { return s.prefix + "recent:position" }

// ARGV: n, then seq and JSON of each event, ascending.
var applyRoom = goredis.NewScript(`
for i = 2, #ARGV, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[i], ARGV[i])
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
return 1
`)

// ARGV: position. Sets it unless the stored one is larger.
var setPosition = goredis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or 0)
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
`)

// Apply implements recent.Store.
func (s *Store) Apply(ctx context.Context, events []chat.Event) error {
	pos, err := s.Position(ctx)
	if err != nil {
		return err
	}
	b := recent.Fold(pos, events, s.n)
	if b.Position == pos {
		return nil
	}
	if len(b.Windows) > 0 {
		calls := make([][]any, len(b.Windows))
		for i, w := range b.Windows {
			args := make([]any, 0, 1+2*len(w.Events))
			args = append(args, s.n)
			for _, e := range w.Events {
				data, err := json.Marshal(e)
				if err != nil {
					return fmt.Errorf("recent: encode event %d: %w", e.Seq, err)
				}
				args = append(args, strconv.FormatUint(e.Seq, 10), data)
			}
			calls[i] = args
		}
		if err := s.writeWindows(ctx, b.Windows, calls, false); err != nil {
			return err
		}
	}
	if err := setPosition.Run(ctx, s.client, []string{s.positionKey()}, strconv.FormatUint(b.Position, 10)).Err(); err != nil {
		return fmt.Errorf("recent: set position %d: %w", b.Position, err)
	}
	return nil
}

// writeWindows runs applyRoom for every window in one pipeline, with EVALSHA;
// on NOSCRIPT (a restarted or new node) it runs them all again with EVAL,
// which is harmless as writing a window is idempotent.
func (s *Store) writeWindows(ctx context.Context, ws []recent.Window, calls [][]any, eval bool) error {
	cmds := make([]*goredis.Cmd, len(ws))
	_, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, w := range ws {
			keys := []string{s.RoomKey(w.Room)}
			if eval {
				cmds[i] = applyRoom.Eval(ctx, p, keys, calls[i]...)
			} else {
				cmds[i] = applyRoom.EvalSha(ctx, p, keys, calls[i]...)
			}
		}
		return nil
	})
	if err == nil {
		return nil
	}
	if !eval && slices.ContainsFunc(cmds, func(c *goredis.Cmd) bool { return isNoScript(c.Err()) }) {
		return s.writeWindows(ctx, ws, calls, true)
	}
	for i, c := range cmds {
		if c.Err() != nil {
			return fmt.Errorf("recent: write window of %s (%d rooms in the batch): %w", ws[i].Room, len(ws), c.Err())
		}
	}
	return fmt.Errorf("recent: write %d windows: %w", len(ws), err)
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT"))
}

// Position implements recent.Store.
func (s *Store) Position(ctx context.Context) (uint64, error) {
	v, err := s.client.Get(ctx, s.positionKey()).Result()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("recent: read position: %w", err)
	}
	pos, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("recent: position %q: %w", v, err)
	}
	return pos, nil
}

// Events implements recent.Store. A member that does not decode ends the
// chain like a hole.
func (s *Store) Events(ctx context.Context, room string, n int) ([]chat.Event, error) {
	if err := chat.ValidateRoomID(room); err != nil {
		return nil, err
	}
	n = min(n, s.n)
	if n <= 0 {
		return nil, nil
	}
	members, err := s.client.ZRevRange(ctx, s.RoomKey(room), 0, int64(n-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("recent: read window of %s: %w", room, err)
	}
	window := make([]chat.Event, 0, len(members))
	for _, m := range members { // newest first
		var e chat.Event
		if err := json.Unmarshal([]byte(m), &e); err != nil || e.Seq == 0 {
			break
		}
		window = append(window, e)
	}
	slices.Reverse(window)
	return recent.Chain(window, n), nil
}

// Close implements recent.Store; the client stays open.
func (s *Store) Close() error { return nil }

// Drop deletes this version's windows and position (after a rebuild replaced
// it). It scans for the version's keys; on a Cluster, every master's.
func (s *Store) Drop(ctx context.Context) error {
	del := func(ctx context.Context, c goredis.Cmdable) error {
		iter := c.Scan(ctx, 0, s.prefix+"recent:*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	if cc, ok := s.client.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return del(ctx, c) })
	}
	return del(ctx, s.client)
}
