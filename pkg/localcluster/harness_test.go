package localcluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/auth"
	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/client"
	"github.com/jetchat/jetchat/pkg/localcluster"
)

// tokenFor signs a token for user with the cluster's secret.
func tokenFor(t testing.TB, c *localcluster.Cluster, user string) string {
	t.Helper()
	tokens, err := auth.New([]byte(c.Secret()), "jetchat")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokens.Issue(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wsURL turns http://host:port into ws://host:port/ws.
func wsURL(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/ws" }

// retries counts the client's retries of actions by error code, from its
// debug log ("retrying ... code=X").
type retries struct {
	mu     sync.Mutex
	byCode map[string]int
}

func (r *retries) Enabled(context.Context, slog.Level) bool { return true }
func (r *retries) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "retrying" {
		return nil
	}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "code" {
			r.mu.Lock()
			r.byCode[a.Value.String()]++
			r.mu.Unlock()
		}
		return true
	})
	return nil
}
func (r *retries) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *retries) WithGroup(string) slog.Handler      { return r }

func (r *retries) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.byCode) == 0 {
		return "none"
	}
	return fmt.Sprint(r.byCode)
}

// dial connects user to base (the cluster URL or a node's) and closes the
// client when the test ends.
func dial(t testing.TB, c *localcluster.Cluster, base, user string, log *slog.Logger) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Options{
		URL: wsURL(base), Token: tokenFor(t, c, user), Logger: log,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
	})
	if err != nil {
		t.Fatalf("dial %s as %s: %v", base, user, err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// member is one client of the load: it joined one room from its start and
// records every event it is given and every error its client reports.
type member struct {
	user string
	room string
	c    *client.Client

	mu     sync.Mutex
	events []chat.Event
	errs   []error
}

func (m *member) record() {
	go func() {
		for err := range m.c.Errors() {
			m.mu.Lock()
			m.errs = append(m.errs, err)
			m.mu.Unlock()
		}
	}()
	for ev := range m.c.Events() {
		if ev.Room != m.room {
			continue
		}
		m.mu.Lock()
		m.events = append(m.events, ev)
		m.mu.Unlock()
	}
}

func (m *member) last() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.events) == 0 {
		return 0
	}
	return m.events[len(m.events)-1].Seq
}

func (m *member) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.events)
}

// load is clients in rooms, joined through nginx, and a steady flow of
// sends under ids the test keeps, so that what was stored can be counted.
type load struct {
	t       *testing.T
	c       *localcluster.Cluster
	owner   string // created the rooms: a member of each, so its joins append nothing
	rooms   []string
	members []*member
	retries *retries

	stop    chan struct{}
	stopped chan struct{}
	wg      sync.WaitGroup // sends in flight

	mu     sync.Mutex
	sent   map[string]string // id -> room, every id attempted
	acks   map[string]uint64 // id -> acked seq
	failed map[string]error  // id -> the error Send returned
	acked  atomic.Int64
}

// startLoad creates rooms and connects clients (spread evenly over the
// rooms, each joined from the room's start) through nginx.
func startLoad(t *testing.T, c *localcluster.Cluster, prefix string, rooms, clients int) *load {
	t.Helper()
	l := &load{t: t, c: c, owner: prefix + "-owner", retries: &retries{byCode: map[string]int{}},
		sent: map[string]string{}, acks: map[string]uint64{}, failed: map[string]error{}}
	owner := dial(t, c, c.URL(), l.owner, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range rooms {
		room := fmt.Sprintf("%s-%02d", prefix, i)
		if _, err := owner.Do(ctx, chat.ClientFrame{Type: chat.FrameCreate, Room: room, Name: room}); err != nil {
			t.Fatalf("create %s: %v", room, err)
		}
		l.rooms = append(l.rooms, room)
	}
	log := slog.New(l.retries)
	l.members = make([]*member, clients)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m := &member{user: fmt.Sprintf("%s-u%03d", prefix, i), room: l.rooms[i%rooms]}
			cl, err := client.Dial(ctx, client.Options{
				URL: wsURL(c.URL()), Token: tokenFor(t, c, m.user), Logger: log,
				MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
			})
			if err != nil {
				failed.Store(fmt.Errorf("dial %s: %w", m.user, err))
				return
			}
			m.c = cl
			go m.record()
			if _, err := cl.Join(ctx, m.room, client.Since(0)); err != nil {
				failed.Store(fmt.Errorf("join %s as %s: %w", m.room, m.user, err))
			}
			l.members[i] = m
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, m := range l.members {
			if m != nil && m.c != nil {
				_ = m.c.Close()
			}
		}
	})
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	return l
}

// run sends rate messages a second, round robin over the members (each in
// its own room), until halt. Every send is retried by the client (same id)
// until it is acknowledged or 90 s pass.
func (l *load) run(rate int) {
	l.stop, l.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.stopped)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			m := l.members[k%len(l.members)]
			id := fmt.Sprintf("m%06d", k)
			l.mu.Lock()
			l.sent[id] = m.room
			l.mu.Unlock()
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				defer cancel()
				ack, err := m.c.SendID(ctx, m.room, id, fmt.Sprintf("%s says %s", m.user, id))
				l.mu.Lock()
				defer l.mu.Unlock()
				if err != nil {
					l.failed[id] = err
					return
				}
				l.acks[id] = ack.Seq
				l.acked.Add(1)
			}()
		}
	}()
}

// halt stops sending and waits for every send in flight to be acknowledged
// or to fail.
func (l *load) halt() {
	close(l.stop)
	<-l.stopped
	l.wg.Wait()
}

// progress waits up to d for at least n more acknowledgements than at the
// call, and reports how many arrived: the cluster is still taking sends.
func (l *load) progress(n int64, d time.Duration) int64 {
	start := l.acked.Load()
	deadline := time.Now().Add(d)
	for l.acked.Load()-start < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return l.acked.Load() - start
}

// replay joins every room from its start on a fresh connection of user (a
// member of each, so that joining appends nothing) through nginx and returns
// each room's events up to its head, as the log holds them.
func replay(t *testing.T, c *localcluster.Cluster, user string, rooms []string) map[string][]chat.Event {
	t.Helper()
	cl := dial(t, c, c.URL(), user, nil)
	out := map[string][]chat.Event{}
	var mu sync.Mutex
	go func() {
		for ev := range cl.Events() {
			mu.Lock()
			out[ev.Room] = append(out[ev.Room], ev)
			mu.Unlock()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	heads := map[string]uint64{}
	for _, room := range rooms {
		j, err := cl.Join(ctx, room, client.Since(0))
		if err != nil {
			t.Fatalf("replay %s: %v", room, err)
		}
		heads[room] = j.Head
	}
	// The replay precedes joined on the connection, but the events channel
	// is read by another goroutine: wait until each room reached its head.
	for _, room := range rooms {
		for {
			mu.Lock()
			evs := out[room]
			done := len(evs) > 0 && evs[len(evs)-1].Seq >= heads[room]
			mu.Unlock()
			if done || heads[room] == 0 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("replay %s: events stopped before the head %d", room, heads[room])
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	select {
	case err := <-cl.Errors():
		t.Fatalf("replay client reported: %v", err)
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	res := map[string][]chat.Event{}
	for _, room := range rooms {
		for _, ev := range out[room] {
			if ev.Seq <= heads[room] {
				res[room] = append(res[room], ev)
			}
		}
	}
	return res
}

// figures are what a fault test checked.
type figures struct {
	events  int // events checked against the log, over all clients
	logged  int // events in the rooms' logs
	sent    int // sends attempted
	dups    int // ids stored more than once
	lost    int // acknowledged or attempted ids not in the log, and events a client missed
	reconns int // client reconnects
}

// verify checks the delivery contract after the load has halted: every send
// acknowledged and stored exactly once under its id with the acked seq, and
// every client holding exactly its room's log from the start, in order, with
// its chain intact and no error reported.
func (l *load) verify() figures {
	t := l.t
	t.Helper()
	var f figures
	logs := replay(t, l.c, l.owner, l.rooms)

	// The log: each room a chain from 0, each id once.
	l.mu.Lock()
	defer l.mu.Unlock()
	f.sent = len(l.sent)
	for id, err := range l.failed {
		t.Errorf("send %s was not acknowledged: %v", id, err)
	}
	stored := map[string][]uint64{} // id -> seqs of its message.sent events
	for _, room := range l.rooms {
		var prev uint64
		for _, ev := range logs[room] {
			if ev.Prev != prev {
				t.Errorf("log of %s: event %d has prev %d, want %d", room, ev.Seq, ev.Prev, prev)
			}
			prev = ev.Seq
			f.logged++
			if ev.Type == chat.MessageSent && l.sent[ev.ID] != "" {
				stored[ev.ID] = append(stored[ev.ID], ev.Seq)
				if l.sent[ev.ID] != room {
					t.Errorf("id %s sent to %s is stored in %s", ev.ID, l.sent[ev.ID], room)
				}
			}
		}
	}
	for id := range l.sent {
		seqs := stored[id]
		switch {
		case len(seqs) == 0:
			f.lost++
			if _, ok := l.acks[id]; ok {
				t.Errorf("LOST: %s was acknowledged with seq %d but is not in the log", id, l.acks[id])
			} else {
				t.Errorf("LOST: %s is not in the log", id)
			}
		case len(seqs) > 1:
			f.dups++
			t.Errorf("DUPLICATE: %s stored %d times, at %v", id, len(seqs), seqs)
		case l.acks[id] != 0 && l.acks[id] != seqs[0]:
			t.Errorf("%s acknowledged as seq %d, stored as %d", id, l.acks[id], seqs[0])
		}
	}

	// Every client: exactly its room's log, once, in order.
	deadline := time.Now().Add(30 * time.Second)
	for _, m := range l.members {
		log := logs[m.room]
		head := uint64(0)
		if len(log) > 0 {
			head = log[len(log)-1].Seq
		}
		for m.last() < head && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		m.mu.Lock()
		var got []chat.Event // up to the head the log was read at
		for _, ev := range m.events {
			if ev.Seq <= head {
				got = append(got, ev)
			}
		}
		errs := append([]error(nil), m.errs...)
		m.mu.Unlock()
		f.events += len(got)
		f.reconns += m.c.Reconnects()
		for _, err := range errs {
			t.Errorf("client %s reported: %v", m.user, err)
		}
		if d := diff(got, log); d != "" {
			t.Errorf("client %s (room %s) differs from the log: %s", m.user, m.room, d)
			if len(got) < len(log) {
				f.lost += len(log) - len(got)
			}
		}
	}
	return f
}

// diff describes the first difference between a client's events and the
// log, or returns "".
func diff(got, log []chat.Event) string {
	for i := 0; i < min(len(got), len(log)); i++ {
		g, w := got[i], log[i]
		if g.Seq != w.Seq || g.Prev != w.Prev || g.ID != w.ID || g.Author != w.Author || g.Type != w.Type {
			return fmt.Sprintf("at %d got seq %d prev %d %s/%s, log has seq %d prev %d %s/%s",
				i, g.Seq, g.Prev, g.Author, g.ID, w.Seq, w.Prev, w.Author, w.ID)
		}
	}
	if len(got) != len(log) {
		return fmt.Sprintf("%d events, the log has %d", len(got), len(log))
	}
	return ""
}

// report logs the figures; the checks have failed the test already if
// anything was lost or duplicated.
func (l *load) report(f figures, faults string) {
	l.t.Logf("%s; %d sends (%d acked), %d events in %d rooms' logs, %d client events checked against them, %d client reconnects, retries by code: %s; lost: %d, duplicated: %d",
		faults, f.sent, len(l.acks), f.logged, len(l.rooms), f.events, f.reconns, l.retries, f.lost, f.dups)
}

// getJSON GETs path from base with user's token into v and returns the
// status.
func getJSON(t testing.TB, c *localcluster.Cluster, base, path, user string, v any) (int, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("Authorization", "Bearer "+tokenFor(t, c, user))
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return resp.StatusCode, fmt.Errorf("GET %s: %w: %s", path, err, b)
		}
	}
	return resp.StatusCode, nil
}
