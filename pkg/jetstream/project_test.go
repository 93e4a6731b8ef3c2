package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

func TestFeed(t *testing.T) {
	t.Parallel()
	l, _ := openLog(t)
	ctx := context.Background()
	for i := 0; i < 300; i++ {
		if _, _, err := l.Append(ctx, msg(fmt.Sprint("r", i%7), fmt.Sprint("m", i), "x"), false); err != nil {
			t.Fatal(err)
		}
	}
	feed := l.Feed(nil)
	var mu sync.Mutex
	var got []uint64
	failures := 2
	run := func(position uint64, until int) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- feed.Run(rctx, "proj-test", position, 64, func(_ context.Context, evs []chat.Event) error {
				mu.Lock()
				defer mu.Unlock()
				if failures > 0 {
					failures-- // a store that is down: the same batch must come again
					return errors.New("store down")
				}
				for _, ev := range evs {
					if len(got) > 0 && ev.Seq <= got[len(got)-1] {
						continue // already applied: the store skips it
					}
					got = append(got, ev.Seq)
				}
				return nil
			})
		}()
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n >= until {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("projected %d of %d", n, until)
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	run(0, 300)
	// Restart from the store's position while more events arrive.
	for i := 300; i < 400; i++ {
		if _, _, err := l.Append(ctx, msg("r0", fmt.Sprint("m", i), "x"), false); err != nil {
			t.Fatal(err)
		}
	}
	run(got[len(got)-1], 400)
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("gap or reorder at %d: %d after %d", i, got[i], got[i-1])
		}
	}
	last, _ := feed.LastSeq(ctx)
	if got[len(got)-1] != last || len(got) != 400 {
		t.Fatalf("projected up to %d (%d events), stream at %d", got[len(got)-1], len(got), last)
	}
}

// TestFeedPoison: events published by hand that are not valid events, or
// name a room that is not valid, reach the projection as chat.Invalid (so
// its position passes them), are counted, and nothing else stops.
func TestFeedPoison(t *testing.T) {
	t.Parallel()
	l, srv := openLog(t)
	ctx := context.Background()
	nc := srv.Connect(t)
	for subj, body := range map[string]string{
		"chat.room.ok":   "{garbage",
		"chat.room.BAD!": `{"id":"1","type":"message.sent","room":"BAD!","author":"x","text":"hi"}`,
		"chat.room.ok2":  `{"id":"1","type":"message.sent","room":"other","author":"x","text":"cross-room"}`,
	} {
		if err := nc.Publish(subj, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := l.Append(ctx, msg("ok", "good", "fine"), false); err != nil {
		t.Fatal(err)
	}
	feed := l.Feed(nil)
	var mu sync.Mutex
	var got []chat.Event
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = feed.Run(rctx, "poison", 0, 10, func(_ context.Context, evs []chat.Event) error {
			mu.Lock()
			got = append(got, evs...)
			mu.Unlock()
			return nil
		})
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d events", n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	invalid := 0
	for _, ev := range got {
		if ev.Type == chat.Invalid {
			invalid++
			if ev.Seq == 0 {
				t.Fatal("an invalid event lost its position")
			}
		} else if ev.Room != "ok" || ev.Text != "fine" {
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	if invalid != 3 || feed.Invalid.Load() != 3 {
		t.Fatalf("invalid=%d counted=%d, want 3", invalid, feed.Invalid.Load())
	}
}
