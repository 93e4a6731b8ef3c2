package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/testrig"
	"github.com/jetchat/jetchat/projections/history"
)

// getMessages polls GET /messages until check accepts the page.
func getMessages(t *testing.T, n *testNode, user, query string, check func([]history.Message) bool) []history.Message {
	t.Helper()
	var page struct{ Messages []history.Message }
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		body := getJSON(t, n, "/api/v1/rooms/hist/messages"+query, user)
		page.Messages = nil
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatalf("bad page %s: %v", body, err)
		}
		if check(page.Messages) {
			return page.Messages
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET messages%s never satisfied the check; last: %s", query, body)
		}
	}
}

// historyRoom starts a node with its projector, and alice creates the room
// "hist", joins it and sends count messages; it returns their seqs.
func historyRoom(t *testing.T, count int) (*testNode, *rawConn, []uint64) {
	t.Helper()
	js := testrig.RunJetStream(t)
	n := startNode(t, js.URL, "", "--projector")
	alice := helloRaw(t, n, "alice")
	alice.send(`{"type":"create","ref":"c","room":"hist","id":"c"}`)
	alice.until(chat.FrameAck)
	alice.send(`{"type":"join","ref":"j","room":"hist"}`)
	alice.until(chat.FrameJoined)
	var seqs []uint64
	for i := 0; i < count; i++ {
		alice.send(fmt.Sprintf(`{"type":"send","ref":"s%d","room":"hist","id":"m%d","text":"message %d"}`, i, i, i))
		seqs = append(seqs, alice.until(chat.FrameAck).Seq)
	}
	return n, alice, seqs
}

func TestHistoryProjection(t *testing.T) {
	t.Parallel()
	n, alice, seqs := historyRoom(t, 12)
	alice.send(fmt.Sprintf(`{"type":"edit","ref":"e","room":"hist","id":"e1","target":%d,"text":"edited"}`, seqs[0]))
	alice.until(chat.FrameAck)
	alice.send(fmt.Sprintf(`{"type":"delete","ref":"d","room":"hist","id":"d1","target":%d}`, seqs[1]))
	alice.until(chat.FrameAck)
	alice.send(fmt.Sprintf(`{"type":"react","ref":"r","room":"hist","id":"r1","target":%d,"emoji":"🎉"}`, seqs[2]))
	alice.until(chat.FrameAck)

	all := getMessages(t, n, "alice", "?limit=50", func(ms []history.Message) bool {
		return len(ms) == 12 && len(ms[2].Reactions) == 1
	})
	if all[0].Text != "edited" || !all[0].Edited || !all[1].Deleted || all[1].Text != "" || all[2].Reactions[0].Users[0] != "alice" {
		t.Fatalf("state not folded: %+v", all[:3])
	}
	t.Run("PagingBothWays", func(t *testing.T) {
		older := getMessages(t, n, "alice", fmt.Sprintf("?before=%d&limit=3", seqs[5]), func(ms []history.Message) bool { return len(ms) == 3 })
		if older[0].Seq != seqs[2] || older[2].Seq != seqs[4] {
			t.Fatalf("before page: %v", older)
		}
		newer := getMessages(t, n, "alice", fmt.Sprintf("?after=%d&limit=3", seqs[5]), func(ms []history.Message) bool { return len(ms) == 3 })
		if newer[0].Seq != seqs[6] || newer[2].Seq != seqs[8] {
			t.Fatalf("after page: %v", newer)
		}
		latest := getMessages(t, n, "alice", "?limit=2", func(ms []history.Message) bool { return len(ms) == 2 })
		if latest[1].Seq != seqs[11] {
			t.Fatalf("latest page: %v", latest)
		}
	})
	t.Run("WebSocketFrame", func(t *testing.T) {
		alice.send(fmt.Sprintf(`{"type":"history","ref":"h","room":"hist","before":%d,"limit":2}`, seqs[3]))
		f := alice.until(chat.FrameHistory)
		msgs, _ := json.Marshal(f.Messages)
		var got []history.Message
		_ = json.Unmarshal(msgs, &got)
		if f.Ref != "h" || len(got) != 2 || got[1].Seq != seqs[2] {
			t.Fatalf("history frame: %+v", f)
		}
	})
	t.Run("ErrBadQuery", func(t *testing.T) {
		for _, q := range []string{"?before=1&after=2", "?before=x", "?limit=-1"} {
			if code := getStatus(t, n, "/api/v1/rooms/hist/messages"+q, "alice"); code != http.StatusBadRequest {
				t.Fatalf("%s answered %d", q, code)
			}
		}
	})
	t.Run("ErrPrivateHistory", func(t *testing.T) {
		alice.send(`{"type":"create","ref":"p","room":"hidden","id":"p","private":true}`)
		alice.until(chat.FrameAck)
		if code := getStatus(t, n, "/api/v1/rooms/hidden/messages", "eve"); code != http.StatusForbidden {
			t.Fatalf("eve read a private room's history: %d", code)
		}
		eve := helloRaw(t, n, "eve")
		eve.expectError(`{"type":"history","room":"hidden"}`, chat.ErrForbidden)
	})
}

// TestJoinWithLatestPage: a join without since but with a limit answers the
// latest page from history, then replays what came after its newest message,
// so the first event the client gets continues from the page.
func TestJoinWithLatestPage(t *testing.T) {
	t.Parallel()
	n, alice, seqs := historyRoom(t, 10)
	getMessages(t, n, "alice", "", func(ms []history.Message) bool { return len(ms) == 10 })

	bob := helloRaw(t, n, "bob")
	bob.send(`{"type":"join","ref":"j","room":"hist","limit":4}`)
	var replayed int
	var joined chat.ServerFrame
	prev := seqs[9] // the chain continues from the page's newest message
	for {
		f := bob.next()
		if f.Type == chat.FrameEvent {
			if f.Event.Prev != prev {
				t.Fatalf("replayed event %d has prev %d, want %d", f.Event.Seq, f.Event.Prev, prev)
			}
			prev = f.Event.Seq
			replayed++
			continue
		}
		if f.Type == chat.FrameJoined {
			joined = f
			break
		}
	}
	raw, _ := json.Marshal(joined.Messages)
	var page []history.Message
	_ = json.Unmarshal(raw, &page)
	if len(page) != 4 || page[3].Seq != seqs[9] || page[0].Seq != seqs[6] {
		t.Fatalf("joined page: %s", raw)
	}
	// bob's own member.joined came after the page's newest message: it is
	// replayed or live, and chained to that message.
	alice.send(`{"type":"send","ref":"x","room":"hist","id":"after","text":"after the page"}`)
	for {
		f := bob.next()
		if f.Type != chat.FrameEvent {
			continue
		}
		if f.Event.Prev != prev {
			t.Fatalf("event %d has prev %d, want %d (replayed before joined: %d)", f.Event.Seq, f.Event.Prev, prev, replayed)
		}
		prev = f.Event.Seq
		if f.Event.Text == "after the page" {
			break
		}
	}
}
