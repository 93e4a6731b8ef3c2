// Package presencetest is the contract suite every presence.Presence must
// pass: the in-memory one and the Redis one run it from their tests.
//
// It is for tests only: no shipped binary may import it.
package presencetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/presence"
)

// Backend is one fresh, empty presence backend for a subtest (a key prefix on
// a shared Redis; a Memory with its own clock). Every Presence that Node
// returns sees the same entries, as the chat nodes of one cluster do.
type Backend struct {
	// Expiry is the expiry the backend's presences were made with.
	Expiry time.Duration
	// Node returns a Presence on this backend, as one more chat node would
	// hold (for Redis: a new client).
	Node func() presence.Presence
	// Sleep lets d pass on the backend's clock (a real sleep for Redis, a
	// fake clock's advance for Memory).
	Sleep func(d time.Duration)
}

// Run runs the suite. newBackend is called once or more per subtest; each
// call must give a backend isolated from every other.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	fresh := func(t *testing.T) (Backend, presence.Presence) {
		t.Helper()
		t.Parallel()
		b := newBackend(t)
		return b, b.Node()
	}

	t.Run("FirstAndLastWithTwoConns", func(t *testing.T) {
		_, p := fresh(t)
		add(t, p, "a", "ann", "n1:1", true)
		add(t, p, "a", "ann", "n2:7", false)
		add(t, p, "a", "ann", "n1:1", false) // a retried Add is not an arrival
		online(t, p, "a", "ann")
		remove(t, p, "a", "ann", "n1:1", false)
		remove(t, p, "a", "ann", "n1:1", false) // not there any more
		online(t, p, "a", "ann")
		remove(t, p, "a", "ann", "n2:7", true)
		online(t, p, "a")
		add(t, p, "a", "ann", "n1:2", true) // back: an arrival again
	})

	t.Run("RemoveUnknownEntryIsNotLast", func(t *testing.T) {
		_, p := fresh(t)
		remove(t, p, "a", "ann", "n1:1", false)
		add(t, p, "a", "ann", "n1:1", true)
		remove(t, p, "a", "ann", "n1:2", false) // another conn of the same user
		remove(t, p, "a", "bob", "n1:1", false) // the conn under another user
		online(t, p, "a", "ann")
	})

	t.Run("OnlineSortedAndDistinct", func(t *testing.T) {
		_, p := fresh(t)
		online(t, p, "nobody-here")
		for i, c := range []struct {
			user  string
			first bool
		}{{"cat", true}, {"ann", true}, {"bob", true}, {"ann", false}, {"cat", false}} {
			add(t, p, "a", c.user, fmt.Sprintf("n1:%d", i), c.first)
		}
		online(t, p, "a", "ann", "bob", "cat")
	})

	t.Run("TwoNodesShareEntries", func(t *testing.T) {
		b, p1 := fresh(t)
		p2 := b.Node()
		add(t, p1, "a", "ann", "n1:1", true)
		add(t, p2, "a", "ann", "n2:1", false)
		online(t, p2, "a", "ann")
		remove(t, p2, "a", "ann", "n1:1", false)
		remove(t, p1, "a", "ann", "n2:1", true)
		online(t, p1, "a")
	})

	t.Run("EntriesExpire", func(t *testing.T) {
		b, p := fresh(t)
		add(t, p, "a", "ann", "n1:1", true)
		b.Sleep(b.Expiry / 4)
		online(t, p, "a", "ann")
		expire(t, p, "a")
		b.Sleep(b.Expiry)
		online(t, p, "a") // expired, not yet swept
		expire(t, p, "a", "ann")
		expire(t, p, "a") // reported once
		remove(t, p, "a", "ann", "n1:1", false)
		online(t, p, "a")
	})

	t.Run("RefreshKeepsAlive", func(t *testing.T) {
		b, p := fresh(t)
		add(t, p, "a", "ann", "n1:1", true)
		add(t, p, "b", "ann", "n1:2", true)
		add(t, p, "a", "bob", "n1:3", true)
		for range 6 { // 1.5 expiries
			b.Sleep(b.Expiry / 4)
			refresh(t, p, presence.Entry{Room: "a", User: "ann", Conn: "n1:1"}, presence.Entry{Room: "b", User: "ann", Conn: "n1:2"})
		}
		online(t, p, "a", "ann") // bob's entry expired
		online(t, p, "b", "ann")
		expire(t, p, "a", "bob")
		expire(t, p, "b")
		b.Sleep(b.Expiry + b.Expiry/4)
		online(t, p, "a")
		expire(t, p, "a", "ann")
		expire(t, p, "b", "ann")
	})

	t.Run("RefreshReaddsSweptEntries", func(t *testing.T) {
		b, p := fresh(t)
		add(t, p, "a", "ann", "n1:1", true)
		b.Sleep(b.Expiry + b.Expiry/4)
		expire(t, p, "a", "ann")
		refresh(t, p, presence.Entry{Room: "a", User: "ann", Conn: "n1:1"})
		online(t, p, "a", "ann")
		add(t, p, "a", "ann", "n1:2", false)
		remove(t, p, "a", "ann", "n1:1", false)
		remove(t, p, "a", "ann", "n1:2", true)
		refresh(t, p) // nothing to refresh
	})

	t.Run("OnlineExcludesExpiredButUnswept", func(t *testing.T) {
		b, p := fresh(t)
		add(t, p, "a", "ann", "n1:1", true)
		b.Sleep(b.Expiry / 2)
		add(t, p, "a", "bob", "n1:2", true)
		b.Sleep(b.Expiry/2 + b.Expiry/10)
		online(t, p, "a", "bob") // ann's entry is stored but expired
		expire(t, p, "a", "ann")
	})

	t.Run("ArrivalAfterExpiryBeforeSweep", func(t *testing.T) {
		b, p := fresh(t)
		add(t, p, "a", "ann", "n1:1", true)
		b.Sleep(b.Expiry + b.Expiry/4)
		add(t, p, "a", "ann", "n1:2", true) // no live entry: an arrival
		online(t, p, "a", "ann")
		expire(t, p, "a") // n1:1 swept, but ann is still here
		online(t, p, "a", "ann")
		remove(t, p, "a", "ann", "n1:2", true)
	})

	t.Run("RemoveSweepsTheUsersExpiredEntries", func(t *testing.T) {
		b, p := fresh(t)
		add(t, p, "a", "ann", "n1:1", true)
		add(t, p, "a", "bob", "n1:3", true)
		b.Sleep(b.Expiry + b.Expiry/4)
		add(t, p, "a", "ann", "n1:2", true)
		// Removing ann's live entry takes her expired one with it, so the
		// departure is reported here and not again by Expire.
		remove(t, p, "a", "ann", "n1:2", true)
		expire(t, p, "a", "bob")
		online(t, p, "a")
	})

	t.Run("RemoveOfExpiredEntryReportsTheDeparture", func(t *testing.T) {
		b, p := fresh(t)
		add(t, p, "a", "ann", "n1:1", true)
		add(t, p, "a", "ann", "n1:2", false)
		b.Sleep(b.Expiry + b.Expiry/4)
		remove(t, p, "a", "ann", "n1:1", true) // and n1:2 swept with it
		expire(t, p, "a")
		remove(t, p, "a", "ann", "n1:2", false)
	})

	t.Run("RoomsIndependent", func(t *testing.T) {
		b, p := fresh(t)
		add(t, p, "a", "ann", "n1:1", true)
		add(t, p, "b", "ann", "n1:1", true) // the same conn in two rooms
		add(t, p, "b", "bob", "n1:2", true)
		remove(t, p, "a", "ann", "n1:1", true)
		online(t, p, "a")
		online(t, p, "b", "ann", "bob")
		b.Sleep(b.Expiry + b.Expiry/4)
		expire(t, p, "a")
		online(t, p, "b")
		expire(t, p, "b", "ann", "bob")
	})

	t.Run("BackendsIsolated", func(t *testing.T) {
		b1, p1 := fresh(t)
		p2 := newBackend(t).Node()
		add(t, p1, "a", "ann", "n1:1", true)
		online(t, p2, "a")
		add(t, p2, "a", "ann", "n1:2", true)
		remove(t, p2, "a", "ann", "n1:1", false)
		remove(t, p2, "a", "ann", "n1:2", true)
		online(t, p1, "a", "ann")
		b1.Sleep(b1.Expiry + b1.Expiry/4)
		add(t, p2, "a", "bob", "n1:3", true)
		expire(t, p2, "a")
		expire(t, p1, "a", "ann")
	})

	t.Run("ErrInvalidEntry", func(t *testing.T) {
		_, p := fresh(t)
		ctx := context.Background()
		bad := []presence.Entry{
			{Room: "", User: "ann", Conn: "c"}, {Room: "a", User: "", Conn: "c"}, {Room: "a", User: "ann", Conn: ""},
			{Room: "a", User: "an\x00n", Conn: "c"}, {Room: "a", User: "ann", Conn: "c\x00"},
		}
		for _, e := range bad {
			if _, err := p.Add(ctx, e.Room, e.User, e.Conn); !errors.Is(err, presence.ErrInvalidEntry) {
				t.Errorf("Add %q: got %v, want ErrInvalidEntry", e, err)
			}
			if _, err := p.Remove(ctx, e.Room, e.User, e.Conn); !errors.Is(err, presence.ErrInvalidEntry) {
				t.Errorf("Remove %q: got %v, want ErrInvalidEntry", e, err)
			}
			if err := p.Refresh(ctx, []presence.Entry{{Room: "a", User: "ann", Conn: "c"}, e}); !errors.Is(err, presence.ErrInvalidEntry) {
				t.Errorf("Refresh %q: got %v, want ErrInvalidEntry", e, err)
			}
		}
		if _, err := p.Online(ctx, ""); !errors.Is(err, presence.ErrInvalidEntry) {
			t.Errorf("Online of an empty room: got %v", err)
		}
		if _, err := p.Expire(ctx, ""); !errors.Is(err, presence.ErrInvalidEntry) {
			t.Errorf("Expire of an empty room: got %v", err)
		}
		online(t, p, "a") // a refused Refresh wrote nothing
	})

	t.Run("EachDepartureReportedOnceAcrossRacingNodes", func(t *testing.T) {
		b, p := fresh(t)
		const users = 40
		for i := range users {
			u := fmt.Sprintf("u%02d", i)
			add(t, p, "a", u, u+":c0", true)
			if i%2 == 0 {
				add(t, p, "a", u, u+":c1", false)
			}
		}
		b.Sleep(b.Expiry + b.Expiry/4)
		// Arrivals after the expiry: never reported gone.
		add(t, p, "a", "u00", "u00:c2", true)
		add(t, p, "a", "zed", "zed:c0", true)

		const nodes = 6
		var (
			mu       sync.Mutex
			reported = make(map[string]int)
			wg       sync.WaitGroup
			start    = make(chan struct{})
		)
		report := func(users ...string) {
			mu.Lock()
			defer mu.Unlock()
			for _, u := range users {
				reported[u]++
			}
		}
		for n := range nodes {
			node := b.Node()
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ctx := context.Background()
				if n%3 == 2 {
					// This node removes its users' connections as they close,
					// racing the sweeps of the others.
					for i := n; i < users; i += nodes {
						u := fmt.Sprintf("u%02d", i)
						last, err := node.Remove(ctx, "a", u, u+":c0")
						if err != nil {
							t.Errorf("remove: %v", err)
							return
						}
						if last {
							report(u)
						}
					}
					return
				}
				for range 3 {
					gone, err := node.Expire(ctx, "a")
					if err != nil {
						t.Errorf("expire: %v", err)
						return
					}
					report(gone...)
				}
			}()
		}
		close(start)
		wg.Wait()
		for i := range users {
			u := fmt.Sprintf("u%02d", i)
			want := 1
			if u == "u00" {
				want = 0
			}
			if reported[u] != want {
				t.Errorf("%s's departure reported %d times, want %d", u, reported[u], want)
			}
		}
		if reported["zed"] != 0 {
			t.Errorf("zed, who is online, was reported gone")
		}
		online(t, p, "a", "u00", "zed")
	})
}

func add(t *testing.T, p presence.Presence, room, user, conn string, wantFirst bool) {
	t.Helper()
	first, err := p.Add(context.Background(), room, user, conn)
	if err != nil {
		t.Fatalf("add %s %s %s: %v", room, user, conn, err)
	}
	if first != wantFirst {
		t.Fatalf("add %s %s %s: first = %v, want %v", room, user, conn, first, wantFirst)
	}
}

func remove(t *testing.T, p presence.Presence, room, user, conn string, wantLast bool) {
	t.Helper()
	last, err := p.Remove(context.Background(), room, user, conn)
	if err != nil {
		t.Fatalf("remove %s %s %s: %v", room, user, conn, err)
	}
	if last != wantLast {
		t.Fatalf("remove %s %s %s: last = %v, want %v", room, user, conn, last, wantLast)
	}
}

func refresh(t *testing.T, p presence.Presence, entries ...presence.Entry) {
	t.Helper()
	if err := p.Refresh(context.Background(), entries); err != nil {
		t.Fatalf("refresh %v: %v", entries, err)
	}
}

func online(t *testing.T, p presence.Presence, room string, want ...string) {
	t.Helper()
	got, err := p.Online(context.Background(), room)
	if err != nil {
		t.Fatalf("online %s: %v", room, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("online %s = %q, want %q", room, got, want)
	}
}

func expire(t *testing.T, p presence.Presence, room string, want ...string) {
	t.Helper()
	got, err := p.Expire(context.Background(), room)
	if err != nil {
		t.Fatalf("expire %s: %v", room, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("expire %s gone = %q, want %q", room, got, want)
	}
}
