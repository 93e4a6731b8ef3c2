package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/pkg/testrig"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/stores"
)

// TestRebuildUnderLoad: while events are appended and readers page history,
// `projector rebuild history` builds history_v2, switches readers and drops
// history_v1; every page read meanwhile is consistent, and the result equals
// a fresh fold of the whole log.
func TestRebuildUnderLoad(t *testing.T) {
	js := testrig.RunJetStream(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log, err := jetstream.Open(ctx, js.Connect(t), jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rooms := []string{"a", "b", "c"}
	var appended atomic.Int64
	appendOne := func(i int) {
		room := rooms[i%len(rooms)]
		ev := chat.Event{ID: fmt.Sprint("m", i), Type: chat.MessageSent, Room: room, Author: "u", Time: time.Now().UTC(), Text: fmt.Sprint("message ", i)}
		seq, _, err := log.Append(ctx, ev, false)
		if err != nil {
			t.Error(err)
			return
		}
		if i%10 == 0 { // edit some, to exercise folding across batches
			edit := chat.Event{ID: fmt.Sprint("e", i), Type: chat.MessageEdited, Room: room, Author: "u", Time: time.Now().UTC(), Text: "edited", Target: seq}
			if _, _, err := log.Append(ctx, edit, false); err != nil {
				t.Error(err)
			}
		}
		appended.Add(1)
	}
	for i := 0; i < 3000; i++ {
		appendOne(i)
	}

	// What a chatd does: project the live version and serve reads from it.
	st, err := stores.Open(stores.Config{SQLiteDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg, err := log.Versions(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		// Through a Shared feed, as chatd's in-process projector: the new
		// version starts behind its consumer.
		_ = projections.Follow(ctx, reg, log.Feed(nil).Shared(projections.Durable("embedded")), "history", func(v string) (projections.Store, error) { return st.History(ctx, v) }, 500, nil)
	}()
	live, err := projections.FollowLive(ctx, reg, "history", func(v string) (history.Store, error) { return st.History(ctx, v) }, nil)
	if err != nil {
		t.Fatal(err)
	}

	first, _ := log.Feed(nil).LastSeq(ctx)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if p, _ := live.Store().Position(ctx); p >= first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("history_v1 never caught up")
		}
	}

	// Load: more events, and readers checking every page.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 3000; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			appendOne(i)
			time.Sleep(time.Millisecond)
		}
	}()
	var reads, empty atomic.Int64
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			time.Sleep(2 * time.Millisecond)
			page, err := live.Store().Messages(ctx, "a", history.Page{Limit: 50})
			if err != nil {
				continue // the store being switched may answer an error once; never a wrong page
			}
			reads.Add(1)
			if len(page) == 0 {
				empty.Add(1)
			}
			for i := 1; i < len(page); i++ {
				if page[i].Seq <= page[i-1].Seq || page[i].Room != "a" {
					t.Errorf("inconsistent page: %d then %d", page[i-1].Seq, page[i].Seq)
					return
				}
			}
		}
	}()

	var out bytes.Buffer
	err = run(ctx, []string{"--nats-url", js.URL, "--data-dir", dir, "--grace", "500ms", "--batch", "500", "rebuild", "history"},
		func(string) string { return "" }, io.Discard, &out)
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out.String())
	}
	close(stop)
	wg.Wait()
	if !strings.Contains(out.String(), "readers switched to history_v2") || !strings.Contains(out.String(), "ev/s") {
		t.Fatalf("rebuild output:\n%s", out.String())
	}
	if live.Version() != "history_v2" {
		t.Fatalf("readers on %s", live.Version())
	}
	if reads.Load() == 0 || empty.Load() > 0 {
		t.Fatalf("reads=%d empty=%d: readers saw no data during the rebuild", reads.Load(), empty.Load())
	}

	// After catch-up, history_v2 equals a fresh fold of the same log.
	feed := log.Feed(nil)
	last, _ := feed.LastSeq(ctx)
	waitPosition(t, live.Store(), last, "history_v2")
	want := freshFold(t, feed, last, history.NewMemory())
	got, _ := live.Store().Dump(ctx)
	if len(got) != int(appended.Load()) || !reflect.DeepEqual(got, want) {
		t.Fatalf("history_v2 (%d messages) differs from a fresh fold (%d; appended %d)", len(got), len(want), appended.Load())
	}

	var status bytes.Buffer
	if err := run(ctx, []string{"--nats-url", js.URL, "--data-dir", dir, "status"}, func(string) string { return "" }, &status, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(status.String(), "history_v2") {
		t.Fatalf("status:\n%s", status.String())
	}
}
