package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/client"
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
	ctx := ctxT(t, 30*time.Second)
	// One tail check asks about every room at once: two lose their last
	// event, one loses nothing.
	rooms := []string{"tail", "tail-2", "quiet"}
	for _, room := range rooms {
		create(t, alice, room, false)
		if _, err := alice.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
	}
	go discard(alice)
	if _, err := alice.Send(ctx, "quiet", "delivered live"); err != nil {
		t.Fatal(err)
	}
	setRepublish(t, js, false)
	var lost []client.Ack
	for _, room := range rooms[:2] {
		ack, err := alice.Send(ctx, room, "the last word, never republished")
		if err != nil {
			t.Fatal(err)
		}
		lost = append(lost, ack)
	}
	// No later event reveals them: the tail check must. Bob's events come
	// in one stream; collect each room's message.sent.
	got := map[string][]chat.Event{}
	deadline := time.After(10 * time.Second)
	for len(got["tail"]) < 1 || len(got["tail-2"]) < 1 || len(got["quiet"]) < 1 {
		select {
		case ev := <-bob.Events():
			if ev.Type == chat.MessageSent {
				got[ev.Room] = append(got[ev.Room], ev)
			}
		case <-deadline:
			t.Fatalf("got %v; want each room's message, the lost ones %v", got, lost)
		}
	}
	for i, room := range rooms[:2] {
		if got[room][0].Seq != lost[i].Seq {
			t.Fatalf("%s: got %+v, want seq %d", room, got[room][0], lost[i].Seq)
		}
	}
	if n := metric(t, n, "jetchat_tail_repairs_total"); n < 2 {
		t.Fatalf("%d tail repairs counted, want 2", n)
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

// A resume within the node's replay window is served from the room's recent
// frames in memory, one beyond it from the log; both exactly.
func TestResumeFromMemoryAndLog(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	n := startNode(t, js.URL, "", "--replay-window", "16")
	alice := dial(t, n, "alice")
	create(t, alice, "mem", false)
	ctx := ctxT(t, 30*time.Second)
	for _, c := range []*client.Client{alice, dial(t, n, "bob"), dial(t, n, "carol")} {
		if _, err := c.Join(ctx, "mem"); err != nil { // members, so that resuming appends no member.joined
			t.Fatal(err)
		}
		if c != alice {
			_ = c.Close()
		}
	}
	go discard(alice)
	var sent []uint64
	send := func(k int) {
		for i := range k {
			ack, err := alice.Send(ctx, "mem", fmt.Sprint("m", len(sent), i))
			if err != nil {
				t.Fatal(err)
			}
			sent = append(sent, ack.Seq)
		}
	}
	send(5)
	since := sent[4]
	resume := func(user string, missed int) (fromMemory, replayed int) {
		t.Helper()
		mem0, all0 := metric(t, n, "jetchat_replayed_from_memory_total"), metric(t, n, "jetchat_replayed_total")
		c := dial(t, n, user)
		type res struct {
			j   client.Joined
			err error
		}
		joined := make(chan res, 1)
		go func() { j, err := c.Join(ctx, "mem", client.Since(since)); joined <- res{j, err} }()
		got := collect(t, c, "mem", missed, 10*time.Second)
		r := <-joined
		if r.err != nil || !r.j.Recovered || r.j.Replayed != missed {
			t.Fatalf("%s: join since %d: %+v %v; want recovered, %d replayed", user, since, r.j, r.err, missed)
		}
		if fmt.Sprint(seqs(got)) != fmt.Sprint(sent[5:]) {
			t.Fatalf("%s: replayed %v, want %v", user, seqs(got), sent[5:])
		}
		noClientErrors(t, c)
		return metric(t, n, "jetchat_replayed_from_memory_total") - mem0, metric(t, n, "jetchat_replayed_total") - all0
	}
	send(10) // 10 missed: within the window of 16
	if mem, all := resume("bob", 10); mem != 10 || all != 10 {
		t.Fatalf("bob's 10 missed events: %d of %d replayed from memory, want all 10", mem, all)
	}
	send(30) // 40 missed: beyond it
	if mem, all := resume("carol", 40); mem != 0 || all != 40 {
		t.Fatalf("carol's 40 missed events: %d of %d replayed from memory, want 0 (from the log)", mem, all)
	}
}

// The rooms' recent frames together stay within --replay-memory: a room that
// delivers past it trims itself to an equal share, and the tail check trims
// the rooms that went quiet holding more. A resume beyond what a room kept
// comes from the log, exactly.
func TestReplayMemoryIsCapped(t *testing.T) {
	t.Parallel()
	const budget = 16 << 10
	text := strings.Repeat("x", 1000) // frames of about 1.3 KiB
	type rig struct {
		n    *testNode
		held func() int
		fill func(room string, k int) []uint64
	}
	setup := func(t *testing.T, args ...string) rig {
		n := startNode(t, "", "", append([]string{"--replay-memory", "16KiB"}, args...)...)
		alice := dial(t, n, "alice")
		go discard(alice)
		ctx := ctxT(t, 30*time.Second)
		return rig{n: n,
			held: func() int { return metric(t, n, "jetchat_replay_memory_bytes") },
			fill: func(room string, k int) []uint64 {
				t.Helper()
				create(t, alice, room, false)
				if _, err := alice.Join(ctx, room); err != nil {
					t.Fatal(err)
				}
				var sent []uint64
				for i := range k {
					ack, err := alice.Send(ctx, room, fmt.Sprint(i, text))
					if err != nil {
						t.Fatal(err)
					}
					sent = append(sent, ack.Seq)
				}
				return sent
			}}
	}

	t.Run("ARoomTrimsItselfAsItDelivers", func(t *testing.T) {
		t.Parallel()
		r := setup(t, "--tail-check-interval", "1h")
		sent := r.fill("cap-a", 30) // about 40 KiB uncapped
		if got := r.held(); got > budget || got < budget/2 {
			t.Fatalf("a room of 30 messages holds %d bytes, want at most %d (and its whole share, more than %d)", got, budget, budget/2)
		}
		resumeExactly(t, r.n, "cap-a", sent)
	})
	t.Run("TheTailCheckTrimsQuietRooms", func(t *testing.T) {
		t.Parallel()
		r := setup(t)
		sent := r.fill("cap-a", 10) // about 13 KiB: under the cap, all kept
		if got := r.held(); got < 10<<10 || got > budget {
			t.Fatalf("one room of 10 messages holds %d bytes, want all of them, under %d", got, budget)
		}
		r.fill("cap-b", 10) // past the cap: cap-b keeps its share, cap-a (quiet) more until the tail check
		deadline := time.Now().Add(10 * time.Second)
		for r.held() > budget {
			if time.Now().After(deadline) {
				t.Fatalf("rooms hold %d bytes of frames, want at most %d", r.held(), budget)
			}
			time.Sleep(50 * time.Millisecond)
		}
		resumeExactly(t, r.n, "cap-a", sent)
	})
}

// resumeExactly joins room as a new user since the first of the messages
// sent and checks that the others are replayed, in order.
func resumeExactly(t *testing.T, n *testNode, room string, sent []uint64) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	bob := dial(t, n, "bob")
	type res struct {
		j   client.Joined
		err error
	}
	joined := make(chan res, 1)
	go func() { j, err := bob.Join(ctx, room, client.Since(sent[0])); joined <- res{j, err} }()
	got := collect(t, bob, room, len(sent)-1, 10*time.Second)
	// Replayed: the messages after since, and bob's member.joined.
	if r := <-joined; r.err != nil || !r.j.Recovered || r.j.Replayed != len(sent) {
		t.Fatalf("join since the first message: %+v %v; want recovered, %d replayed", r.j, r.err, len(sent))
	}
	if fmt.Sprint(seqs(got)) != fmt.Sprint(sent[1:]) {
		t.Fatalf("replayed %v, want %v", seqs(got), sent[1:])
	}
	noClientErrors(t, bob)
}

func TestByteSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "65536": 65536, "64KiB": 64 << 10, "128MiB": 128 << 20, "2GiB": 2 << 30, "-1": -1} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "12x", "1.5MiB", "-2", "-1MiB", "MiB", "9999999999GiB", "64 KiB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, b)
		}
	}
}
