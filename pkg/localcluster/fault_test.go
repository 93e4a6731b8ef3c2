package localcluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/localcluster"
	"github.com/jetchat/jetchat/pkg/testrig"
)

// The fault tests run the real binaries (chatd, projector, nats-server built
// without -race, Debian's redis-server and nginx, FerretDB in this process)
// and speak to them through nginx with pkg/client, as users would. Each has
// its own cluster: a fault in one must not touch another. They run one after
// another (no t.Parallel): a cluster keeps both cores of a CI machine busy.

// presenceExpiry is chatd's --presence-expiry in these tests.
const presenceExpiry = 3 * time.Second

func runCluster(t *testing.T) *localcluster.Cluster {
	t.Helper()
	return testrig.RunClusterWith(t, localcluster.Options{
		OptionalChatdArgs: map[string]string{"presence-expiry": presenceExpiry.String()},
	})
}

// acksIn lets the load run for window and fails the test unless at least n
// sends were acknowledged meanwhile: the cluster kept taking sends.
func acksIn(t *testing.T, l *load, window time.Duration, n int64, during string) int64 {
	t.Helper()
	start := l.acked.Load()
	time.Sleep(window)
	got := l.acked.Load() - start
	if got < n {
		t.Errorf("%s: %d sends acknowledged in %v, want at least %d", during, got, window, n)
	}
	return got
}

func TestNodeLoss(t *testing.T) {
	c := runCluster(t)
	l := startLoad(t, c, "loss", 20, 200)
	l.run(50)
	acksIn(t, l, 2*time.Second, 50, "before the faults")
	if err := c.KillNode(0); err != nil {
		t.Fatal(err)
	}
	acksIn(t, l, 4*time.Second, 100, "after chatd-1 was killed")
	if err := c.KillNode(1); err != nil {
		t.Fatal(err)
	}
	acksIn(t, l, 4*time.Second, 100, "after chatd-2 was killed")
	for _, i := range []int{0, 1} {
		if err := c.StartNode(i); err != nil {
			t.Fatal(err)
		}
	}
	acksIn(t, l, 3*time.Second, 75, "after the restarts")
	l.halt()
	f := l.verify()
	// A quarter of the clients sat on each killed node: each reconnected.
	if f.reconns < len(l.members)/4 {
		t.Errorf("%d client reconnects: the kills did not reach the clients (want at least %d)", f.reconns, len(l.members)/4)
	}
	l.report(f, "faults: SIGKILL chatd-1, SIGKILL chatd-2, both restarted")
}

func TestRollingRestart(t *testing.T) {
	rollingRestart(t, runCluster(t))
}

func rollingRestart(t *testing.T, c *localcluster.Cluster) {
	l := startLoad(t, c, "roll", 20, 200)
	l.run(50)
	acksIn(t, l, 2*time.Second, 50, "before the restarts")
	for i := range c.Nodes() {
		start := time.Now()
		if err := c.RestartNode(i); err != nil {
			t.Fatal(err)
		}
		t.Logf("chatd-%d restarted in %v", i+1, time.Since(start).Round(time.Millisecond))
		acksIn(t, l, 3*time.Second, 75, fmt.Sprintf("after chatd-%d restarted", i+1))
	}
	l.halt()
	f := l.verify()
	// Every client's node was restarted once: every client reconnected.
	for _, m := range l.members {
		if m.c.Reconnects() == 0 {
			t.Errorf("client %s never reconnected: its node was not restarted under it", m.user)
			break
		}
	}
	l.report(f, fmt.Sprintf("faults: %d graceful node restarts in turn", c.Nodes()))
}

// streamLeader returns the index of the NATS server leading the CHAT stream.
func streamLeader(t *testing.T, c *localcluster.Cluster) int {
	t.Helper()
	nc, err := nats.Connect(strings.Join(c.NATSURLs(), ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		s, err := js.Stream(ctx, "CHAT")
		if err == nil && s.CachedInfo().Cluster != nil && s.CachedInfo().Cluster.Leader != "" {
			leader := s.CachedInfo().Cluster.Leader
			for i := range 3 {
				if c.NATSName(i) == leader {
					return i
				}
			}
			t.Fatalf("CHAT stream leader %q is none of the cluster's servers", leader)
		}
		if ctx.Err() != nil {
			t.Fatalf("CHAT stream has no leader: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestNATSNodeLoss(t *testing.T) {
	c := runCluster(t)
	l := startLoad(t, c, "nats", 20, 200)
	l.run(50)
	acksIn(t, l, 2*time.Second, 50, "before the fault")
	leader := streamLeader(t, c)
	killed := time.Now()
	if err := c.KillNATS(leader); err != nil {
		t.Fatal(err)
	}
	// The stream elects a new leader among the two left (a quorum); sends in
	// the election wait, or fail with a retryable error the client retries.
	if got := l.progress(10, 20*time.Second); got < 10 {
		t.Fatalf("%d sends acknowledged in the 20 s after the stream leader was killed", got)
	}
	stall := time.Since(killed)
	acksIn(t, l, 5*time.Second, 100, fmt.Sprintf("after %s (the CHAT stream leader) was killed", c.NATSName(leader)))
	next := streamLeader(t, c)
	if next == leader {
		t.Errorf("the killed server %s still leads the stream", c.NATSName(leader))
	}
	t.Logf("stream leader %s killed; %s leads; 10 sends acknowledged %v after the kill", c.NATSName(leader), c.NATSName(next), stall.Round(time.Millisecond))
	if err := c.StartNATS(leader); err != nil {
		t.Fatal(err)
	}
	acksIn(t, l, 3*time.Second, 75, "after the server came back")
	l.halt()
	f := l.verify()
	l.report(f, fmt.Sprintf("faults: SIGKILL of %s (CHAT stream leader), restarted", c.NATSName(leader)))
}

// presence is GET /api/v1/rooms/{room}/presence.
type presence struct {
	Room   string   `json:"room"`
	Online []string `json:"online"`
}

func TestRedisRestart(t *testing.T) {
	c := runCluster(t)
	l := startLoad(t, c, "redis", 10, 100)
	l.run(40)
	acksIn(t, l, 2*time.Second, 40, "before the fault")
	if err := c.StopRedis(); err != nil {
		t.Fatal(err)
	}
	// Delivery and replay go on without Redis.
	before := l.members[0].count()
	acksIn(t, l, 5*time.Second, 100, "while Redis was down")
	if after := l.members[0].count(); after <= before {
		t.Errorf("while Redis was down, client %s got no events (%d before, %d after)", l.members[0].user, before, after)
	}
	if logs := replay(t, c, l.owner, l.rooms[:1]); len(logs[l.rooms[0]]) == 0 {
		t.Errorf("replay of %s while Redis was down returned nothing", l.rooms[0])
	}
	if err := c.StartRedis(); err != nil {
		t.Fatal(err)
	}
	acksIn(t, l, 3*time.Second, 60, "after Redis came back")
	if c.ChatdHasFlag("presence-expiry") {
		// Presence recovers: the nodes announce their users again.
		room := l.rooms[0]
		var want []string
		for _, m := range l.members {
			if m.room == room {
				want = append(want, m.user)
			}
		}
		var got presence
		deadline := time.Now().Add(3 * presenceExpiry)
		for {
			_, err := getJSON(t, c, c.URL(), "/api/v1/rooms/"+room+"/presence", l.owner, &got)
			if err == nil && containsAll(got.Online, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("presence of %s did not recover within %v after Redis came back: %v, %v (want %v)", room, 3*presenceExpiry, got.Online, err, want)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	} else {
		t.Log("presence is not wired into chatd yet (no --presence-expiry): only delivery and replay were checked")
	}
	l.halt()
	f := l.verify()
	l.report(f, "faults: redis-server stopped for about 10 s and restarted empty")
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// historyMessage is a message of GET /api/v1/rooms/{room}/messages.
type historyMessage struct {
	Seq    uint64 `json:"seq"`
	ID     string `json:"id"`
	Author string `json:"author"`
	Text   string `json:"text"`
}

// history reads a room's whole history through nginx, page by page. Pages
// of 100 fit FerretDB's first batch (101): a read the HTTP client gives up on
// leaves no cursor open there (abandoned cursors hold its SQLite connections).
func history(t *testing.T, c *localcluster.Cluster, user, room string) ([]historyMessage, error) {
	var all []historyMessage
	var after uint64
	for {
		var page struct {
			Messages []historyMessage `json:"messages"`
		}
		if _, err := getJSON(t, c, c.URL(), fmt.Sprintf("/api/v1/rooms/%s/messages?after=%d&limit=100", room, after), user, &page); err != nil {
			return all, err
		}
		all = append(all, page.Messages...)
		if len(page.Messages) < 100 {
			return all, nil
		}
		after = page.Messages[len(page.Messages)-1].Seq
	}
}

func TestMongoDown(t *testing.T) {
	const outage = 30 * time.Second
	c := runCluster(t)
	// FerretDB scans whole collections, in this race-instrumented process:
	// a small load keeps its work (and the projector's catch-up) small.
	l := startLoad(t, c, "mongo", 4, 40)
	l.run(10)
	acksIn(t, l, 2*time.Second, 10, "before the fault")
	if err := c.StopMongo(); err != nil { // FerretDB gives open connections 3 s to finish
		t.Fatal(err)
	}
	down := time.Now()
	// Live chat and replay go on; history is what waits.
	status, err := getJSON(t, c, c.URL(), "/api/v1/rooms/"+l.rooms[0]+"/messages", l.owner, nil)
	t.Logf("history while MongoDB is down: status %d (%v)", status, err)
	windows := 0
	for time.Since(down) < outage {
		before := l.members[0].count()
		acksIn(t, l, 5*time.Second, 25, fmt.Sprintf("%v into the MongoDB outage", time.Since(down).Round(time.Second)))
		if l.members[0].count() <= before {
			t.Errorf("%v into the MongoDB outage, client %s got no events", time.Since(down).Round(time.Second), l.members[0].user)
		}
		if windows == 2 {
			if logs := replay(t, c, l.owner, l.rooms[:1]); len(logs[l.rooms[0]]) == 0 {
				t.Errorf("replay of %s while MongoDB was down returned nothing", l.rooms[0])
			}
		}
		windows++
	}
	if err := c.StartMongo(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	acksIn(t, l, 3*time.Second, 15, "after MongoDB came back")
	l.halt()
	f := l.verify()

	// The projector catches up: each room's history equals the log's messages.
	logs := replay(t, c, l.owner, l.rooms)
	want := map[string][]historyMessage{}
	for _, room := range l.rooms {
		for _, ev := range logs[room] {
			if ev.Type == chat.MessageSent {
				want[room] = append(want[room], historyMessage{Seq: ev.Seq, ID: ev.ID, Author: ev.Author, Text: ev.Text})
			}
		}
	}
	// The projector catches up batch by batch, and a batch's bulk write is
	// ordered by (room, seq), not by seq: while one is half written a room
	// late in the order can lack messages that an earlier room's later
	// messages already passed. So poll every room until each equals the log.
	deadline, lastLog := time.Now().Add(90*time.Second), time.Now()
	for {
		var behind []string
		for _, room := range l.rooms {
			got, err := history(t, c, l.owner, room)
			if err != nil || !slices.Equal(got, want[room]) {
				behind = append(behind, fmt.Sprintf("%s: %v %s", room, err, historyDiff(got, want[room])))
			}
		}
		if len(behind) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history still differs from the log %v after MongoDB came back:\n%s", time.Since(up).Round(time.Second), strings.Join(behind, "\n"))
		}
		if time.Since(lastLog) > 10*time.Second {
			t.Logf("%v after MongoDB came back, still behind: %s", time.Since(up).Round(time.Second), strings.Join(behind, "; "))
			lastLog = time.Now()
		}
		time.Sleep(time.Second)
	}
	caughtUp := time.Since(up)
	t.Logf("projector caught up %v after MongoDB came back; history equals the log in all %d rooms", caughtUp.Round(time.Millisecond), len(l.rooms))
	l.report(f, fmt.Sprintf("faults: MongoDB (FerretDB) down for %v", up.Sub(down).Round(time.Second)))
}

func historyDiff(got, want []historyMessage) string {
	for i := 0; i < min(len(got), len(want)); i++ {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at %d: got %+v, log has %+v", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("got %d messages, the log has %d", len(got), len(want))
}

// presenceFrames connects user to a node directly with the raw protocol,
// joins room, and returns the presence frames it receives.
func presenceFrames(t *testing.T, c *localcluster.Cluster, addr, user, room string) <-chan rawPresence {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	ws.SetReadLimit(16 << 20)
	join := fmt.Sprintf(`{"type":"join","ref":"j","room":%q}`, room)
	for _, f := range []string{fmt.Sprintf(`{"type":"hello","token":%q}`, tokenFor(t, c, user)), join} {
		if err := ws.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for joined: from then on the room's presence notices reach us.
	// An "unavailable" answer (a new R3 stream still settling) is retried
	// after retry_after_ms, as the protocol asks of clients.
	jctx, jcancel := context.WithTimeout(ctx, 15*time.Second)
	defer jcancel()
	for joined := false; !joined; {
		_, msg, err := ws.Read(jctx)
		if err != nil {
			t.Fatalf("%s joining %s on %s: %v", user, room, addr, err)
		}
		for _, line := range strings.Split(string(msg), "\n") {
			var f struct {
				Type, Code   string
				RetryAfterMS int `json:"retry_after_ms"`
			}
			_ = json.Unmarshal([]byte(line), &f)
			switch {
			case f.Type == "joined":
				joined = true
			case f.Type == "error" && f.Code == "unavailable":
				t.Logf("%s joining %s on %s: %s; retrying", user, room, addr, line)
				time.Sleep(time.Duration(f.RetryAfterMS) * time.Millisecond)
				if err := ws.Write(ctx, websocket.MessageText, []byte(join)); err != nil {
					t.Fatal(err)
				}
			case f.Type == "error":
				t.Fatalf("%s joining %s on %s: %s", user, room, addr, line)
			}
		}
	}
	out := make(chan rawPresence, 256)
	go func() {
		for {
			_, msg, err := ws.Read(ctx)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(msg), "\n") {
				var f rawPresence
				if json.Unmarshal([]byte(line), &f) == nil && f.Type == "presence" && f.Room == room {
					select {
					case out <- f:
					default:
					}
				}
			}
		}
	}()
	return out
}

// rawPresence is the presence frame's fields as the protocol names them.
type rawPresence struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	User   string `json:"user"`
	Online *bool  `json:"online"`
}

func TestPresenceAcrossNodes(t *testing.T) {
	c := runCluster(t)
	if !c.ChatdHasFlag("presence-expiry") {
		t.Skip("presence is not wired into chatd yet (its --help lists no --presence-expiry); this test runs once it is")
	}
	const room = "presence"
	owner := dial(t, c, c.URL(), "p-owner", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := owner.Do(ctx, chat.ClientFrame{Type: chat.FrameCreate, Room: room}); err != nil {
		t.Fatal(err)
	}
	node1, node3 := "http://"+c.NodeAddr(0), "http://"+c.NodeAddr(2)
	// bob, on node 3, watches presence frames with the raw protocol.
	frames := presenceFrames(t, c, c.NodeAddr(2), "bob", room)
	alice := dial(t, c, node1, "alice", nil)
	go func() {
		for range alice.Events() {
		}
	}()
	if _, err := alice.Join(ctx, room); err != nil {
		t.Fatal(err)
	}
	// alice is listed for bob on node 3, and bob was told she came online.
	waitPresence(t, c, node3, "bob", room, "alice", true, 2*presenceExpiry)
	waitFrame(t, frames, "alice", true, 2*presenceExpiry)

	killed := time.Now()
	if err := c.KillNode(0); err != nil {
		t.Fatal(err)
	}
	// Nobody closes alice's session: her entry expires with node 1's heartbeat.
	gone := waitPresence(t, c, node3, "bob", room, "alice", false, 3*presenceExpiry)
	if gone > presenceExpiry+time.Second {
		t.Errorf("alice was listed %v after her node was killed; the expiry is %v", gone.Round(time.Millisecond), presenceExpiry)
	}
	waitFrame(t, frames, "alice", false, 3*presenceExpiry)
	t.Logf("alice (node 1) listed for bob (node 3); node 1 killed; she was gone from presence %v later (expiry %v); losses: 0",
		time.Since(killed).Round(time.Millisecond), presenceExpiry)
}

// waitPresence polls GET /presence on base until user's listing is online,
// and returns how long that took.
func waitPresence(t *testing.T, c *localcluster.Cluster, base, as, room, user string, online bool, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var got presence
	var err error
	for time.Since(start) < d {
		_, err = getJSON(t, c, base, "/api/v1/rooms/"+room+"/presence", as, &got)
		if err == nil && got.Room == room && slices.Contains(got.Online, user) == online {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("presence of %s on %s: %s online=%v not seen within %v: %+v, %v", room, base, user, online, d, got, err)
	return 0
}

func waitFrame(t *testing.T, frames <-chan rawPresence, user string, online bool, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case f := <-frames:
			if f.User == user && f.Online != nil && *f.Online == online {
				return
			}
		case <-timeout:
			t.Errorf("no presence frame {user: %s, online: %v} within %v", user, online, d)
			return
		}
	}
}
