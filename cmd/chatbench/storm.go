package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/client"
)

type stormOpts struct {
	N          int
	Rooms      int
	KillPID    int
	KillURL    string
	Interval   time.Duration
	MinBackoff time.Duration
	MaxBackoff time.Duration
	Drain      time.Duration
}

func stormFlags(fs *flag.FlagSet) *stormOpts {
	so := &stormOpts{}
	fs.IntVar(&so.N, "n", 2000, "N: clients (pkg/client, one room each), spread over the --url list")
	fs.IntVar(&so.Rooms, "rooms", 0, "rooms; default N/20")
	fs.IntVar(&so.KillPID, "kill-pid", 0, "the node to SIGKILL once every client receives (required)")
	fs.StringVar(&so.KillURL, "kill-url", "", "which --url that node serves; default: found from the pid's listening port")
	fs.DurationVar(&so.Interval, "interval", 100*time.Millisecond, "each room gets a message this often, from a publisher on a surviving node (the resume time's resolution)")
	fs.DurationVar(&so.MinBackoff, "min-backoff", 100*time.Millisecond, "clients' first reconnect delay bound (pkg/client default)")
	fs.DurationVar(&so.MaxBackoff, "max-backoff", 5*time.Second, "clients' largest reconnect delay bound (pkg/client default)")
	fs.DurationVar(&so.Drain, "drain", 10*time.Second, "after the storm, how long to wait for every acked message")
	return so
}

type stormResult struct {
	Kind        string  `json:"kind"`
	Prefix      string  `json:"prefix"`
	Clients     int     `json:"clients"`
	Rooms       int     `json:"rooms"`
	KilledURL   string  `json:"killed_url"`
	Affected    int     `json:"affected"` // clients whose node was killed
	Reconnected int     `json:"reconnected"`
	Resumed     int     `json:"resumed"` // affected clients that received a message sent after the kill
	AllResumedS float64 `json:"all_resumed_s"`
	// Reconnect: kill to the new connection's welcome (polled every 10 ms).
	// Resume: kill to the first message sent after the kill, which follows
	// the replay of everything missed (chain checked).
	Reconnect  latency `json:"reconnect"`
	Resume     latency `json:"resume"`
	Unaffected latency `json:"unaffected_resume"` // the same for clients on surviving nodes

	Acked         int64            `json:"acked"`
	Expected      int64            `json:"expected"`
	Delivered     int64            `json:"delivered"`
	Missing       int64            `json:"missing"`
	Duplicates    int64            `json:"duplicates"`
	ChainBreaks   int64            `json:"chain_breaks"` // seen by our check or reported by pkg/client
	NotRecovered  int64            `json:"not_recovered"`
	ClientErrors  map[string]int64 `json:"client_errors,omitempty"`
	PublishErrors int64            `json:"publish_errors"`
	Resources     resources        `json:"resources"`
	Pass          bool             `json:"pass"`
}

// stormClient is one client and what it has received.
type stormClient struct {
	c        *client.Client
	room     int
	affected bool
	mu       sync.Mutex
	last     uint64
	got      bitset
	dups     int64
	breaks   int64
	notRec   int64
	errs     map[string]int64
	resumed  time.Duration // kill to the first post-kill message; 0: not yet
	reconn   time.Duration // kill to Reconnects() > 0, polled
	done     chan struct{}
	received atomic.Int64
}

// failoverClient returns an HTTP client for handshakes that dials hosts in
// order: the first that accepts wins. pkg/client keeps one URL; this is how
// its reconnects reach another node once the first is gone.
func failoverClient(hosts []string) *http.Client {
	d := &net.Dialer{Timeout: 2 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		Proxy:             nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var first error
			for _, h := range hosts {
				c, err := d.DialContext(ctx, network, h)
				if err == nil {
					return c, nil
				}
				if first == nil {
					first = err
				}
			}
			return nil, first
		},
	}}
}

func runStorm(ctx context.Context, o *options, so *stormOpts) error {
	if len(o.URLs) < 2 {
		return errors.New("storm needs at least two nodes: --url ws://a/ws,ws://b/ws")
	}
	if so.KillPID <= 0 {
		return errors.New("storm needs --kill-pid")
	}
	if so.N < 1 {
		return errors.New("need --n >= 1")
	}
	if so.Rooms <= 0 {
		so.Rooms = max(1, so.N/20)
	}
	hosts := make([]string, len(o.URLs))
	killed := -1
	for i, u := range o.URLs {
		pu, _ := url.Parse(u)
		hosts[i] = pu.Host
		switch {
		case so.KillURL != "":
			if u == so.KillURL {
				killed = i
			}
		default:
			if port, err := strconv.Atoi(pu.Port()); err == nil {
				if pid, err := listenerPID(port); err == nil && pid == so.KillPID {
					killed = i
				}
			}
		}
	}
	if killed < 0 {
		return fmt.Errorf("no --url is served by pid %d: pass --kill-url", so.KillPID)
	}
	survivor := (killed + 1) % len(o.URLs)
	// Each preferred node first, then the others in order.
	clients := make([]*http.Client, len(hosts))
	for i := range hosts {
		order := []string{hosts[i]}
		for j := range hosts {
			if j != i {
				order = append(order, hosts[j])
			}
		}
		clients[i] = failoverClient(order)
	}

	rooms, err := o.createRooms(ctx, so.Rooms)
	if err != nil {
		return err
	}
	var killNanos atomic.Int64
	cs := make([]*stormClient, so.N)
	var wg sync.WaitGroup
	defer func() {
		for _, sc := range cs {
			if sc != nil {
				_ = sc.c.Close()
			}
		}
		wg.Wait()
	}()
	err = parallel(ctx, so.N, o.DialConc, func(ctx context.Context, i int) error {
		pref := i % len(o.URLs)
		tok, err := o.token(ctx, fmt.Sprintf("%s-s%d", o.Prefix, i))
		if err != nil {
			return err
		}
		c, err := client.Dial(ctx, client.Options{URL: o.URLs[pref], Token: tok, HTTPClient: clients[pref],
			MinBackoff: so.MinBackoff, MaxBackoff: so.MaxBackoff})
		if err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		sc := &stormClient{c: c, room: i % so.Rooms, affected: pref == killed, done: make(chan struct{})}
		cs[i] = sc
		j, err := c.Join(ctx, rooms[sc.room])
		if err != nil {
			return fmt.Errorf("client %d join: %w", i, err)
		}
		sc.last = j.Head
		wg.Add(2)
		go func() { defer wg.Done(); sc.read(&killNanos) }()
		go func() { defer wg.Done(); sc.errors() }()
		return nil
	})
	if err != nil {
		return err
	}

	// Publishers on the surviving node, one connection per 50 rooms.
	pubCtx, stopPubs := context.WithCancel(ctx)
	defer stopPubs()
	publish := make(chan struct{})
	acked := make([]bitset, so.Rooms)
	ackSeq := make([]map[uint64]uint64, so.Rooms) // room: message n to its seq, for the missing report
	for r := range ackSeq {
		ackSeq[r] = map[uint64]uint64{}
	}
	var ackMu sync.Mutex
	var pubErrs, nAcked atomic.Int64
	var pwg sync.WaitGroup
	for first := 0; first < so.Rooms; first += 50 {
		tok, err := o.token(ctx, fmt.Sprintf("%s-pub%d", o.Prefix, first/50))
		if err != nil {
			return err
		}
		pc, err := client.Dial(ctx, client.Options{URL: o.URLs[survivor], Token: tok})
		if err != nil {
			return fmt.Errorf("publisher: %w", err)
		}
		defer pc.Close()
		go func() {
			for range pc.Events() {
			}
		}()
		for r := first; r < min(first+50, so.Rooms); r++ {
			if _, err := pc.Join(ctx, rooms[r]); err != nil {
				return fmt.Errorf("publisher join: %w", err)
			}
			pwg.Add(1)
			go func() {
				defer pwg.Done()
				select { // once every publisher has joined: the joins do not queue behind the load
				case <-publish:
				case <-pubCtx.Done():
					return
				}
				t := time.NewTicker(so.Interval)
				defer t.Stop()
				var text []byte
				for n := uint64(0); ; n++ {
					select {
					case <-t.C:
					case <-pubCtx.Done():
						return
					}
					text = msgText(text[:0], time.Now(), r, n, 0)
					sctx, cancel := context.WithTimeout(pubCtx, 10*time.Second)
					ack, err := pc.SendID(sctx, rooms[r], "m"+strconv.FormatUint(n, 10), string(text))
					cancel()
					if err != nil {
						if pubCtx.Err() == nil {
							pubErrs.Add(1)
						}
						continue
					}
					ackMu.Lock()
					acked[r].set(n)
					ackSeq[r][n] = ack.Seq
					ackMu.Unlock()
					nAcked.Add(1)
				}
			}()
		}
	}

	close(publish)

	// Warm up: every client receives something.
	warm := time.Now()
	for !sleepCtx(ctx, 20*time.Millisecond) || !allReceived(cs) {
		if ctx.Err() != nil {
			return fmt.Errorf("warm-up: not every client received a message: %w", ctx.Err())
		}
		if time.Since(warm) > 20*time.Second {
			warm = time.Now()
			for i, sc := range cs {
				if sc.received.Load() == 0 {
					fmt.Fprintf(o.stderr, "storm: warm-up: client %d (%s-s%d, room %s, reconnects %d) has received nothing\n",
						i, o.Prefix, i, rooms[sc.room], sc.c.Reconnects())
				}
			}
		}
	}
	stats := o.startStats()
	stats.pid = 0 // the killed node's CPU cannot be read afterwards
	affected := 0
	for _, sc := range cs {
		if sc.affected {
			affected++
		}
	}
	fmt.Fprintf(o.stderr, "storm: %d clients receiving; killing pid %d (%s, %d clients)\n", so.N, so.KillPID, o.URLs[killed], affected)
	kill := time.Now()
	killNanos.Store(kill.UnixNano())
	if err := syscall.Kill(so.KillPID, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %d: %w", so.KillPID, err)
	}
	stopProgress := o.progress("storm", func() string {
		var rec, res int
		for _, sc := range cs {
			if sc.affected && sc.c.Reconnects() > 0 {
				rec++
			}
			sc.mu.Lock()
			if sc.affected && sc.resumed > 0 {
				res++
			}
			sc.mu.Unlock()
		}
		return fmt.Sprintf("of %d affected: %d reconnected, %d resumed; %d acked", affected, rec, res, nAcked.Load())
	})
	defer stopProgress()
	stormCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var allResumed time.Duration
	for sleepCtx(stormCtx, 10*time.Millisecond) {
		left := 0
		for _, sc := range cs {
			sc.mu.Lock()
			if sc.reconn == 0 && sc.c.Reconnects() > 0 {
				sc.reconn = time.Since(kill)
			}
			if sc.resumed == 0 {
				left++
			}
			sc.mu.Unlock()
		}
		if left == 0 {
			allResumed = time.Since(kill)
			break
		}
	}
	sleepCtx(ctx, time.Second)
	stopPubs()
	pwg.Wait()
	stopProgress()
	// Drain: every acked message reaches every client of its room.
	drainCtx, dcancel := context.WithTimeout(ctx, so.Drain)
	defer dcancel()
	for sleepCtx(drainCtx, 20*time.Millisecond) {
		var want, have int64
		ackMu.Lock()
		for _, sc := range cs {
			sc.mu.Lock()
			_, both := andNotCount(acked[sc.room], sc.got)
			sc.mu.Unlock()
			all := acked[sc.room].count()
			want, have = want+all, have+both
		}
		ackMu.Unlock()
		if have >= want {
			break
		}
	}
	res := stats.stop()
	for _, sc := range cs {
		_ = sc.c.Close()
	}
	wg.Wait()

	r := stormResult{Kind: "storm", Prefix: o.Prefix, Clients: so.N, Rooms: so.Rooms, KilledURL: o.URLs[killed],
		Affected: affected, AllResumedS: round3(allResumed.Seconds()), Acked: nAcked.Load(), PublishErrors: pubErrs.Load(), Resources: res}
	var rec, resume, other hist
	for _, sc := range cs {
		all := acked[sc.room].count()
		missing, both := andNotCount(acked[sc.room], sc.got)
		r.Expected += all
		r.Delivered += both
		r.Missing += missing
		r.Duplicates += sc.dups
		r.ChainBreaks += sc.breaks
		r.NotRecovered += sc.notRec
		for k, v := range sc.errs {
			if r.ClientErrors == nil {
				r.ClientErrors = map[string]int64{}
			}
			r.ClientErrors[k] += v
		}
		switch {
		case !sc.affected:
			if sc.resumed > 0 {
				other.add(sc.resumed)
			}
		default:
			if sc.reconn > 0 {
				r.Reconnected++
				rec.add(sc.reconn)
			}
			if sc.resumed > 0 {
				r.Resumed++
				resume.add(sc.resumed)
			}
		}
	}
	r.Reconnect, r.Resume, r.Unaffected = rec.summary(), resume.summary(), other.summary()
	if r.Missing > 0 {
		reportMissing(o, cs, acked, ackSeq, rooms)
	}
	if r.Resumed < affected {
		reportUnresumed(o, cs, rooms)
	}
	r.Pass = r.Resumed == affected && allResumed > 0 && r.Missing == 0 && r.Duplicates == 0 && r.ChainBreaks == 0 && r.NotRecovered == 0
	return o.report(r, [][2]string{
		{"storm", fmt.Sprintf("%d clients in %d rooms over %d nodes; killed %s (%d clients)", r.Clients, r.Rooms, len(o.URLs), r.KilledURL, r.Affected)},
		{"all resumed after", fmt.Sprintf("%.3f s (%d of %d resumed, %d reconnected)", r.AllResumedS, r.Resumed, r.Affected, r.Reconnected)},
		{"reconnect (welcome)", r.Reconnect.String()},
		{"resume (caught up)", r.Resume.String()},
		{"unaffected clients", r.Unaffected.String()},
		{"messages", fmt.Sprintf("acked %d, delivered %d of %d, missing %d, duplicates %d, chain breaks %d, not recovered %d, publish errors %d",
			r.Acked, r.Delivered, r.Expected, r.Missing, r.Duplicates, r.ChainBreaks, r.NotRecovered, r.PublishErrors)},
		{"client errors", fmt.Sprint(r.ClientErrors)},
		{"cpu", res.String()},
		{"pass", strconv.FormatBool(r.Pass)},
	})
}

func allReceived(cs []*stormClient) bool {
	for _, sc := range cs {
		if sc.received.Load() == 0 {
			return false
		}
	}
	return true
}

// read checks the client's events: the chain, each message once, and the
// first message sent after the kill.
func (sc *stormClient) read(killNanos *atomic.Int64) {
	defer close(sc.done)
	for ev := range sc.c.Events() {
		now := time.Now()
		sc.mu.Lock()
		if ev.Seq <= sc.last || ev.Prev != sc.last {
			sc.breaks++
		}
		sc.last = max(sc.last, ev.Seq)
		if ev.Type == chat.MessageSent {
			if sent, room, n, ok := parseText([]byte(ev.Text)); ok && room == sc.room {
				if sc.got.set(n) {
					sc.dups++
				}
				if k := killNanos.Load(); k > 0 && sent > k && sc.resumed == 0 {
					sc.resumed = now.Sub(time.Unix(0, k))
				}
				sc.received.Add(1)
			}
		}
		sc.mu.Unlock()
	}
}

// errors counts what pkg/client reports: chain errors (it drops those
// events and repairs the room), rooms not recovered, anything else by type.
func (sc *stormClient) errors() {
	count := func(err error) {
		var ce *client.ChainError
		var nr *client.NotRecoveredError
		sc.mu.Lock()
		defer sc.mu.Unlock()
		switch {
		case errors.As(err, &ce):
			sc.breaks++
		case errors.As(err, &nr):
			sc.notRec++
		case errors.Is(err, client.ErrClosed):
		default:
			if sc.errs == nil {
				sc.errs = map[string]int64{}
			}
			sc.errs[fmt.Sprintf("%T", err)]++
		}
	}
	for {
		select {
		case err := <-sc.c.Errors():
			count(err)
		case <-sc.done:
			for {
				select {
				case err := <-sc.c.Errors():
					count(err)
				default:
					return
				}
			}
		}
	}
}

// reportMissing names, on stderr, the clients that lack acked messages: which
// messages (with their seqs), where the client's chain stands, and whether it
// reconnected. A lost tail and a lost middle point at different causes.
func reportMissing(o *options, cs []*stormClient, acked []bitset, ackSeq []map[uint64]uint64, rooms []string) {
	shown := 0
	for i, sc := range cs {
		missing, _ := andNotCount(acked[sc.room], sc.got)
		if missing == 0 {
			continue
		}
		if shown++; shown > 20 {
			fmt.Fprintln(o.stderr, "storm: more clients miss messages; not shown")
			return
		}
		var ns []string
		for w, bits := range acked[sc.room] {
			var have uint64
			if w < len(sc.got) {
				have = sc.got[w]
			}
			for b := 0; b < 64 && len(ns) < 8; b++ {
				if bits&^have&(1<<b) != 0 {
					n := uint64(w*64 + b)
					ns = append(ns, fmt.Sprintf("m%d@%d", n, ackSeq[sc.room][n]))
				}
			}
		}
		fmt.Fprintf(o.stderr, "storm: client %d (room %s, affected %v, reconnects %d) last seq %d, position %d, misses %d: %v\n",
			i, rooms[sc.room], sc.affected, sc.c.Reconnects(), sc.last, sc.c.Position(rooms[sc.room]), missing, ns)
	}
}

// reportUnresumed names, on stderr, affected clients that never received a
// message sent after the kill.
func reportUnresumed(o *options, cs []*stormClient, rooms []string) {
	shown := 0
	for i, sc := range cs {
		if !sc.affected || sc.resumed > 0 {
			continue
		}
		if shown++; shown > 10 {
			fmt.Fprintln(o.stderr, "storm: more clients did not resume; not shown")
			return
		}
		fmt.Fprintf(o.stderr, "storm: client %d (room %s, reconnects %d) did not resume: last seq %d, received %d messages\n",
			i, rooms[sc.room], sc.c.Reconnects(), sc.last, sc.received.Load())
	}
}
