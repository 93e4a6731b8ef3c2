package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/testrig"
	"github.com/nats-io/nats.go"
)

// A call that gets more answers than it asked for fails instead of skipping
// one, and answers to a call that ended are dropped.
func TestBatchGetsOverflowAndLateAnswers(t *testing.T) {
	t.Parallel()
	nc := testrig.RunJetStream(t).Connect(t)
	b := &batchGets{nc: nc}
	call, reply, end, err := b.open(1) // room for 1 message and the end-of-batch status
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := nc.Publish(reply, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case <-call.overflow:
		default:
			if time.Now().After(deadline) {
				t.Fatal("a third answer to a call of 1 did not overflow")
			}
			time.Sleep(time.Millisecond)
			continue
		}
		break
	}
	if _, err := call.next(context.Background(), time.Second); !errors.Is(err, errBatchOverflow) {
		t.Fatalf("next after overflow = %v, want errBatchOverflow", err)
	}
	end()

	call2, reply2, end2, err := b.open(4)
	if err != nil {
		t.Fatal(err)
	}
	defer end2()
	_ = nc.Publish(reply, []byte("late")) // the ended call's
	_ = nc.Publish(reply2, []byte("mine"))
	m, err := call2.next(context.Background(), 5*time.Second)
	if err != nil || string(m.Data) != "mine" {
		t.Fatalf("next = %v, %v; want mine", m, err)
	}
	if _, err := call2.next(context.Background(), 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second answer arrived (%v): the late one was routed to another call", err)
	}
}

// Concurrent replays share the one subscription and each gets its own room,
// whole and in order.
func TestConcurrentReplays(t *testing.T) {
	t.Parallel()
	srv := testrig.RunJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, srv.Connect(t), Config{})
	if err != nil {
		t.Fatal(err)
	}
	rooms := []string{"ra", "rb", "rc"}
	const n = 700 // two batches
	for i := range n {
		for _, r := range rooms {
			ev := chat.Event{ID: fmt.Sprint("m", i), Type: chat.MessageSent, Room: r, Author: "alice", Time: time.Now().UTC(), Text: r}
			if _, _, err := l.Append(ctx, ev, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for i := range 30 {
		room := rooms[i%len(rooms)]
		wg.Go(func() {
			var prev uint64
			count := 0
			err := l.Replay(ctx, room, 0, ^uint64(0), func(ev chat.Event) error {
				if ev.Room != room || ev.Prev != prev || ev.Seq <= prev {
					return fmt.Errorf("replay of %s: got %s seq %d prev %d after %d", room, ev.Room, ev.Seq, ev.Prev, prev)
				}
				prev = ev.Seq
				count++
				return nil
			})
			if err == nil && count != n {
				err = fmt.Errorf("replay of %s: %d events, want %d", room, count, n)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCheckBatchChain(t *testing.T) {
	answer := func(last string) *nats.Msg {
		m := nats.NewMsg("x")
		if last != "" {
			m.Header.Set(lastSeqHeader, last)
		}
		return m
	}
	for _, c := range []struct {
		last string
		sent uint64
		ok   bool
	}{
		{"0", 0, true},    // the batch's first answer
		{"41", 41, true},  // follows the last received
		{"41", 40, false}, // the answer for 41 was lost
		{"0", 41, false},  // a first answer in the middle of a batch
		{"x", 41, false},  // unreadable
		{"", 41, true},    // a server that does not say
	} {
		if err := checkBatchChain(answer(c.last), c.sent); (err == nil) != c.ok {
			t.Errorf("last %q after %d: err %v, want ok %v", c.last, c.sent, err, c.ok)
		}
	}
}
