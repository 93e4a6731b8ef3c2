package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/testrig"
)

const testSecret = "test-secret-0123456789abcdef-0123456789"

// chatdBin is a chatd built once for the package's tests (package main of
// cmd/chatd cannot be imported).
var chatdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chatbench-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	chatdBin = filepath.Join(dir, "chatd")
	if out, err := exec.Command("go", "build", "-o", chatdBin, "../chatd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build chatd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type chatd struct {
	URL string
	cmd *exec.Cmd
}

// startChatd runs the chatd binary on a free loopback port with the high
// send limits benchmarks need; extra args are appended.
func startChatd(t *testing.T, extra ...string) *chatd {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append([]string{"--addr", addr, "--data-dir", t.TempDir(), "--jwt-secret", testSecret,
		"--send-rate", "1000000", "--send-burst", "1000000", "--log-level", "error"}, extra...)
	cmd := exec.Command(chatdBin, args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("chatd %s log:\n%s", addr, logs.String())
		}
	})
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(30 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chatd on %s never became healthy", addr)
		}
	}
	return &chatd{URL: "ws://" + addr + "/ws", cmd: cmd}
}

// bench runs chatbench with args and decodes its JSON result into v.
func bench(t *testing.T, v any, args ...string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := run(ctx, append(args, "--json", "--quiet"), func(string) string { return "" }, &stdout, &stderr)
	if err != nil {
		t.Fatalf("chatbench %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	t.Logf("chatbench %s:\n%s", strings.Join(args, " "), stderr.String())
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %q: %v", stdout.String(), err)
	}
	if dec.More() {
		t.Fatalf("more than one JSON object: %q", stdout.String())
	}
}

// checkDeliveries holds a fanout result to the delivery contract.
func checkDeliveries(t *testing.T, r *fanoutResult) {
	t.Helper()
	if r.Acked == 0 || r.Acked != r.Sent || r.Acked < r.Planned*9/10 {
		t.Errorf("planned %d, sent %d, acked %d: want every send acked", r.Planned, r.Sent, r.Acked)
	}
	if r.Expected != r.Acked*int64(r.Subs) {
		t.Errorf("expected %d deliveries, want acked %d x %d subscribers", r.Expected, r.Acked, r.Subs)
	}
	if r.Delivered == 0 || r.Delivered != r.Expected || r.Missing != 0 || r.Duplicates != 0 || r.ChainBreaks != 0 || r.Disconnects != 0 {
		t.Errorf("delivered %d of %d, missing %d, duplicates %d, chain breaks %d, disconnects %d: want all once, in order",
			r.Delivered, r.Expected, r.Missing, r.Duplicates, r.ChainBreaks, r.Disconnects)
	}
	if r.Latency.Count != uint64(r.Delivered) || r.Latency.P50 <= 0 || r.Latency.P50 > r.Latency.P99 || r.Latency.P99 > r.Latency.Max {
		t.Errorf("latency %+v for %d deliveries", r.Latency, r.Delivered)
	}
	if r.AckLatency.Count != uint64(r.Acked) || r.AckLatency.P50 <= 0 {
		t.Errorf("ack latency %+v for %d acks", r.AckLatency, r.Acked)
	}
	if r.DeliveryRatio != 1 || r.DeliveriesPerSec <= 0 || !r.Pass {
		t.Errorf("ratio %v, %v/s, pass %v", r.DeliveryRatio, r.DeliveriesPerSec, r.Pass)
	}
}

func TestFanout(t *testing.T) {
	t.Parallel()
	n := startChatd(t)
	for _, impl := range []string{"raw", "pkg"} {
		t.Run(impl, func(t *testing.T) {
			var r fanoutResult
			bench(t, &r, "fanout", "--url", n.URL, "--token-secret", testSecret, "--client", impl,
				"--rooms", "2", "--subs", "5", "--pubs", "2", "--rate", "40", "--duration", "1s", "--text-bytes", "200")
			checkDeliveries(t, &r)
			if r.Kind != "fanout" || r.Rooms != 2 || r.Subs != 5 || r.Pubs != 2 || r.Client != impl {
				t.Errorf("result describes another run: %+v", r)
			}
			// Every 16th delivery is split at the server's timestamp; a
			// timestamp that does not parse is not counted.
			if c := r.LatencyToServer.Count; c == 0 || c != r.LatencyFromServer.Count || c < uint64(r.Delivered)/16-10 {
				t.Errorf("latency split over %d/%d of %d deliveries", c, r.LatencyFromServer.Count, r.Delivered)
			}
			var slow int64
			for _, n := range r.SlowPerSecond {
				slow += n
			}
			if r.SlowAfterMs != 100 || slow > r.Delivered || len(r.SlowPerSecond) > 3 {
				t.Errorf("slow deliveries: %v over %v ms of %d in a 1 s run", r.SlowPerSecond, r.SlowAfterMs, r.Delivered)
			}
			if r.LatencyFromServer.Max > r.Latency.Max+1 {
				t.Errorf("server ts to receipt %v ms is over send to receipt %v ms", r.LatencyFromServer.Max, r.Latency.Max)
			}
			if r.Resources.ServerPID != n.cmd.Process.Pid || r.Resources.ServerRSSMB <= 0 {
				t.Errorf("server found by port: pid %d (want %d), RSS %v MiB", r.Resources.ServerPID, n.cmd.Process.Pid, r.Resources.ServerRSSMB)
			}
		})
	}
}

func TestFanoutDevLogin(t *testing.T) {
	t.Parallel()
	n := startChatd(t, "--dev")
	var r fanoutResult
	bench(t, &r, "fanout", "--url", n.URL, "--dev-login", "--rooms", "1", "--subs", "3", "--rate", "20", "--duration", "1s")
	checkDeliveries(t, &r)
}

func TestRamp(t *testing.T) {
	t.Parallel()
	n := startChatd(t)
	var r struct {
		Kind                     string          `json:"kind"`
		Rounds                   []*fanoutResult `json:"rounds"`
		LastPass                 float64         `json:"last_passing_rate_per_pub"`
		LastPassDeliveriesPerSec float64         `json:"last_passing_deliveries_per_s"`
		StoppedBy                string          `json:"stopped_by"`
	}
	bench(t, &r, "ramp", "--url", n.URL, "--token-secret", testSecret,
		"--rooms", "1", "--subs", "3", "--rate", "25", "--max-rate", "50", "--duration", "700ms")
	if len(r.Rounds) != 2 || r.StoppedBy != "max-rate" || r.LastPass != 50 || r.LastPassDeliveriesPerSec <= 0 {
		t.Fatalf("ramp: %d rounds, stopped by %q, last pass %v (%v/s): want 2 rounds passing at 25 and 50",
			len(r.Rounds), r.StoppedBy, r.LastPass, r.LastPassDeliveriesPerSec)
	}
	for i, round := range r.Rounds {
		checkDeliveries(t, round)
		if want := 25.0 * float64(int(1)<<i); round.Rate != want {
			t.Errorf("round %d at %v msg/s, want %v", i, round.Rate, want)
		}
	}
	if r.Rounds[0].Prefix == r.Rounds[1].Prefix {
		t.Errorf("rounds share the prefix %s: each needs fresh rooms", r.Rounds[0].Prefix)
	}
}

func TestSendLat(t *testing.T) {
	t.Parallel()
	n := startChatd(t)
	var r fanoutResult
	bench(t, &r, "sendlat", "--url", n.URL, "--token-secret", testSecret, "--rate", "400", "--rooms", "2", "--duration", "1s")
	if r.Kind != "sendlat" || r.Planned != 400 || r.Acked != r.Planned || len(r.SendErrors) != 0 {
		t.Errorf("planned %d, acked %d, errors %v: want 400 acked", r.Planned, r.Acked, r.SendErrors)
	}
	if r.AckLatency.Count != 400 || r.AckLatency.P50 <= 0 || r.AckLatency.P99 < r.AckLatency.P50 || !r.Pass {
		t.Errorf("ack latency %+v, pass %v", r.AckLatency, r.Pass)
	}
}

func TestConns(t *testing.T) {
	t.Parallel()
	n := startChatd(t)
	var r connsResult
	bench(t, &r, "conns", "--url", n.URL, "--token-secret", testSecret, "--n", "200", "--settle", "300ms",
		"--pid", fmt.Sprint(n.cmd.Process.Pid))
	if r.Conns != 200 || r.PID != n.cmd.Process.Pid || r.Disconnected != 0 {
		t.Errorf("result: %+v", r)
	}
	// Each connection holds at least its socket buffers and goroutines.
	if r.RSSBefore <= 0 || r.RSSAfter <= r.RSSBefore || r.KiBPerConn < 4 || r.KiBPerConn > 4096 {
		t.Errorf("RSS %d -> %d bytes, %.1f KiB per connection: implausible", r.RSSBefore, r.RSSAfter, r.KiBPerConn)
	}
}

// TestStorm runs two nodes on one nats-server, kills one, and checks that
// every client resumed with every message once, in order.
func TestStorm(t *testing.T) {
	t.Parallel()
	js := testrig.RunJetStream(t)
	a := startChatd(t, "--nats-url", js.URL)
	b := startChatd(t, "--nats-url", js.URL)
	var r stormResult
	bench(t, &r, "storm", "--url", a.URL+","+b.URL, "--token-secret", testSecret,
		"--n", "40", "--rooms", "4", "--interval", "50ms", "--kill-pid", fmt.Sprint(a.cmd.Process.Pid), "--duration", "10s", "--drain", "5s")
	if r.KilledURL != a.URL || r.Affected != 20 || r.Clients != 40 {
		t.Errorf("killed %s with %d of %d clients: want %s with 20 of 40", r.KilledURL, r.Affected, r.Clients, a.URL)
	}
	if r.Resumed != 20 || r.Reconnected != 20 || r.AllResumedS <= 0 || r.AllResumedS > 10 || r.Resume.Count != 20 || r.Unaffected.Count != 20 {
		t.Errorf("resumed %d, reconnected %d, all after %v s, resume %+v, unaffected %+v", r.Resumed, r.Reconnected, r.AllResumedS, r.Resume, r.Unaffected)
	}
	if r.Acked == 0 || r.Expected == 0 || r.Delivered != r.Expected || r.Missing != 0 || r.Duplicates != 0 || r.ChainBreaks != 0 || r.NotRecovered != 0 || !r.Pass {
		t.Errorf("acked %d, delivered %d of %d, missing %d, duplicates %d, chain breaks %d, not recovered %d, pass %v",
			r.Acked, r.Delivered, r.Expected, r.Missing, r.Duplicates, r.ChainBreaks, r.NotRecovered, r.Pass)
	}
	waited := make(chan error, 1)
	go func() { waited <- a.cmd.Wait() }()
	select {
	case <-waited:
		if ws, ok := a.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("node a ended with %v, want SIGKILL", a.cmd.ProcessState)
		}
	case <-time.After(5 * time.Second):
		t.Error("the killed node still runs")
	}
}

func TestRefusesRemote(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"ws://10.1.2.3:8080/ws", "ws://example.com/ws", "ws://127.0.0.1:1/ws,ws://192.168.0.1/ws"} {
		err := run(context.Background(), []string{"sendlat", "--url", u, "--token-secret", testSecret},
			func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("--url %s: %v, want a refusal", u, err)
		}
	}
	err := run(context.Background(), []string{"sendlat", "--url", "ws://127.0.0.1:1/ws"},
		func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--token-secret") {
		t.Errorf("no way to get tokens: %v", err)
	}
}

// TestChecksCatchFaults feeds the subscriber check a gap, a duplicate event,
// a reordering and a repeated message: each must be counted.
func TestChecksCatchFaults(t *testing.T) {
	f := &fanoutRun{fo: &fanoutOpts{Pubs: 1}}
	msg := func(n uint64) []byte { return msgText(nil, time.Now(), 0, n, 0) }
	sent := []byte(chat.MessageSent)
	for _, tc := range []struct {
		name           string
		events         [][2]uint64 // seq, prev; message n = seq
		breaks, dups   int64
		delivered      int64
		repeatLastText bool
	}{
		{name: "OK", events: [][2]uint64{{11, 10}, {12, 11}, {15, 12}}, delivered: 3},
		{name: "Gap", events: [][2]uint64{{11, 10}, {13, 12}}, breaks: 1, delivered: 2},
		{name: "DuplicateEvent", events: [][2]uint64{{11, 10}, {12, 11}, {12, 11}}, breaks: 1, dups: 1, delivered: 2},
		{name: "Reordered", events: [][2]uint64{{12, 11}, {11, 10}}, breaks: 2, delivered: 2},
		{name: "SameMessageTwice", events: [][2]uint64{{11, 10}, {12, 11}}, repeatLastText: true, dups: 1, delivered: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &subscriber{last: 10, got: map[int]*bitset{}, split: &latencySplit{}}
			f.subs = []*subscriber{s}
			for i, e := range tc.events {
				n := e[0]
				if tc.repeatLastText && i > 0 {
					n = tc.events[0][0]
				}
				f.event(s, time.Now(), e[0], e[1], sent, msg(n), time.Now().AppendFormat(nil, time.RFC3339Nano))
			}
			if s.breaks.Load() != tc.breaks || s.dups != tc.dups || f.deliveredSoFar() != tc.delivered {
				t.Errorf("breaks %d, dups %d, delivered %d; want %d, %d, %d", s.breaks.Load(), s.dups, f.deliveredSoFar(), tc.breaks, tc.dups, tc.delivered)
			}
		})
	}
}

func TestParseEvent(t *testing.T) {
	ev := chat.Event{ID: "m12", Type: chat.MessageSent, Room: "r-1", Author: "bob", Time: time.Now().UTC(), Seq: 42, Prev: 40,
		Text: string(msgText(nil, time.Unix(0, 1234567890), 3, 12, 30))}
	b, err := chat.AppendEventFrame(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	var e wireEvent
	if !fastParseEvent(b, &e) {
		t.Fatalf("the fast path does not read the server's layout: %s", b)
	}
	check := func(e wireEvent) {
		t.Helper()
		if string(e.ID) != "m12" || string(e.Type) != "message.sent" || string(e.Room) != "r-1" || string(e.Author) != "bob" || e.Seq != 42 || e.Prev != 40 || string(e.Text) != ev.Text {
			t.Errorf("parsed %+v", e)
		}
		sent, pub, n, ok := parseText(e.Text)
		if !ok || sent != 1234567890 || pub != 3 || n != 12 {
			t.Errorf("text %q: %d %d %d %v", e.Text, sent, pub, n, ok)
		}
	}
	check(e)
	// Another layout (reordered fields, an escape) takes the slow path.
	other := []byte(`{"event":{"seq":42,"prev":40,"id":"m12","type":"message.sent","room":"r-1","author":"bob","ts":"x","text":"` + ev.Text + `"},"type":"event"}`)
	if fastParseEvent(other, &e) {
		t.Fatal("fast path accepted another layout")
	}
	e = wireEvent{}
	if err := parseEvent(other, &e); err != nil {
		t.Fatal(err)
	}
	check(e)
	member := chat.Event{ID: "j", Type: chat.MemberJoined, Room: "r-1", Author: `a"b`, User: "a", Seq: 7, Prev: 6}
	b, _ = chat.AppendEventFrame(nil, &member)
	if err := parseEvent(b, &e); err != nil || e.Seq != 7 || e.Prev != 6 || string(e.Author) != `a"b` {
		t.Errorf("escaped author: %+v, %v", e, err)
	}
}

func TestHist(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	for _, q := range []struct{ q, want float64 }{{0.5, 500}, {0.95, 950}, {0.99, 990}} {
		if got := h.quantile(q.q); got < q.want*0.96 || got > q.want*1.04 {
			t.Errorf("q%v = %v ms, want about %v", q.q, got, q.want)
		}
	}
	if s := h.summary(); s.Max != 1000 || s.Count != 1000 {
		t.Errorf("summary %+v", s)
	}
}

// BenchmarkParseEvent compares the fast event reader with encoding/json.
func BenchmarkParseEvent(b *testing.B) {
	ev := chat.Event{ID: "m12345", Type: chat.MessageSent, Room: "cbabc-r1", Author: "cbabc-p1", Time: time.Now().UTC(), Seq: 4242424, Prev: 4242420,
		Text: string(msgText(nil, time.Now(), 3, 12345, 0))}
	line, _ := chat.AppendEventFrame(nil, &ev)
	b.Run("fast", func(b *testing.B) {
		var e wireEvent
		for i := 0; i < b.N; i++ {
			if !fastParseEvent(line, &e) {
				b.Fatal("slow path")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var f chat.ServerFrame
			if err := json.Unmarshal(line, &f); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestParseText(t *testing.T) {
	for _, c := range []struct {
		in   string
		sent int64
		pub  int
		n    uint64
		ok   bool
	}{
		{"1234 3 12", 1234, 3, 12, true},
		{"1234 3 12xxxx", 1234, 3, 12, true},
		{"1234 3 12 and more", 1234, 3, 12, true},
		{"", 0, 0, 0, false},
		{"1234 3", 0, 0, 0, false},
		{"1234 a 12", 0, 0, 0, false},
		{"1234 3 x", 0, 0, 0, false},
		{"-1 3 12", 0, 0, 0, false},
		{"99999999999999999999 3 12", 0, 0, 0, false},
		{"9223372036854775808 3 12", 0, 0, 0, false}, // past MaxInt64
	} {
		sent, pub, n, ok := parseText([]byte(c.in))
		if ok != c.ok || ok && (sent != c.sent || pub != c.pub || n != c.n) {
			t.Errorf("parseText(%q) = %d %d %d %v, want %d %d %d %v", c.in, sent, pub, n, ok, c.sent, c.pub, c.n, c.ok)
		}
	}
}

// TestSlowPerSecond: deliveries slower than --slow-ms are counted by the
// second of the run they were sent in; faster ones and ones sent before the
// run are not.
func TestSlowPerSecond(t *testing.T) {
	f := &fanoutRun{fo: &fanoutOpts{Pubs: 1, SlowMs: 50}}
	t0 := time.Unix(1_700_000_000, 0)
	f.start.Store(t0.UnixNano())
	s := &subscriber{last: 0, got: map[int]*bitset{}, split: &latencySplit{}}
	f.subs = []*subscriber{s}
	sent := []byte(chat.MessageSent)
	for i, d := range []struct{ at, lat time.Duration }{
		{500 * time.Millisecond, 10 * time.Millisecond},   // fast
		{1200 * time.Millisecond, 80 * time.Millisecond},  // slow, second 1
		{3900 * time.Millisecond, 200 * time.Millisecond}, // slow, second 3
		{3950 * time.Millisecond, 51 * time.Millisecond},  // slow, second 3
		{-time.Second, time.Second},                       // before the run: not counted by second
	} {
		at := t0.Add(d.at)
		seq := uint64(i + 1)
		f.event(s, at.Add(d.lat), seq, seq-1, sent, msgText(nil, at, 0, seq, 0), at.AppendFormat(nil, time.RFC3339Nano))
	}
	if want := []int64{0, 1, 0, 2}; !slices.Equal(s.slow, want) {
		t.Fatalf("slow by second %v, want %v", s.slow, want)
	}
	if got := slowRow([]int64{0, 1, 0, 2}); got != "3, by second sent: 1s:1 3s:2" {
		t.Errorf("slowRow: %q", got)
	}
	if got := slowRow(nil); got != "none" {
		t.Errorf("slowRow(nil): %q", got)
	}
}
