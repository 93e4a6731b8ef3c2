package main

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/testrig"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// setRepublish turns the stream's live feed off or on, so that an event is
// stored but never republished: a real lost message on the live path.
func setRepublish(t *testing.T, js *testrig.JetStream, on bool) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	j, err := natsjs.New(js.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := j.Stream(ctx, "CHAT")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if on {
		cfg.RePublish = &natsjs.RePublish{Source: "chat.room.>", Destination: "chat.live.>"}
	} else {
		cfg.RePublish = nil
	}
	if _, err := j.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("update stream: %v", err)
	}
}

// metric reads a metric's value from /metrics (labels ignored); -1 if the
// node does not export it.
func metric(t *testing.T, n *testNode, name string) int {
	t.Helper()
	resp, err := http.Get("http://" + n.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? (\d+)`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.Atoi(string(m[2]))
	return v
}

func TestLiveGapRepaired(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	// A long tail-check interval, so the gap is found by the next event.
	n := startNode(t, js.URL, "", "--tail-check-interval", "1h")
	alice, bob := dial(t, n, "alice"), dial(t, n, "bob")
	create(t, alice, "gappy", false)
	ctx := ctxT(t, 30*time.Second)
	if _, err := alice.Join(ctx, "gappy"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Join(ctx, "gappy"); err != nil {
		t.Fatal(err)
	}
	go discard(alice)
	if _, err := alice.Send(ctx, "gappy", "before"); err != nil {
		t.Fatal(err)
	}
	setRepublish(t, js, false)
	lost, err := alice.Send(ctx, "gappy", "lost on the live path")
	if err != nil {
		t.Fatal(err)
	}
	setRepublish(t, js, true)
	if _, err := alice.Send(ctx, "gappy", "after"); err != nil {
		t.Fatal(err)
	}
	got := collect(t, bob, "gappy", 3, 10*time.Second)
	if got[1].Seq != lost.Seq || got[1].Text != "lost on the live path" || got[2].Prev != lost.Seq {
		t.Fatalf("got %+v", got)
	}
	if metric(t, n, "jetchat_gaps_repaired_total") < 1 {
		t.Fatal("gap repair not counted")
	}
	noClientErrors(t, bob)
}

func TestLostTailRepaired(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	n := startNode(t, js.URL, "", "--tail-check-interval", "200ms")
	alice, bob := dial(t, n, "alice"), dial(t, n, "bob")
	create(t, alice, "tail", false)
	ctx := ctxT(t, 30*time.Second)
	if _, err := alice.Join(ctx, "tail"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Join(ctx, "tail"); err != nil {
		t.Fatal(err)
	}
	go discard(alice)
	setRepublish(t, js, false)
	lost, err := alice.Send(ctx, "tail", "the last word, never republished")
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, bob, "tail", 1, 10*time.Second) // no later event reveals it: the tail check must
	if got[0].Seq != lost.Seq {
		t.Fatalf("got %+v", got[0])
	}
	if metric(t, n, "jetchat_tail_repairs_total") < 1 {
		t.Fatal("tail repair not counted")
	}
	setRepublish(t, js, true)
	noClientErrors(t, bob)
}

// TestPoisonEventKeepsChain: an event published by hand that is not a valid
// event reaches clients as an "invalid" placeholder, so their chain holds,
// and nothing else about the room changes.
func TestPoisonEventKeepsChain(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	n := startNode(t, js.URL, "", "--projector")
	alice, bob := dial(t, n, "alice"), dial(t, n, "bob")
	create(t, alice, "poison", false)
	ctx := ctxT(t, 30*time.Second)
	if _, err := alice.Join(ctx, "poison"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Join(ctx, "poison"); err != nil {
		t.Fatal(err)
	}
	go discard(alice)
	j, _ := natsjs.New(js.Connect(t))
	for _, body := range []string{"{not json", `{"type":"message.sent","room":"other","author":"x","id":"1","text":"cross-room"}`} {
		if _, err := j.Publish(ctx, "chat.room.poison", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.Send(ctx, "poison", "fine"); err != nil {
		t.Fatal(err)
	}
	var types []chat.EventType
	for len(types) < 3 {
		select {
		case ev := <-bob.Events():
			types = append(types, ev.Type)
		case err := <-bob.Errors():
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal("timeout")
		}
	}
	if types[0] != chat.Invalid || types[1] != chat.Invalid || types[2] != chat.MessageSent {
		t.Fatalf("types %v", types)
	}
	if metric(t, n, "jetchat_invalid_events_total") != 2 {
		t.Fatal("invalid events not counted")
	}
	// The projector skips them too, counts them, and goes on.
	for deadline := time.Now().Add(10 * time.Second); metric(t, n, "jetchat_projection_invalid_events_total") != 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("projector did not count the invalid events")
		}
	}
}
