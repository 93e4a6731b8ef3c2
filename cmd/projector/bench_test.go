package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/pkg/testrig"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/stores"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// BenchmarkRebuildHistory: b.N events (message.sent over 100 rooms, one edit
// in ten) in the stream, then a rebuild of history into a new SQLite version
// from the first event, through a durable pull consumer: the projector's
// end-to-end rate. Run with -benchtime=1000000x for the 1M figure.
func BenchmarkRebuildHistory(b *testing.B) {
	js := testrig.RunJetStream(b)
	ctx := context.Background()
	nc := js.Connect(b)
	log, err := jetstream.Open(ctx, nc, jetstream.Config{})
	if err != nil {
		b.Fatal(err)
	}
	pub, _ := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(4096))
	start := time.Now()
	for i := 0; i < b.N; i++ {
		ev := chat.Event{ID: fmt.Sprint("m", i), Type: chat.MessageSent, Room: fmt.Sprint("r", i%100), Author: "u", Time: time.Now().UTC(), Text: "a message of ordinary length, about sixty bytes long, no more"}
		if i%10 == 9 {
			ev.Type, ev.Target, ev.Text = chat.MessageEdited, uint64(i), "edited"
		}
		body, _ := ev.MarshalBody()
		if _, err := pub.PublishAsync("chat.room."+ev.Room, body); err != nil {
			b.Fatal(err)
		}
	}
	<-pub.PublishAsyncComplete()
	b.Logf("appended %d events in %s", b.N, time.Since(start).Round(time.Millisecond))

	st, err := stores.Open(stores.Config{SQLiteDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	store, err := st.History(ctx, "history_v2")
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	b.ResetTimer()
	began := time.Now()
	if err := projections.CatchUp(ctx, log.Feed(nil), "history_v2", store, projections.DefaultBatch, nil); err != nil {
		b.Fatal(err)
	}
	d := time.Since(began)
	b.StopTimer()
	pos, _ := store.Position(ctx)
	b.ReportMetric(float64(pos)/d.Seconds(), "events/s")
	b.ReportMetric(d.Seconds(), "rebuild-s")
}
