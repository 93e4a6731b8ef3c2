package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/reads/sqlite"
)

// BenchmarkUnread100k: the latency of one user's marker with its unread
// count in a room of 100,000 messages by others, the marker at random
// positions (most counts hit the MaxUnread cap, the rest count fewer).
func BenchmarkUnread100k(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "p.db"), "reads_v1")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	batch := []chat.Event{{Seq: 1, ID: "c", Type: chat.RoomCreated, Room: "big", Author: "ann", Name: "big", Time: time.Unix(0, 1)}}
	for i := 2; i <= n+1; i++ {
		batch = append(batch, chat.Event{Seq: uint64(i), ID: fmt.Sprint("m", i), Type: chat.MessageSent, Room: "big", Author: "bob", Time: time.Unix(0, int64(i)), Text: "x"})
		if len(batch) == 4000 || i == n+1 {
			if err := s.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.Logf("built %d messages in %s", n, time.Since(start).Round(time.Millisecond))
	// Move ann's marker as the benchmark goes, through read.moved events
	// applied outside the timer.
	seq := uint64(n + 1)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%100 == 0 {
			b.StopTimer()
			seq++
			target := uint64(1 + (i*7919)%n)
			if err := s.Apply(ctx, []chat.Event{{Seq: seq, ID: fmt.Sprint("r", seq), Type: chat.ReadMoved, Room: "big", Author: "ann", Target: target, Time: time.Unix(0, int64(seq))}}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		t0 := time.Now()
		ms, err := s.Markers(ctx, "ann", []string{"big"})
		if err != nil || ms["big"].Unread == 0 && ms["big"].Read <= n {
			b.Fatal(err, ms)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
