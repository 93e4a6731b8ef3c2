package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/pkg/testrig"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

func openLog(t *testing.T) (*jetstream.Log, *testrig.JetStream) {
	t.Helper()
	srv := testrig.RunJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := jetstream.Open(ctx, srv.Connect(t), jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return l, srv
}

func msg(room, id, text string) chat.Event {
	return chat.Event{ID: id, Type: chat.MessageSent, Room: room, Author: "alice", Time: time.Now().UTC(), Text: text}
}

func TestAppend(t *testing.T) {
	t.Parallel()
	l, _ := openLog(t)
	ctx := context.Background()
	created := chat.Event{ID: "c", Type: chat.RoomCreated, Room: "r", Author: "alice", Name: "R"}
	if _, _, err := l.Append(ctx, created, true); err != nil {
		t.Fatal(err)
	}
	t.Run("ErrRoomExists", func(t *testing.T) {
		created.ID = "c2"
		if _, _, err := l.Append(ctx, created, true); !errors.Is(err, chat.ErrRoomExists) {
			t.Fatalf("second create = %v, want ErrRoomExists", err)
		}
	})
	t.Run("DuplicateIDStoredOnce", func(t *testing.T) {
		seq1, dup1, err := l.Append(ctx, msg("r", "m1", "hi"), false)
		if err != nil || dup1 {
			t.Fatal(err, dup1)
		}
		seq2, dup2, err := l.Append(ctx, msg("r", "m1", "hi"), false)
		if err != nil || !dup2 || seq2 != seq1 {
			t.Fatalf("retry = %d %v %v, want %d dup", seq2, dup2, err, seq1)
		}
		// The same id from another author is another message.
		other := msg("r", "m1", "hi")
		other.Author = "bob"
		seq3, dup3, err := l.Append(ctx, other, false)
		if err != nil || dup3 || seq3 == seq1 {
			t.Fatalf("other author = %d %v %v", seq3, dup3, err)
		}
	})
	t.Run("ErrBadRoom", func(t *testing.T) {
		if _, _, err := l.Append(ctx, msg("a.b", "x", "hi"), false); chat.ErrorCode(err) != chat.ErrBadRequest {
			t.Fatalf("Append to a.b = %v", err)
		}
	})
}

func TestReplayAndLive(t *testing.T) {
	t.Parallel()
	l, _ := openLog(t)
	ctx := context.Background()
	var seqs []uint64
	live := make(chan chat.Event, 100)
	stop, err := l.Subscribe("r", func(ev chat.Event) { live <- ev }, func(chat.Signal) {})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for i := 0; i < 20; i++ {
		room := "r"
		if i%3 == 0 {
			room = "other" // interleave another room so the room's seqs are not contiguous
		}
		seq, _, err := l.Append(ctx, msg(room, fmt.Sprint("m", i), "x"), false)
		if err != nil {
			t.Fatal(err)
		}
		if room == "r" {
			seqs = append(seqs, seq)
		}
	}
	t.Run("LiveCarriesPrev", func(t *testing.T) {
		prev := uint64(0)
		for _, want := range seqs {
			select {
			case ev := <-live:
				if ev.Seq != want || ev.Prev != prev || ev.Room != "r" {
					t.Fatalf("live event seq=%d prev=%d, want seq=%d prev=%d", ev.Seq, ev.Prev, want, prev)
				}
				prev = ev.Seq
			case <-time.After(5 * time.Second):
				t.Fatal("live event missing")
			}
		}
	})
	t.Run("ReplayRange", func(t *testing.T) {
		var got []chat.Event
		err := l.Replay(ctx, "r", seqs[2], seqs[9], func(ev chat.Event) error { got = append(got, ev); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 7 || got[0].Prev != seqs[2] || got[0].Seq != seqs[3] || got[6].Seq != seqs[9] {
			t.Fatalf("replay got %d events, first %+v", len(got), got[0])
		}
		for i := 1; i < len(got); i++ {
			if got[i].Prev != got[i-1].Seq {
				t.Fatalf("chain broken at %d", i)
			}
		}
	})
	t.Run("HeadAndGet", func(t *testing.T) {
		head, err := l.Head(ctx, "r")
		if err != nil || head != seqs[len(seqs)-1] {
			t.Fatalf("Head = %d %v", head, err)
		}
		if h, _ := l.Head(ctx, "empty"); h != 0 {
			t.Fatalf("empty room head %d", h)
		}
		if _, err := l.Get(ctx, "other", seqs[0]); chat.ErrorCode(err) != chat.ErrNotFound {
			t.Fatalf("Get of another room's seq = %v", err)
		}
	})
}

func TestReplayLargeAndPoison(t *testing.T) {
	t.Parallel()
	l, srv := openLog(t)
	ctx := context.Background()
	nc := srv.Connect(t)
	js, _ := natsjs.New(nc)
	n := 1300 // more than two direct-get batches
	for i := 0; i < n; i++ {
		if i == 700 {
			// Poison: a body that is not an event, published by hand.
			if _, err := js.Publish(ctx, "chat.room.big", []byte("{not json")); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := l.Append(ctx, msg("big", fmt.Sprint("m", i), "x"), false); err != nil {
			t.Fatal(err)
		}
	}
	var got []chat.Event
	err := l.Replay(ctx, "big", 0, ^uint64(0), func(ev chat.Event) error { got = append(got, ev); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n+1 {
		t.Fatalf("replayed %d, want %d", len(got), n+1)
	}
	if got[700].Type != chat.Invalid {
		t.Fatalf("poison event decoded as %q", got[700].Type)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Prev != got[i-1].Seq || got[i].Seq <= got[i-1].Seq {
			t.Fatalf("chain broken at %d", i)
		}
	}
}

func TestDirectory(t *testing.T) {
	t.Parallel()
	l, _ := openLog(t)
	ctx := context.Background()
	if err := l.CreateRoom(ctx, chat.Room{ID: "r", Name: "R", Private: true, Creator: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := l.CreateRoom(ctx, chat.Room{ID: "r"}); !errors.Is(err, chat.ErrRoomExists) {
		t.Fatalf("second CreateRoom = %v", err)
	}
	if _, err := l.Room(ctx, "nope"); !errors.Is(err, chat.ErrRoomNotFound) {
		t.Fatalf("Room(nope) = %v", err)
	}
	for _, u := range []string{"alice", "bob@example.com", "ünïcode"} {
		if err := l.AddMember(ctx, "r", chat.Member{User: u}); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := l.IsMember(ctx, "r", "bob@example.com"); !ok {
		t.Fatal("bob is not a member")
	}
	_ = l.RemoveMember(ctx, "r", "alice")
	ms, err := l.Members(ctx, "r")
	if err != nil || len(ms) != 2 {
		t.Fatalf("Members = %v %v", ms, err)
	}
	rooms, err := l.Rooms(ctx)
	if err != nil || len(rooms) != 1 || !rooms[0].Private {
		t.Fatalf("Rooms = %v %v", rooms, err)
	}
}

// TestHeads: one call answers for 1,100 rooms (two batched gets), the same
// as Head room by room, and leaves out the rooms without events.
func TestHeads(t *testing.T) {
	t.Parallel()
	l, _ := openLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var rooms []string
	var waits []func(context.Context) (uint64, bool, error)
	for i := range 1100 {
		room := fmt.Sprintf("h%d", i)
		rooms = append(rooms, room)
		for k := range i % 3 { // a third of the rooms have no event
			wait, err := l.AppendAsync(msg(room, fmt.Sprint(k), "hi"))
			if err != nil {
				t.Fatal(err)
			}
			waits = append(waits, wait)
		}
	}
	for _, wait := range waits {
		if _, _, err := wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	heads, err := l.Heads(ctx, rooms)
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) != 1100-367 {
		t.Errorf("%d heads, want %d", len(heads), 1100-367)
	}
	for i, room := range rooms {
		want, err := l.Head(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := heads[room]
		if got != want || ok != (i%3 != 0) {
			t.Fatalf("room %s: Heads has %d (%v), Head %d", room, got, ok, want)
		}
	}
	if heads, err := l.Heads(ctx, []string{"h0", "h3"}); err != nil || len(heads) != 0 {
		t.Fatalf("rooms without events: %v %v, want none", heads, err)
	}
	if _, err := l.Heads(ctx, []string{"a.b"}); chat.ErrorCode(err) != chat.ErrBadRequest {
		t.Fatalf("a bad room id: %v, want bad_request", err)
	}
}
