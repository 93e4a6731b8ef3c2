package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jetchat/jetchat/pkg/auth"
	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/client"
	"github.com/jetchat/jetchat/pkg/testrig"
	"math/rand/v2"
	"net"
)

const testSecret = "test-secret-0123456789abcdef-0123456789"

// testNode is a chatd started through the real run, as main starts it.
type testNode struct {
	Addr   string
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	err    error
}

func (n *testNode) WS() string { return "ws://" + n.Addr + "/ws" }

// Stop shuts the node down gracefully and waits for run to return.
func (n *testNode) Stop(t testing.TB) {
	n.cancel()
	select {
	case <-n.done:
		if n.err != nil {
			t.Errorf("run: %v", n.err)
		}
	case <-time.After(15 * time.Second):
		t.Error("node did not stop within 15s")
	}
}

// startNode runs chatd against natsURL (empty: embedded, on dataDir).
func startNode(t testing.TB, natsURL, dataDir string, args ...string) *testNode {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	base := []string{"--addr", "127.0.0.1:0", "--jwt-secret", testSecret, "--data-dir", dataDir,
		"--log-level", "error", "--dev", "--send-rate", "10000", "--send-burst", "10000", "--tail-check-interval", "200ms"}
	if natsURL != "" {
		base = append(base, "--nats-url", natsURL)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{cancel: cancel, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		n.err = run(ctx, append(base, args...), func(string) string { return "" }, io.Discard, ready)
		close(n.done)
	}()
	select {
	case n.Addr = <-ready:
	case <-n.done:
		t.Fatalf("run: %v", n.err)
	case <-time.After(30 * time.Second):
		t.Fatal("node did not start")
	}
	t.Cleanup(func() { n.cancel(); <-n.done })
	return n
}

func token(t testing.TB, user string, ttl time.Duration) string {
	t.Helper()
	tokens, err := auth.New([]byte(testSecret), "jetchat")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokens.Issue(user, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func dial(t testing.TB, n *testNode, user string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: n.WS(), Token: token(t, user, time.Hour), MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func create(t testing.TB, c *client.Client, room string, private bool) {
	t.Helper()
	if _, err := c.Do(ctxT(t, 10*time.Second), chat.ClientFrame{Type: chat.FrameCreate, Room: room, Name: room, Private: private}); err != nil {
		t.Fatalf("create %s: %v", room, err)
	}
}

// collect reads c's events until it holds want message.sent events of room,
// and fails on any chain error the client reports.
func collect(t testing.TB, c *client.Client, room string, want int, d time.Duration) []chat.Event {
	t.Helper()
	var got []chat.Event
	timeout := time.After(d)
	for len(got) < want {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("events closed after %d of %d", len(got), want)
			}
			if ev.Room == room && ev.Type == chat.MessageSent {
				got = append(got, ev)
			}
		case err := <-c.Errors():
			t.Fatalf("client reported: %v", err)
		case <-timeout:
			t.Fatalf("got %d of %d messages in %v", len(got), want, d)
		}
	}
	return got
}

// discard drains a client's events that a test does not look at: a client
// whose events are not read stops reading its connection.
func discard(c *client.Client) {
	for range c.Events() {
	}
}

func noClientErrors(t testing.TB, cs ...*client.Client) {
	t.Helper()
	for _, c := range cs {
		select {
		case err := <-c.Errors():
			t.Errorf("client %s reported: %v", c.User(), err)
		default:
		}
	}
}

func seqs(evs []chat.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func TestTwoClientsSameOrderAndSince(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	n1 := startNode(t, js.URL, "")
	n2 := startNode(t, js.URL, "") // a second node on the same log: order is global
	alice, bob := dial(t, n1, "alice"), dial(t, n2, "bob")
	create(t, alice, "general", false)
	ctx := ctxT(t, 30*time.Second)
	if _, err := alice.Join(ctx, "general"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Join(ctx, "general"); err != nil {
		t.Fatal(err)
	}
	const per = 50
	var wg sync.WaitGroup
	for _, c := range []*client.Client{alice, bob} {
		wg.Add(1)
		go func(c *client.Client) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := c.Send(ctx, "general", fmt.Sprintf("%s %d", c.User(), i)); err != nil {
					t.Error(err)
					return
				}
			}
		}(c)
	}
	a := collect(t, alice, "general", 2*per, 20*time.Second)
	b := collect(t, bob, "general", 2*per, 20*time.Second)
	wg.Wait()
	if fmt.Sprint(seqs(a)) != fmt.Sprint(seqs(b)) {
		t.Fatalf("orders differ:\n%v\n%v", seqs(a), seqs(b))
	}
	// A third client joins with since = the 60th message and gets exactly the rest.
	since := a[59].Seq
	carol := dial(t, n1, "carol")
	j, err := carol.Join(ctx, "general", client.Since(since))
	if err != nil || !j.Recovered {
		t.Fatalf("join since: %+v %v", j, err)
	}
	c := collect(t, carol, "general", 2*per-60, 10*time.Second)
	if fmt.Sprint(seqs(c)) != fmt.Sprint(seqs(a[60:])) {
		t.Fatalf("since replay differs:\n%v\n%v", seqs(c), seqs(a[60:]))
	}
	noClientErrors(t, alice, bob, carol)
}

func TestResumeUnderFire(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	// A small replay window: short cuts resume from the room's recent
	// frames in memory, longer ones from the log.
	n := startNode(t, js.URL, "", "--replay-window", "16")
	owner := dial(t, n, "owner")
	create(t, owner, "fire", false)
	reader := dial(t, n, "reader")
	ctx := ctxT(t, 120*time.Second)
	if _, err := reader.Join(ctx, "fire"); err != nil {
		t.Fatal(err)
	}
	const senders, each = 5, 400
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		c := dial(t, n, fmt.Sprintf("sender%d", s))
		if _, err := c.Join(ctx, "fire"); err != nil {
			t.Fatal(err)
		}
		go discard(c)
		wg.Add(1)
		go func(s int, c *client.Client) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := c.SendID(ctx, "fire", fmt.Sprintf("s%d-%d", s, i), fmt.Sprintf("sender %d message %d", s, i)); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		}(s, c)
	}
	// Cut the reader's connection 20 times at random moments while the senders send.
	cuts := make(chan struct{})
	go func() {
		defer close(cuts)
		for i := 0; i < 20; i++ {
			time.Sleep(time.Duration(20+randIntn(120)) * time.Millisecond)
			// Cut only a live connection: wait for the previous cut's reconnect.
			for deadline := time.Now().Add(10 * time.Second); reader.Reconnects() < i && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			reader.Drop()
		}
	}()
	got := collect(t, reader, "fire", senders*each, 90*time.Second)
	wg.Wait()
	<-cuts
	seen := map[string]bool{}
	for i, ev := range got {
		if seen[ev.Author+"/"+ev.ID] {
			t.Fatalf("duplicate %s", ev.ID)
		}
		seen[ev.Author+"/"+ev.ID] = true
		if i > 0 && ev.Seq <= got[i-1].Seq {
			t.Fatalf("out of order at %d: %d after %d", i, ev.Seq, got[i-1].Seq)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); reader.Reconnects() < 20 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if reader.Reconnects() < 20 {
		t.Fatalf("reader reconnected %d times, want 20", reader.Reconnects())
	}
	// The whole room replayed from the start equals what the reader saw.
	check := dial(t, n, "checker")
	joined := make(chan error, 1)
	go func() { _, err := check.Join(ctx, "fire", client.Since(0)); joined <- err }()
	all := collect(t, check, "fire", senders*each, 30*time.Second)
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs(all)) != fmt.Sprint(seqs(got)) {
		t.Fatal("reader's sequence differs from the log's")
	}
	noClientErrors(t, reader, check)
}

// rawConn speaks the protocol directly, to test what a client library hides.
type rawConn struct {
	t  testing.TB
	ws *websocket.Conn
}

func dialRaw(t testing.TB, n *testNode, header http.Header) (*rawConn, *http.Response, error) {
	t.Helper()
	ws, resp, err := websocket.Dial(ctxT(t, 5*time.Second), n.WS(), &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(1 << 24)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return &rawConn{t: t, ws: ws}, resp, nil
}

func helloRaw(t testing.TB, n *testNode, user string) *rawConn {
	t.Helper()
	rc, _, err := dialRaw(t, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc.send(fmt.Sprintf(`{"type":"hello","token":%q}`, token(t, user, time.Hour)))
	if f := rc.next(); f.Type != chat.FrameWelcome {
		t.Fatalf("hello answered %+v", f)
	}
	return rc
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if err := r.ws.Write(ctxT(r.t, 5*time.Second), websocket.MessageText, []byte(s)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// pending holds frames read but not yet returned.
var pending sync.Map

// next returns the next server frame (skipping none), or fails.
func (r *rawConn) next() chat.ServerFrame {
	r.t.Helper()
	f, err := r.read(10 * time.Second)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return f
}

func (r *rawConn) read(d time.Duration) (chat.ServerFrame, error) {
	if q, ok := pending.Load(r); ok {
		fs := q.([]chat.ServerFrame)
		if len(fs) > 0 {
			pending.Store(r, fs[1:])
			return fs[0], nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, data, err := r.ws.Read(ctx)
	if err != nil {
		return chat.ServerFrame{}, err
	}
	var fs []chat.ServerFrame
	_ = chat.SplitFrames(data, func(b []byte) error {
		var f chat.ServerFrame
		if err := json.Unmarshal(b, &f); err != nil {
			r.t.Fatalf("server sent bad JSON %q: %v", b, err)
		}
		fs = append(fs, f)
		return nil
	})
	pending.Store(r, fs[1:])
	return fs[0], nil
}

// until reads frames until one of type typ arrives.
func (r *rawConn) until(typ string) chat.ServerFrame {
	r.t.Helper()
	for {
		if f := r.next(); f.Type == typ {
			return f
		}
	}
}

func closeCode(err error) websocket.StatusCode { return websocket.CloseStatus(err) }

func TestLostAckRetriedStoredOnce(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	n := startNode(t, js.URL, "")
	alice := dial(t, n, "alice")
	create(t, alice, "acks", false)
	ctx := ctxT(t, 30*time.Second)

	t.Run("Protocol", func(t *testing.T) {
		// The send reaches the server, the connection dies before its ack is read.
		rc := helloRaw(t, n, "bob")
		rc.send(`{"type":"join","ref":"j","room":"acks"}`)
		rc.until(chat.FrameJoined)
		rc.send(`{"type":"send","ref":"s","room":"acks","id":"lost-ack-1","text":"once"}`)
		_ = rc.ws.CloseNow()
		// The retry after reconnecting, under the same id, is answered as a duplicate.
		bob := dial(t, n, "bob")
		if _, err := bob.Join(ctx, "acks"); err != nil {
			t.Fatal(err)
		}
		ack, err := bob.SendID(ctx, "acks", "lost-ack-1", "once")
		if err != nil {
			t.Fatal(err)
		}
		if !ack.Dup {
			// The first send may not have reached the log before the close;
			// then this one is the first store, and a second retry must be dup.
			ack2, err := bob.SendID(ctx, "acks", "lost-ack-1", "once")
			if err != nil || !ack2.Dup || ack2.Seq != ack.Seq {
				t.Fatalf("second retry: %+v %v", ack2, err)
			}
		}
		countMessages(t, n, "acks", "lost-ack-1", 1)
	})
	t.Run("ClientRetriesAcrossDrops", func(t *testing.T) {
		carol := dial(t, n, "carol")
		if _, err := carol.Join(ctx, "acks"); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			id := fmt.Sprintf("drop-%d", i)
			done := make(chan error, 1)
			go func() { _, err := carol.SendID(ctx, "acks", id, "x"); done <- err }()
			time.Sleep(time.Duration(randIntn(3)) * time.Millisecond)
			carol.Drop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 30; i++ {
			countMessages(t, n, "acks", fmt.Sprintf("drop-%d", i), 1)
		}
	})
}

// countMessages replays the room from its start and checks how many
// message.sent events carry id.
func countMessages(t *testing.T, n *testNode, room, id string, want int) {
	t.Helper()
	rc := helloRaw(t, n, "auditor")
	rc.send(fmt.Sprintf(`{"type":"join","ref":"a","room":%q,"since":0}`, room))
	got := 0
	for {
		f := rc.next()
		if f.Type == chat.FrameJoined {
			break
		}
		if f.Type == chat.FrameEvent && f.Event.Type == chat.MessageSent && f.Event.ID == id {
			got++
		}
	}
	if got != want {
		t.Fatalf("%s stored %d times, want %d", id, got, want)
	}
	_ = rc.ws.Close(websocket.StatusNormalClosure, "")
}

func TestRestartKeepsLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := startNode(t, "", dir) // embedded nats-server on dir
	alice := dial(t, n, "alice")
	create(t, alice, "kept", false)
	ctx := ctxT(t, 30*time.Second)
	if _, err := alice.Join(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i := 0; i < 25; i++ {
		ack, err := alice.Send(ctx, "kept", fmt.Sprint("m", i))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ack.Seq)
	}
	// Shutdown tells clients to reconnect elsewhere.
	n.Stop(t)
	_ = alice.Close()
	n2 := startNode(t, "", dir)
	bob := dial(t, n2, "bob")
	if _, err := bob.Join(ctx, "kept", client.Since(0)); err != nil {
		t.Fatal(err)
	}
	got := collect(t, bob, "kept", 25, 10*time.Second)
	if fmt.Sprint(seqs(got)) != fmt.Sprint(want) {
		t.Fatalf("after restart %v, want %v", seqs(got), want)
	}
}

func TestShutdownClosesWithReconnectCode(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	n := startNode(t, js.URL, "")
	rc := helloRaw(t, n, "alice")
	go n.Stop(t)
	for {
		_, err := rc.read(15 * time.Second)
		if err != nil {
			if code := closeCode(err); code != chat.CloseShutdown {
				t.Fatalf("closed with %v (%v), want %d", code, err, chat.CloseShutdown)
			}
			return
		}
	}
}

// TestClientResumesOnAnotherNode: a node goes away; the client reconnects
// (here to a second node behind the same URL is not available without a
// proxy, so to a new node on the same log) and resumes without a gap.
func TestClientResumesAfterNodeRestart(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	n := startNode(t, js.URL, "")
	proxy := testrig.RunProxy(t, n.Addr)
	url := "ws://" + proxy.Addr + "/ws"
	ctx := ctxT(t, 60*time.Second)
	reader, err := client.Dial(ctx, client.Options{URL: url, Token: token(t, "reader", time.Hour), MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	writer := dial(t, n, "writer")
	create(t, writer, "moving", false)
	if _, err := reader.Join(ctx, "moving"); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Join(ctx, "moving"); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, js.URL, "")
	w2 := dial(t, n2, "writer2")
	if _, err := w2.Join(ctx, "moving"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := w2.Send(ctx, "moving", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		if i == 20 {
			proxy.SetTarget(n2.Addr) // the reader's next connection lands on node 2
			n.Stop(t)                // node 1 goes away under the reader
		}
	}
	got := collect(t, reader, "moving", 50, 20*time.Second)
	for i := 1; i < len(got); i++ {
		if got[i].Prev != got[i-1].Seq {
			t.Fatalf("chain broken at %d", i)
		}
	}
	if reader.Reconnects() < 1 {
		t.Fatal("reader never reconnected")
	}
	noClientErrors(t, reader)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	n := startNode(t, js.URL, "")
	for name, tok := range map[string]string{
		"ErrMissing": "",
		"ErrForged":  forge(t),
		"ErrExpired": token(t, "alice", -time.Minute),
	} {
		t.Run(name, func(t *testing.T) {
			rc, _, err := dialRaw(t, n, nil)
			if err != nil {
				t.Fatal(err)
			}
			rc.send(fmt.Sprintf(`{"type":"hello","token":%q}`, tok))
			f := rc.next()
			if f.Type != chat.FrameError || f.Code != chat.ErrUnauthorized {
				t.Fatalf("hello answered %+v", f)
			}
			if _, err := rc.read(5 * time.Second); closeCode(err) != chat.CloseUnauthorized {
				t.Fatalf("closed with %v, want %d", err, chat.CloseUnauthorized)
			}
			req, _ := http.NewRequest("GET", "http://"+n.Addr+"/api/v1/rooms", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("REST answered %d", resp.StatusCode)
			}
		})
	}
	t.Run("ErrPrivateRoom", func(t *testing.T) {
		ctx := ctxT(t, 20*time.Second)
		owner := dial(t, n, "owner")
		create(t, owner, "secret", true)
		if _, err := owner.Join(ctx, "secret"); err != nil {
			t.Fatal(err)
		}
		if _, err := owner.Send(ctx, "secret", "classified"); err != nil {
			t.Fatal(err)
		}
		eve := helloRaw(t, n, "eve")
		for _, f := range []string{
			`{"type":"join","ref":"1","room":"secret"}`,
			`{"type":"join","ref":"2","room":"secret","since":0}`,
		} {
			eve.send(f)
			if got := eve.until(chat.FrameError); got.Code != chat.ErrForbidden {
				t.Fatalf("join answered %+v", got)
			}
		}
		eve.send(`{"type":"send","ref":"3","room":"secret","id":"x","text":"hi"}`)
		if got := eve.until(chat.FrameError); got.Code != chat.ErrNotJoined {
			t.Fatalf("send answered %+v", got)
		}
		// A send right behind a join that will be refused must not slip in
		// while the join is checked.
		eve.send(`{"type":"join","ref":"6","room":"secret"}`)
		eve.send(`{"type":"send","ref":"7","room":"secret","id":"y","text":"sneaky"}`)
		for seen := 0; seen < 2; {
			f := eve.next()
			switch {
			case f.Type == chat.FrameAck:
				t.Fatalf("a non-member's send was stored: %+v", f)
			case f.Type == chat.FrameError:
				seen++
			}
		}
		// Leaving a room one is not a member of writes nothing.
		eve.send(`{"type":"leave","ref":"8","room":"secret","id":"l"}`)
		if f := eve.until(chat.FrameLeft); f.Ref != "8" {
			t.Fatalf("leave answered %+v", f)
		}
		if info := getJSON(t, n, "/api/v1/rooms/secret", "owner"); !strings.Contains(info, `"head":2,`) {
			t.Fatalf("room changed: %s", info)
		}
		eve.send(`{"type":"invite","ref":"4","room":"secret","id":"i","user":"eve"}`)
		if got := eve.until(chat.FrameError); got.Code != chat.ErrForbidden {
			t.Fatalf("self-invite answered %+v", got)
		}
		for _, path := range []string{"/api/v1/rooms/secret", "/api/v1/rooms/secret/members"} {
			if code := getStatus(t, n, path, "eve"); code != http.StatusForbidden {
				t.Fatalf("GET %s as eve = %d", path, code)
			}
		}
		rooms := getJSON(t, n, "/api/v1/rooms", "eve")
		if strings.Contains(rooms, "secret") {
			t.Fatalf("eve's room list shows the private room: %s", rooms)
		}
		// The creator invites; now eve may join and read the history.
		if _, err := owner.Do(ctx, chat.ClientFrame{Type: chat.FrameInvite, Room: "secret", User: "eve"}); err != nil {
			t.Fatal(err)
		}
		eve.send(`{"type":"join","ref":"5","room":"secret","since":0}`)
		sawMessage := false
		for {
			f := eve.next()
			if f.Type == chat.FrameEvent && f.Event.Text == "classified" {
				sawMessage = true
			}
			if f.Type == chat.FrameJoined {
				break
			}
			if f.Type == chat.FrameError {
				t.Fatalf("invited join answered %+v", f)
			}
		}
		if !sawMessage {
			t.Fatal("invited member did not get the history")
		}
	})
	t.Run("DevLoginOnlyInDevMode", func(t *testing.T) {
		prod := startNode(t, js.URL, "", "--dev=false")
		resp, err := http.Post("http://"+prod.Addr+"/api/v1/dev/login", "application/json", strings.NewReader(`{"name":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("dev login without dev mode answered %d", resp.StatusCode)
		}
		resp, err = http.Post("http://"+n.Addr+"/api/v1/dev/login", "application/json", strings.NewReader(`{"name":"dora"}`))
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Token string }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if out.Token == "" {
			t.Fatal("dev login returned no token")
		}
		if code := getStatusTok(t, n, "/api/v1/rooms", out.Token); code != http.StatusOK {
			t.Fatalf("dev token refused: %d", code)
		}
	})
}

func forge(t testing.TB) string {
	other, _ := auth.New([]byte(strings.Repeat("f", 40)), "jetchat")
	tok, _ := other.Issue("alice", time.Hour)
	return tok
}

func getStatus(t testing.TB, n *testNode, path, user string) int {
	return getStatusTok(t, n, path, token(t, user, time.Hour))
}

func getStatusTok(t testing.TB, n *testNode, path, tok string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.Addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func getJSON(t testing.TB, n *testNode, path, user string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.Addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+token(t, user, time.Hour))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

var _ = errors.New

func randIntn(n int) int { return rand.IntN(n) }

// freeAddr returns a free loopback address for a process to listen on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHealthy polls /healthz until the node answers.
func waitHealthy(t testing.TB, addr string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("%s never became healthy", addr)
}
