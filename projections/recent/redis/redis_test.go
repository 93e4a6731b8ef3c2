package redis_test

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/testrig"
	"github.com/jetchat/jetchat/projections/recent"
	recentredis "github.com/jetchat/jetchat/projections/recent/redis"
	"github.com/jetchat/jetchat/projections/recent/storetest"
)

var prefixes atomic.Int64

func uniquePrefix() string { return fmt.Sprintf("jetchat-test-%d:", prefixes.Add(1)) }

func connect(t *testing.T, opts *goredis.UniversalOptions) goredis.UniversalClient {
	t.Helper()
	c := goredis.NewUniversalClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func suite(t *testing.T, opts *goredis.UniversalOptions) {
	storetest.Run(t, func(t *testing.T, n int) storetest.Setup {
		c := connect(t, opts)
		s := recentredis.New(c, uniquePrefix(), n)
		return storetest.Setup{Store: s, Lose: func(room string, seqs ...uint64) {
			ctx := context.Background()
			if len(seqs) == 0 {
				if err := c.Del(ctx, s.RoomKey(room)).Err(); err != nil {
					t.Fatal(err)
				}
			}
			for _, seq := range seqs {
				v := strconv.FormatUint(seq, 10)
				if err := c.ZRemRangeByScore(ctx, s.RoomKey(room), v, v).Err(); err != nil {
					t.Fatal(err)
				}
			}
		}}
	})
}

// TestStore runs the contract against one redis-server, a key prefix per
// store.
func TestStore(t *testing.T) {
	suite(t, &goredis.UniversalOptions{Addrs: []string{testrig.RunRedis(t)}})
}

// TestStoreOnCluster runs it through a Cluster client on a one-node cluster,
// which refuses any command whose keys span hash slots.
func TestStoreOnCluster(t *testing.T) {
	suite(t, &goredis.UniversalOptions{Addrs: []string{testrig.StartRedisCluster(t).Addr}, IsClusterMode: true})
}

func ev(room string, seq, prev uint64, text string) chat.Event {
	return chat.Event{Type: chat.MessageSent, ID: fmt.Sprintf("m%d", seq), Room: room, Author: "ann", Text: text, Seq: seq, Prev: prev, Time: time.Unix(1_700_000_000, int64(seq)).UTC()}
}

func mustApply(t *testing.T, s recent.Store, evs ...chat.Event) {
	t.Helper()
	if err := s.Apply(t.Context(), evs); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

func mustEvents(t *testing.T, s recent.Store, room string, want ...chat.Event) {
	t.Helper()
	got, err := s.Events(t.Context(), room, 100)
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	if len(got) != 0 || len(want) != 0 {
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("events of %s:\n got %+v\nwant %+v", room, got, want)
		}
	}
}

// TestKeyLayoutAndReopen pins the documented keys, and a new Store on the
// same prefix (a restarted node) sees the same windows and position.
func TestKeyLayoutAndReopen(t *testing.T) {
	t.Parallel()
	c := connect(t, &goredis.UniversalOptions{Addrs: []string{testrig.RunRedis(t)}})
	ctx := t.Context()
	s := recentredis.New(c, "jc:", 2)
	a1, a2, b3, a4 := ev("a", 1, 0, "one"), ev("a", 2, 1, "two"), ev("b", 3, 0, "three"), ev("a", 4, 2, "four")
	mustApply(t, s, a1, a2, b3, a4)
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"jc:recent:position", "jc:recent:{a}", "jc:recent:{b}"}; !sameSet(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	if v, _ := c.Get(ctx, "jc:recent:position").Result(); v != "4" {
		t.Fatalf("position key %q, want 4", v)
	}
	members, _ := c.ZRangeWithScores(ctx, "jc:recent:{a}", 0, -1).Result()
	if len(members) != 2 || members[0].Score != 2 || members[1].Score != 4 {
		t.Fatalf("window of a: %+v, want seqs 2 and 4 (trimmed to 2)", members)
	}
	_ = s.Close()

	s = recentredis.New(c, "jc:", 2)
	if pos, err := s.Position(ctx); err != nil || pos != 4 {
		t.Fatalf("reopened position %d %v, want 4", pos, err)
	}
	mustEvents(t, s, "a", a2, a4)
	mustEvents(t, s, "b", b3)
}

// TestCrashBeforePositionReplaysToSameState: windows written, position not
// (the process died between the two, or the position write failed): the
// batch comes again and leaves the same state as one clean apply.
func TestCrashBeforePositionReplaysToSameState(t *testing.T) {
	t.Parallel()
	c := connect(t, &goredis.UniversalOptions{Addrs: []string{testrig.RunRedis(t)}})
	ctx := t.Context()
	s := recentredis.New(c, "crash:", 3)
	first := []chat.Event{ev("a", 1, 0, "1"), ev("b", 2, 0, "2")}
	batch := []chat.Event{ev("a", 3, 1, "3"), ev("a", 4, 3, "4"), ev("b", 5, 2, "5"), ev("a", 6, 4, "6")}
	mustApply(t, s, first...)
	mustApply(t, s, batch...)
	if err := c.Set(ctx, "crash:recent:position", "2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, batch...)
	mustApply(t, s, batch[1:]...)
	mustEvents(t, s, "a", batch[0], batch[1], batch[3])
	mustEvents(t, s, "b", first[1], batch[2])
	if pos, _ := s.Position(ctx); pos != 6 {
		t.Fatalf("position %d, want 6", pos)
	}
}

// TestRedisRestart: while Redis is down Apply, Position and Events return
// errors (the projector retries the batch; readers treat the cache as
// unavailable); after a restart without persistence the store is empty at
// position 0 and works again.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := testrig.StartRedis(t)
	c := connect(t, &goredis.UniversalOptions{Addrs: []string{srv.Addr}, MaxRetries: 1, DialTimeout: 500 * time.Millisecond})
	s := recentredis.New(c, "r:", 10)
	ctx := t.Context()
	mustApply(t, s, ev("a", 1, 0, "before"))

	srv.Stop()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Apply(cctx, []chat.Event{ev("a", 2, 1, "during")}); err == nil {
		t.Fatal("apply succeeded with Redis down")
	} else {
		t.Logf("apply with Redis down: %v", err)
	}
	if _, err := s.Position(cctx); err == nil {
		t.Fatal("position succeeded with Redis down")
	}
	if _, err := s.Events(cctx, "a", 10); err == nil {
		t.Fatal("events succeeded with Redis down")
	}

	srv.Start()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pos, err := s.Position(ctx)
		if err == nil {
			if pos != 0 {
				t.Fatalf("position %d after a restart without persistence, want 0", pos)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("position after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustEvents(t, s, "a")
	// The scripts went with the old process: EVALSHA falls back to EVAL.
	e1, e2 := ev("a", 1, 0, "before"), ev("a", 2, 1, "during")
	mustApply(t, s, e1, e2)
	mustEvents(t, s, "a", e1, e2)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[string]bool)
	for _, s := range a {
		m[s] = true
	}
	for _, s := range b {
		if !m[s] {
			return false
		}
	}
	return true
}
