package main

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/projections"
)

// waitPosition waits until store has applied everything up to last.
func waitPosition(t *testing.T, store projections.Store, last uint64, what string) {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		p, _ := store.Position(ctx)
		if p >= last {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s stuck at %d of %d", what, p, last)
		}
	}
}

// dumper is a projection store that can list all its rows.
type dumper[D any] interface {
	projections.Store
	Dump(ctx context.Context) (D, error)
}

// freshFold folds the whole log up to last into fresh, an empty in-memory
// store, and returns its dump: what any projection of that log must equal.
func freshFold[D any](t *testing.T, feed *jetstream.Feed, last uint64, fresh dumper[D]) D {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = projections.Run(ctx, feed, "check", fresh, 1000) }()
	waitPosition(t, fresh, last, "the fresh fold")
	want, err := fresh.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	_ = feed.DeleteConsumer(context.Background(), projections.Durable("check"))
	return want
}

// sameAsFreshFold waits until store has applied the log up to last and
// checks that its dump equals a fresh fold into the empty store fresh.
func sameAsFreshFold[D any](t *testing.T, feed *jetstream.Feed, last uint64, store, fresh dumper[D]) D {
	t.Helper()
	waitPosition(t, store, last, "the projector")
	want := freshFold(t, feed, last, fresh)
	got, err := store.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%T differs from a fresh fold:\n got %s\nwant %s", store, firstLines(got), firstLines(want))
	}
	return got
}

// firstLines shows the start of a dump.
func firstLines(v any) string {
	s := fmt.Sprintf("%+v", v)
	if len(s) > 2000 {
		s = s[:2000] + "..."
	}
	return s
}
