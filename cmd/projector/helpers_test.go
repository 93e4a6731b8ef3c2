package main

import (
	"context"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/history"
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

// freshFold folds the whole log up to last into an in-memory history and
// returns its dump: what any projection of that log must equal.
func freshFold(t *testing.T, feed *jetstream.Feed, last uint64) []history.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fresh := history.NewMemory()
	go func() { _ = projections.Run(ctx, feed, "check", fresh, 1000) }()
	waitPosition(t, fresh, last, "the fresh fold")
	want, err := fresh.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return want
}
