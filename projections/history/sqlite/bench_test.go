package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/history/sqlite"
)

// fill applies n message.sent events to room in batches of 1,000, as the
// projector does, and returns the time it took.
func fill(b *testing.B, s *sqlite.Store, room string, from, n int) time.Duration {
	ctx := context.Background()
	start := time.Now()
	batch := make([]chat.Event, 0, 1000)
	for i := from; i < from+n; i++ {
		batch = append(batch, chat.Event{Seq: uint64(i + 1), ID: fmt.Sprint("m", i), Type: chat.MessageSent, Room: room, Author: "u", Time: time.Unix(0, int64(i)).UTC(), Text: "a message of ordinary length, about sixty bytes long, no more"})
		if len(batch) == cap(batch) || i == from+n-1 {
			if err := s.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return time.Since(start)
}

// BenchmarkApply: projector throughput into SQLite (message.sent events in
// batches of 1,000, one transaction each).
func BenchmarkApply(b *testing.B) {
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "p.db"), "history_v1")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	d := fill(b, s, "room", 0, b.N)
	b.ReportMetric(float64(b.N)/d.Seconds(), "events/s")
}

// BenchmarkPage1M: history page latency (50 messages before a random
// position) in a room of 1,000,000 messages. Run with -benchtime=Nx: the
// room is built once per run.
func BenchmarkPage1M(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "p.db"), "history_v1")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	d := fill(b, s, "big", 0, n)
	b.Logf("built %d messages in %s (%.0f events/s)", n, d.Round(time.Millisecond), n/d.Seconds())
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		before := uint64(1 + (i*7919)%n)
		t0 := time.Now()
		page, err := s.Messages(ctx, "big", history.Page{Before: before + 1, Limit: 50})
		if err != nil || len(page) == 0 {
			b.Fatal(err, len(page))
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
