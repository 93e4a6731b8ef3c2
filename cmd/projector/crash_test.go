package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/pkg/testrig"
	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/reads"
	"github.com/jetchat/jetchat/projections/rooms"
	"github.com/jetchat/jetchat/projections/stores"
)

// TestCrashSafety: the projector, as its own process, is killed with
// SIGKILL at random moments 10 times while 20,000 events flow; after it
// catches up, the projection equals a fresh fold of the same log.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a process")
	}
	js := testrig.RunJetStream(t)
	dir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "projector")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log, err := jetstream.Open(ctx, js.Connect(t), jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}

	// 20,000 events: messages, and edits, reactions and deletes of them.
	const total = 20000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var sent []uint64
		for r := range 5 {
			ev := chat.Event{ID: "c", Type: chat.RoomCreated, Room: fmt.Sprint("r", r), Author: "u0", Name: fmt.Sprint("Room ", r), Time: time.Now().UTC()}
			if _, _, err := log.Append(ctx, ev, true); err != nil {
				t.Error(err)
				return
			}
		}
		for i := 0; i < total; i++ {
			room := fmt.Sprint("r", i%5)
			ev := chat.Event{ID: fmt.Sprint("e", i), Room: room, Author: fmt.Sprint("u", i%3), Time: time.Now().UTC()}
			switch {
			case i%17 == 0:
				ev.Type, ev.User = chat.MemberJoined, ev.Author
			case i%19 == 0:
				ev.Type, ev.User = chat.MemberLeft, ev.Author
			case len(sent) > 10 && i%5 == 1:
				ev.Type, ev.Target = chat.ReadMoved, sent[len(sent)-1-rand.IntN(10)]
			case len(sent) > 10 && i%7 == 0:
				ev.Type, ev.Target, ev.Text = chat.MessageEdited, sent[rand.IntN(len(sent))], "edited"
			case len(sent) > 10 && i%11 == 0:
				ev.Type, ev.Target, ev.Emoji = chat.ReactionAdded, sent[rand.IntN(len(sent))], "👍"
			case len(sent) > 10 && i%13 == 0:
				ev.Type, ev.Target = chat.MessageDeleted, sent[rand.IntN(len(sent))]
			default:
				ev.Type, ev.Text = chat.MessageSent, fmt.Sprint("message ", i)
			}
			seq, _, err := log.Append(ctx, ev, false)
			if err != nil {
				t.Error(err)
				return
			}
			if ev.Type == chat.MessageSent {
				sent = append(sent, seq)
			}
			if i%500 == 0 {
				time.Sleep(100 * time.Millisecond) // keep events flowing across the kills
			}
		}
	}()

	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--nats-url", js.URL, "--data-dir", dir, "--batch", "300", "--log-level", "error", "run")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	for i := 0; i < 10; i++ {
		cmd := start()
		time.Sleep(time.Duration(150+rand.IntN(500)) * time.Millisecond)
		_ = cmd.Process.Kill() // SIGKILL: no chance to finish a batch or ack it
		_ = cmd.Wait()
	}
	wg.Wait()
	cmd := start()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	st, err := stores.Open(stores.Config{SQLiteDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hist, err := st.History(ctx, "history_v1")
	if err != nil {
		t.Fatal(err)
	}
	defer hist.Close()
	rs, err := st.Rooms(ctx, "rooms_v1")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	rd, err := st.Reads(ctx, "reads_v1")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	feed := log.Feed(nil)
	last, _ := feed.LastSeq(ctx)
	got := sameAsFreshFold(t, feed, last, hist, history.NewMemory())
	sameAsFreshFold(t, feed, last, rs, rooms.NewMemory())
	sameAsFreshFold(t, feed, last, rd, reads.NewMemory())
	t.Logf("%d events, %d messages, 10 SIGKILLs: history, rooms and reads each equal a fresh fold", last, len(got))
}
