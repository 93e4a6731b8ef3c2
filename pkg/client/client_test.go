package client

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/jetchat/jetchat/pkg/chat"
)

func TestBackoff(t *testing.T) {
	const base, max = 100 * time.Millisecond, 5 * time.Second
	t.Run("Bounds", func(t *testing.T) {
		for attempt := range 70 {
			bound := max
			if attempt < 6 {
				bound = base << attempt
			}
			for range 200 {
				if d := backoff(base, max, attempt); d < 0 || d > bound {
					t.Fatalf("attempt %d: backoff %v outside [0, %v]", attempt, d, bound)
				}
			}
		}
	})
	t.Run("Jitter", func(t *testing.T) {
		seen := make(map[time.Duration]bool)
		var sum time.Duration
		const n = 1000
		for range n {
			d := backoff(base, max, 10)
			seen[d] = true
			sum += d
		}
		if len(seen) < n/2 {
			t.Fatalf("only %d distinct delays in %d draws", len(seen), n)
		}
		if mean := sum / n; mean < max/4 || mean > 3*max/4 {
			t.Fatalf("mean delay %v, want about %v", mean, max/2)
		}
	})
	t.Run("Overflow", func(t *testing.T) {
		if d := backoff(time.Hour, 2*time.Hour, 60); d < 0 || d > 2*time.Hour {
			t.Fatalf("backoff = %v", d)
		}
	})
	t.Run("Zero", func(t *testing.T) {
		if d := backoff(0, 0, 3); d != 0 {
			t.Fatalf("backoff = %v, want 0", d)
		}
	})
}

func ev(seq, prev uint64) *chat.Event {
	return &chat.Event{ID: "e", Type: chat.MessageSent, Room: "general", Author: "alice", Seq: seq, Prev: prev, Text: "hi"}
}

func TestRoomCheck(t *testing.T) {
	since := func(s uint64) *uint64 { return &s }
	tests := []struct {
		name  string
		room  room
		event *chat.Event
		want  verdict
		pos   uint64
	}{
		{"Next", *newRoom(since(5)), ev(6, 5), deliver, 6},
		{"NextAfterSkippedSeqs", *newRoom(since(5)), ev(9, 5), deliver, 9},
		{"FromStart", *newRoom(since(0)), ev(1, 0), deliver, 1},
		{"Duplicate", *newRoom(since(5)), ev(5, 4), duplicate, 5},
		{"Older", *newRoom(since(5)), ev(3, 2), duplicate, 5},
		{"Gap", *newRoom(since(5)), ev(8, 7), gap, 5},
		{"NotLive", *newRoom(nil), ev(1, 0), skip, 0},
		{"RepairingNext", room{pos: 5, live: true, repairing: true}, ev(6, 5), deliver, 6},
		{"RepairingGap", room{pos: 5, live: true, repairing: true}, ev(8, 7), skip, 5},
		{"RepairingDuplicate", room{pos: 5, live: true, repairing: true}, ev(5, 4), skip, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.room
			if got := r.check(tt.event); got != tt.want {
				t.Errorf("check = %v, want %v", got, tt.want)
			}
			if r.pos != tt.pos {
				t.Errorf("pos = %d, want %d", r.pos, tt.pos)
			}
		})
	}
}

func TestRoomJoined(t *testing.T) {
	t.Run("Live", func(t *testing.T) {
		r := newRoom(nil)
		if r.since() != nil {
			t.Fatal("since before joined must be nil")
		}
		if r.joined(57, true) {
			t.Fatal("reset on a live join")
		}
		if r.pos != 57 || !r.live || *r.since() != 57 {
			t.Fatalf("pos %d live %v", r.pos, r.live)
		}
	})
	t.Run("Recovered", func(t *testing.T) {
		r := newRoom(new(uint64(41)))
		r.check(ev(42, 41))
		if r.joined(57, true) || r.pos != 42 {
			t.Fatalf("pos = %d, want 42", r.pos)
		}
	})
	t.Run("NotRecovered", func(t *testing.T) {
		r := newRoom(new(uint64(3)))
		if !r.joined(57, false) || r.pos != 57 {
			t.Fatalf("pos = %d, want 57 and a reset", r.pos)
		}
	})
	t.Run("RepairEnds", func(t *testing.T) {
		r := &room{pos: 5, live: true, repairing: true, joinRef: "9"}
		r.joined(80, true)
		if r.repairing || r.joinRef != "" || r.pos != 5 {
			t.Fatalf("after joined: %+v", r)
		}
	})
	t.Run("RepairPending", func(t *testing.T) {
		r := &room{pos: 5, live: true, repairing: true, needsRepair: true}
		r.joined(80, true)
		if !r.repairing {
			t.Fatal("repair ended before it was sent")
		}
	})
}

// feed hands server frames to c as the read loop would, without a connection.
func feed(t *testing.T, c *Client, frames ...chat.ServerFrame) {
	t.Helper()
	for _, f := range frames {
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.handle(nil, b); err != nil {
			t.Fatal(err)
		}
	}
}

func evFrame(seq, prev uint64) chat.ServerFrame {
	return chat.ServerFrame{Type: chat.FrameEvent, Event: ev(seq, prev)}
}

func drain(c *Client) (seqs []uint64) {
	for {
		select {
		case e := <-c.events:
			seqs = append(seqs, e.Seq)
		default:
			return seqs
		}
	}
}

func TestClientRepairsGap(t *testing.T) {
	c := newClient(Options{URL: "ws://unused"})
	r := newRoom(new(uint64(10)))
	r.joinRef = "1"
	c.rooms["general"] = r
	rec := true
	feed(t, c,
		evFrame(11, 10), evFrame(12, 11),
		chat.ServerFrame{Type: chat.FrameJoined, Ref: "1", Room: "general", Head: 12, Recovered: &rec, Replayed: 2},
		evFrame(12, 11), // duplicate: reported, dropped
		evFrame(15, 14), // gap: reported, repair starts
		evFrame(13, 12), // extends the chain: delivered while repairing
		evFrame(16, 15), // does not: dropped silently
	)
	if got := drain(c); len(got) != 3 || got[0] != 11 || got[1] != 12 || got[2] != 13 {
		t.Fatalf("delivered %v, want [11 12 13]", got)
	}
	var ce *ChainError
	if err := <-c.errs; !errors.As(err, &ce) || !ce.Duplicate() || ce.Last != 12 {
		t.Fatalf("first error %v, want a duplicate at 12", err)
	}
	if err := <-c.errs; !errors.As(err, &ce) || ce.Duplicate() || ce.Last != 12 || ce.Seq != 15 {
		t.Fatalf("second error %v, want a gap at 12", err)
	}
	if !r.repairing || r.joinRef == "" || *r.since() != 13 {
		t.Fatalf("repair not started: %+v", r)
	}
	feed(t, c,
		evFrame(13, 12), // the replay from 12: already delivered, dropped silently
		evFrame(14, 13), evFrame(15, 14), evFrame(16, 15),
		chat.ServerFrame{Type: chat.FrameJoined, Ref: r.joinRef, Room: "general", Head: 16, Recovered: &rec, Replayed: 3},
		evFrame(17, 16),
		evFrame(16, 15), // strict again: a duplicate
	)
	if got := drain(c); len(got) != 4 || got[0] != 14 || got[3] != 17 {
		t.Fatalf("delivered %v, want [14 15 16 17]", got)
	}
	if err := <-c.errs; !errors.As(err, &ce) || !ce.Duplicate() {
		t.Fatalf("error %v, want a duplicate", err)
	}
	if c.Position("general") != 17 {
		t.Fatalf("position %d, want 17", c.Position("general"))
	}
}

func TestClientNotRecovered(t *testing.T) {
	c := newClient(Options{URL: "ws://unused"})
	c.rooms["general"] = &room{pos: 3, live: true, joinRef: "1"}
	rec := false
	feed(t, c, chat.ServerFrame{Type: chat.FrameJoined, Ref: "1", Room: "general", Head: 57, Recovered: &rec})
	var nr *NotRecoveredError
	if err := <-c.errs; !errors.As(err, &nr) || nr.Room != "general" || nr.Head != 57 {
		t.Fatalf("error %v, want not recovered at 57", err)
	}
	feed(t, c, evFrame(58, 57))
	if got := drain(c); len(got) != 1 || got[0] != 58 {
		t.Fatalf("delivered %v, want [58]", got)
	}
}

func TestClientJoinFailed(t *testing.T) {
	c := newClient(Options{URL: "ws://unused"})
	w := make(chan chat.ServerFrame, 1)
	c.rooms["secret"] = &room{joinRef: "1", waiters: []chan chat.ServerFrame{w}}
	feed(t, c, chat.ServerFrame{Type: chat.FrameError, Ref: "1", Room: "secret", Code: chat.ErrForbidden, Message: "members only"})
	if f := <-w; f.Code != chat.ErrForbidden {
		t.Fatalf("waiter got %+v", f)
	}
	if _, ok := c.rooms["secret"]; ok {
		t.Fatal("room still tracked after a final join error")
	}
}

func TestReconnectable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{errors.New("connection reset"), true},
		{websocket.CloseError{Code: chat.CloseShutdown}, true},
		{websocket.CloseError{Code: chat.CloseSlowReader}, true},
		{websocket.CloseError{Code: websocket.StatusGoingAway}, true},
		{websocket.CloseError{Code: chat.CloseUnauthorized}, false},
		{websocket.CloseError{Code: websocket.StatusPolicyViolation}, false},
	}
	for _, tt := range tests {
		if got := reconnectable(tt.err); got != tt.want {
			t.Errorf("reconnectable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if retryable(&chat.Error{Code: chat.ErrUnauthorized}) || !retryable(&chat.Error{Code: chat.ErrUnavailable}) {
		t.Error("retryable misjudges hello errors")
	}
}
