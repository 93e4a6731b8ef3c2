package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/testrig"
)

// expectError sends a frame and checks the error frame that answers it.
func (r *rawConn) expectError(frame, code string) chat.ServerFrame {
	r.t.Helper()
	r.send(frame)
	f := r.until(chat.FrameError)
	if f.Code != code {
		r.t.Fatalf("%s answered %+v, want code %s", frame, f, code)
	}
	if f.Message == "" {
		r.t.Fatalf("%s answered an error without a message", frame)
	}
	return f
}

// alive checks the connection still answers.
func (r *rawConn) alive() {
	r.t.Helper()
	r.send(`{"type":"ping","ref":"alive"}`)
	if f := r.until(chat.FramePong); f.Ref != "alive" {
		r.t.Fatalf("pong %+v", f)
	}
}

// closedWith reads until the connection closes and checks the close code.
func (r *rawConn) closedWith(code websocket.StatusCode) {
	r.t.Helper()
	for {
		if _, err := r.read(30 * time.Second); err != nil {
			if got := closeCode(err); got != code {
				r.t.Fatalf("closed with %v (%v), want %v", got, err, code)
			}
			return
		}
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	n := startNode(t, js.URL, "", "--max-rooms-per-conn", "3")
	owner := helloRaw(t, n, "owner")
	for i := 0; i < 4; i++ {
		owner.send(fmt.Sprintf(`{"type":"create","ref":"c%d","room":"r%d","id":"c%d"}`, i, i, i))
		if f := owner.until(chat.FrameAck); f.Room != fmt.Sprintf("r%d", i) {
			t.Fatalf("create answered %+v", f)
		}
	}
	rc := helloRaw(t, n, "mallory")
	rc.send(`{"type":"join","ref":"j","room":"r0"}`)
	rc.until(chat.FrameJoined)

	cases := []struct{ name, frame, code string }{
		{"ErrMalformedJSON", `{"type":"send",`, chat.ErrBadRequest},
		{"ErrNotAnObject", `"hello"`, chat.ErrBadRequest},
		{"ErrUnknownField", `{"type":"send","room":"r0","id":"x","text":"hi","html":"<b>"}`, chat.ErrBadRequest},
		{"ErrUnknownFrame", `{"type":"explode"}`, chat.ErrUnknownFrame},
		{"ErrHelloAgain", `{"type":"hello","token":"x"}`, chat.ErrBadRequest},
		{"ErrRoomWithDot", `{"type":"join","room":"r0.x"}`, chat.ErrBadRequest},
		{"ErrRoomWildcard", `{"type":"join","room":">"}`, chat.ErrBadRequest},
		{"ErrRoomWithSpace", `{"type":"send","room":"r0 x","id":"1","text":"hi"}`, chat.ErrBadRequest},
		{"ErrUppercaseRoom", `{"type":"join","room":"R0"}`, chat.ErrBadRequest},
		{"ErrLongRoom", `{"type":"join","room":"` + strings.Repeat("a", 65) + `"}`, chat.ErrBadRequest},
		{"ErrUnknownRoom", `{"type":"join","room":"nowhere"}`, chat.ErrNotFound},
		{"ErrNotJoined", `{"type":"send","room":"r1","id":"1","text":"hi"}`, chat.ErrNotJoined},
		{"ErrNoID", `{"type":"send","room":"r0","text":"hi"}`, chat.ErrBadRequest},
		{"ErrBadID", `{"type":"send","room":"r0","id":"a b","text":"hi"}`, chat.ErrBadRequest},
		{"ErrEmptyText", `{"type":"send","room":"r0","id":"e","text":""}`, chat.ErrBadRequest},
		{"ErrTextTooLong", `{"type":"send","room":"r0","id":"l","text":"` + strings.Repeat("x", chat.MaxTextBytes+1) + `"}`, chat.ErrTooLarge},
		{"ErrEditUnknownTarget", `{"type":"edit","room":"r0","id":"ed","target":999999,"text":"x"}`, chat.ErrNotFound},
		{"ErrEditNonMessage", `{"type":"edit","room":"r0","id":"ed2","target":1,"text":"x"}`, chat.ErrBadRequest},
		{"ErrNegativeSince", `{"type":"join","room":"r0","since":-5}`, chat.ErrBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc.expectError(c.frame, c.code)
			rc.alive()
		})
	}
	t.Run("ErrBinaryFrame", func(t *testing.T) {
		if err := rc.ws.Write(ctxT(t, 5*time.Second), websocket.MessageBinary, []byte{0, 1, 2}); err != nil {
			t.Fatal(err)
		}
		if f := rc.until(chat.FrameError); f.Code != chat.ErrBadRequest {
			t.Fatalf("binary answered %+v", f)
		}
		rc.alive()
	})
	t.Run("ErrEditOthersMessage", func(t *testing.T) {
		owner.send(`{"type":"join","ref":"j","room":"r0"}`)
		owner.until(chat.FrameJoined)
		owner.send(`{"type":"send","ref":"s","room":"r0","id":"mine","text":"owner's words"}`)
		ack := owner.until(chat.FrameAck)
		rc.expectError(fmt.Sprintf(`{"type":"edit","room":"r0","id":"e1","target":%d,"text":"forged"}`, ack.Seq), chat.ErrForbidden)
		rc.expectError(fmt.Sprintf(`{"type":"delete","room":"r0","id":"d1","target":%d}`, ack.Seq), chat.ErrForbidden)
		rc.send(fmt.Sprintf(`{"type":"react","ref":"re","room":"r0","id":"r1","target":%d,"emoji":"👍"}`, ack.Seq))
		if f := rc.until(chat.FrameAck); f.Ref != "re" {
			t.Fatalf("react answered %+v", f)
		}
	})
	t.Run("ErrTooManyRooms", func(t *testing.T) {
		for _, r := range []string{"r1", "r2"} {
			rc.send(fmt.Sprintf(`{"type":"join","room":%q}`, r))
			rc.until(chat.FrameJoined)
		}
		rc.expectError(`{"type":"join","room":"r3"}`, chat.ErrLimit)
		rc.alive()
	})
	t.Run("ErrFrameTooLarge", func(t *testing.T) {
		big := `{"type":"send","room":"r0","id":"big","text":"` + strings.Repeat("x", chat.MaxFrameBytes) + `"}`
		_ = rc.ws.Write(ctxT(t, 5*time.Second), websocket.MessageText, []byte(big))
		rc.closedWith(websocket.StatusMessageTooBig)
	})
	t.Run("NodeStillServes", func(t *testing.T) {
		after := helloRaw(t, n, "after")
		after.send(`{"type":"join","ref":"j","room":"r0","since":0}`)
		after.until(chat.FrameJoined)
		after.alive()
	})
}

func TestRateLimitAndFlood(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	n := startNode(t, js.URL, "", "--send-rate", "5", "--send-burst", "5")
	owner := helloRaw(t, n, "owner")
	owner.send(`{"type":"create","ref":"c","room":"limited","id":"c"}`)
	owner.until(chat.FrameAck)
	owner.send(`{"type":"join","ref":"j","room":"limited"}`)
	owner.until(chat.FrameJoined)

	t.Run("ErrRateLimited", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			owner.send(fmt.Sprintf(`{"type":"send","ref":"s%d","room":"limited","id":"s%d","text":"x"}`, i, i))
		}
		acks, limited := 0, 0
		for acks+limited < 10 {
			f := owner.next()
			switch {
			case f.Type == chat.FrameAck:
				acks++
			case f.Type == chat.FrameError && f.Code == chat.ErrRateLimited:
				if f.RetryAfterMS <= 0 || f.ID == "" {
					t.Fatalf("rate_limited frame %+v lacks retry_after_ms or id", f)
				}
				limited++
			case f.Type == chat.FrameError:
				t.Fatalf("unexpected error %+v", f)
			}
		}
		if limited == 0 || acks == 0 || acks > 5 {
			t.Fatalf("acks=%d limited=%d", acks, limited)
		}
	})
	t.Run("ErrFloodCloses", func(t *testing.T) {
		flood := helloRaw(t, n, "flooder")
		go func() {
			for i := 0; i < 3000; i++ {
				if flood.ws.Write(context.Background(), websocket.MessageText, []byte(`{"type":"typing","room":"limited"}`)) != nil {
					return
				}
			}
		}()
		flood.closedWith(chat.CloseFlood)
	})
}

func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	n := startNode(t, js.URL, "", "--max-conns-per-user", "2", "--allowed-origins", "good.example", "--send-queue", "16")

	t.Run("ErrTooManyConnections", func(t *testing.T) {
		helloRaw(t, n, "many")
		helloRaw(t, n, "many")
		rc, _, err := dialRaw(t, n, nil)
		if err != nil {
			t.Fatal(err)
		}
		rc.send(fmt.Sprintf(`{"type":"hello","token":%q}`, token(t, "many", time.Hour)))
		if f := rc.next(); f.Code != chat.ErrLimit {
			t.Fatalf("third connection answered %+v", f)
		}
		rc.closedWith(chat.CloseTooManyConns)
	})
	t.Run("ErrForeignOrigin", func(t *testing.T) {
		_, resp, err := dialRaw(t, n, http.Header{"Origin": {"http://evil.example"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign origin: err=%v resp=%v", err, resp)
		}
		if _, _, err := dialRaw(t, n, http.Header{"Origin": {"https://good.example"}}); err != nil {
			t.Fatalf("allowed origin refused: %v", err)
		}
	})
	t.Run("ErrNoHello", func(t *testing.T) {
		rc, _, err := dialRaw(t, n, nil)
		if err != nil {
			t.Fatal(err)
		}
		rc.send(`{"type":"join","room":"x"}`)
		if f := rc.next(); f.Code != chat.ErrBadRequest {
			t.Fatalf("frame before hello answered %+v", f)
		}
		rc.closedWith(chat.CloseProtocol)
	})
	t.Run("SlowReaderClosedToResume", func(t *testing.T) {
		// The writer waits for each ack and reads all it gets (else, with a
		// queue of 16 frames, it would be the slow one).
		writer := dial(t, n, "writer")
		create(t, writer, "firehose", false)
		ctx := ctxT(t, 90*time.Second)
		if _, err := writer.Join(ctx, "firehose"); err != nil {
			t.Fatal(err)
		}
		go discard(writer)
		slow := helloRaw(t, n, "slow")
		slow.send(`{"type":"join","ref":"j","room":"firehose"}`)
		slow.until(chat.FrameJoined)
		// The slow reader reads nothing while 4 KiB messages flood its room.
		text := strings.Repeat("z", chat.MaxTextBytes)
		go func() {
			for i := 0; i < 6000 && ctx.Err() == nil; i++ {
				_, _ = writer.SendID(ctx, "firehose", fmt.Sprintf("f%d", i), text)
			}
		}()
		deadline := time.Now().Add(60 * time.Second)
		for metric(t, n, "jetchat_slow_closed_total") < 1 {
			if time.Now().After(deadline) {
				t.Fatal("slow reader never closed")
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Now read what was queued: the close frame with 4001 follows it.
		for {
			if _, _, err := slow.ws.Read(ctx); err != nil {
				if code := closeCode(err); code != chat.CloseSlowReader {
					t.Fatalf("closed with %v (%v), want %d", code, err, chat.CloseSlowReader)
				}
				break
			}
		}
	})
}

// TestPipelinedSendsKeepOrder: a client that sends without waiting for acks
// has many sends in flight; each is acknowledged once stored, and they are
// stored in the order sent.
func TestPipelinedSendsKeepOrder(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", "")
	alice := helloRaw(t, n, "alice")
	alice.send(`{"type":"create","ref":"c","room":"pipe","id":"c"}`)
	alice.until(chat.FrameAck)
	alice.send(`{"type":"join","ref":"j","room":"pipe"}`)
	alice.until(chat.FrameJoined)
	const count = 300
	for i := range count {
		alice.send(fmt.Sprintf(`{"type":"send","ref":"%d","room":"pipe","id":"m%d","text":"message %d"}`, i, i, i))
	}
	seqs := make(map[string]uint64)
	var events []chat.Event
	for len(seqs) < count || len(events) < count {
		f := alice.next()
		switch f.Type {
		case chat.FrameAck:
			if _, again := seqs[f.ID]; again || f.Dup {
				t.Fatalf("ack %+v twice or as a duplicate", f)
			}
			seqs[f.ID] = f.Seq
		case chat.FrameEvent:
			events = append(events, *f.Event)
		case chat.FrameError:
			t.Fatalf("error %+v", f)
		}
	}
	for i := 1; i < count; i++ {
		if a, b := seqs[fmt.Sprint("m", i-1)], seqs[fmt.Sprint("m", i)]; a >= b {
			t.Fatalf("m%d stored at %d, after m%d at %d", i-1, a, i, b)
		}
	}
	for i, ev := range events {
		if ev.ID != fmt.Sprint("m", i) || ev.Seq != seqs[ev.ID] {
			t.Fatalf("event %d is %s at %d, want m%d at %d", i, ev.ID, ev.Seq, i, seqs[fmt.Sprint("m", i)])
		}
	}
}
