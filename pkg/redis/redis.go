// Package redis is jetchat's Redis adapter for the state that a cluster's
// nodes share but the event log must not hold: presence ([Presence]) and
// rate limits ([Limiter]), each the Redis twin of an in-memory
// implementation held to the same contract suite. (The recent-events
// projection's Redis store lives with its read model, in
// projections/recent/redis.)
//
// It speaks to Redis through redis.UniversalClient, so one server, Sentinel
// or Cluster all work: the keys one operation must change atomically share a
// hash tag ({room}), and every operation that decides something across nodes
// (a user's first or last connection, a rate limit) is one Lua script, run
// with EVALSHA and reloaded on NOSCRIPT (redis.NewScript). Times come from
// Redis (TIME), never from the nodes, so their clocks do not matter. Every
// key starts with a prefix chosen by the caller, so deployments and tests can
// share a server.
//
// Redis here is a cache of ephemeral state: this package must never be
// needed for delivery. Every failure is returned as an error, wrapped with
// what was being done, never a panic; callers degrade (presence unavailable,
// rate limits fail open). Clients are the caller's: nothing here closes them.
package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// Open returns a client for the Redis deployment that url names. It does not
// connect: the first command does, so a node starts while Redis is down.
//
//	redis://[user:password@]host:port[/db][?option=value...]   one server (rediss:// for TLS; unix:///path)
//	redis://host:port?master_name=m&addr=host2:port...         Sentinel: the addresses are the sentinels'
//	redis://host:port?addr=host2:port&addr=...                 Cluster: seed nodes
//	redis://host:port?cluster=true                             Cluster with one seed node
//	host:port,host:port,...                                    Cluster seed nodes (one address: one server)
//
// Options are go-redis's, snake-cased (dial_timeout=3s, pool_size=20, ...).
// In a comma-separated list, "redis://" is optional and credentials and
// options come from the first entry.
func Open(rawURL string) (goredis.UniversalClient, error) {
	var parts []string
	for p := range strings.SplitSeq(rawURL, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !strings.Contains(p, "://") {
			p = "redis://" + p
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return nil, errors.New("redis url: empty")
	}
	first, err := url.Parse(parts[0])
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	q := first.Query()
	cluster := q.Get("cluster") == "true" || q.Has("addr") || len(parts) > 1
	if q.Has("cluster") {
		q.Del("cluster")
		first.RawQuery = q.Encode()
	}
	switch {
	case q.Has("master_name"):
		if len(parts) > 1 {
			return nil, errors.New("redis url: name further sentinels with addr=, not commas")
		}
		opts, err := goredis.ParseFailoverURL(first.String())
		if err != nil {
			return nil, fmt.Errorf("redis sentinel url: %w", err)
		}
		return goredis.NewFailoverClient(opts), nil
	case cluster:
		opts, err := goredis.ParseClusterURL(first.String())
		if err != nil {
			return nil, fmt.Errorf("redis cluster url: %w", err)
		}
		for _, p := range parts[1:] {
			o, err := goredis.ParseURL(p)
			if err != nil {
				return nil, fmt.Errorf("redis cluster url %q: %w", p, err)
			}
			opts.Addrs = append(opts.Addrs, o.Addr)
		}
		return goredis.NewClusterClient(opts), nil
	default:
		opts, err := goredis.ParseURL(first.String())
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", err)
		}
		return goredis.NewClient(opts), nil
	}
}

// runPipelined runs script once per call in one pipeline (a Cluster client
// sends each call to its key's node). On NOSCRIPT (a restarted or new node)
// it loads nothing and reruns the pipeline with EVAL, which caches the
// script; so the calls must be idempotent.
func runPipelined(ctx context.Context, c goredis.UniversalClient, s *goredis.Script, calls []scriptCall) ([]*goredis.Cmd, error) {
	run := func(eval bool) ([]*goredis.Cmd, error) {
		cmds := make([]*goredis.Cmd, len(calls))
		_, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, call := range calls {
				if eval {
					cmds[i] = s.Eval(ctx, p, call.keys, call.args...)
				} else {
					cmds[i] = s.EvalSha(ctx, p, call.keys, call.args...)
				}
			}
			return nil
		})
		return cmds, err
	}
	cmds, err := run(false)
	if err != nil && isNoScript(cmds) {
		cmds, err = run(true)
	}
	return cmds, err
}

type scriptCall struct {
	keys []string
	args []any
}

func isNoScript(cmds []*goredis.Cmd) bool {
	for _, c := range cmds {
		if err := c.Err(); err != nil && (errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT")) {
			return true
		}
	}
	return false
}
