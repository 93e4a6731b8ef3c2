package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/client"
)

type fanoutOpts struct {
	Rooms, Subs, Pubs int
	Rate              float64 // messages per second per publisher
	TextBytes         int
	Client            string // subscribers: raw or pkg
	Drain             time.Duration
	SlowMs            float64 // deliveries slower than this are counted per second of sending
}

func fanoutFlags(fs *flag.FlagSet, rooms, subs, pubs int, rate float64) *fanoutOpts {
	fo := &fanoutOpts{}
	fs.IntVar(&fo.Rooms, "rooms", rooms, "R: rooms")
	fs.IntVar(&fo.Subs, "subs", subs, "S: subscribers per room (one connection each)")
	fs.IntVar(&fo.Pubs, "pubs", pubs, "P: publishers per room (one connection each)")
	fs.Float64Var(&fo.Rate, "rate", rate, "M: messages per second per publisher (the first rate for ramp)")
	fs.IntVar(&fo.TextBytes, "text-bytes", 0, "pad each message text to this many bytes")
	fs.StringVar(&fo.Client, "client", "raw", "subscriber implementation: raw (lean reader) or pkg (pkg/client)")
	fs.DurationVar(&fo.Drain, "drain", 10*time.Second, "after sending, how long to wait for the last deliveries")
	fs.Float64Var(&fo.SlowMs, "slow-ms", 100, "count deliveries slower than this many ms by the second they were sent in (when the tail happened: slow_per_second)")
	return fo
}

// fanoutResult is one fanout run.
type fanoutResult struct {
	Kind      string  `json:"kind"`
	Prefix    string  `json:"prefix"`
	Rooms     int     `json:"rooms"`
	Subs      int     `json:"subs_per_room"`
	Pubs      int     `json:"pubs_per_room"`
	Rate      float64 `json:"rate_per_pub"`
	Client    string  `json:"client"`
	DurationS float64 `json:"duration_s"`

	Planned    int64            `json:"planned"`
	Sent       int64            `json:"sent"`
	Acked      int64            `json:"acked"`
	SendErrors map[string]int64 `json:"send_errors,omitempty"`
	AckLatency latency          `json:"ack_latency"`

	Expected         int64            `json:"expected"`  // acked messages x subscribers of their room
	Delivered        int64            `json:"delivered"` // of those, received (once)
	DeliveryRatio    float64          `json:"delivery_ratio"`
	DeliveriesPerSec float64          `json:"deliveries_per_s"`
	Missing          int64            `json:"missing"`
	Duplicates       int64            `json:"duplicates"`   // a message id received twice by one subscriber
	ChainBreaks      int64            `json:"chain_breaks"` // events whose prev was not the last seq received (or seq not above it)
	Disconnects      int64            `json:"disconnects"`
	CloseCodes       map[string]int64 `json:"close_codes,omitempty"`
	Latency          latency          `json:"latency"` // send (wall clock in the text) to receipt
	// Latency split at the event's server timestamp, over every 16th delivery.
	LatencyToServer   latency `json:"latency_to_server"`
	LatencyFromServer latency `json:"latency_from_server"`
	// Deliveries slower than SlowAfterMs, by the second of the run they were
	// sent in: whether p99 comes from the start, from bursts or from all along.
	SlowAfterMs   float64 `json:"slow_after_ms"`
	SlowPerSecond []int64 `json:"slow_per_second,omitempty"`

	Resources resources `json:"resources"`
	Pass      bool      `json:"pass"` // delivery >= 99%, p99 <= 250 ms, acked >= 99% of planned
}

// bitset is a growable set of small integers.
type bitset []uint64

func (b *bitset) set(i uint64) (was bool) {
	w := int(i / 64)
	for len(*b) <= w {
		*b = append(*b, 0)
	}
	m := uint64(1) << (i % 64)
	was = (*b)[w]&m != 0
	(*b)[w] |= m
	return was
}

func (b bitset) count() (n int64) {
	for _, w := range b {
		n += int64(bits.OnesCount64(w))
	}
	return n
}

// andNotCount counts the members of a that are not in b, and those in both.
func andNotCount(a, b bitset) (missing, both int64) {
	for i, w := range a {
		var o uint64
		if i < len(b) {
			o = b[i]
		}
		missing += int64(bits.OnesCount64(w &^ o))
		both += int64(bits.OnesCount64(w & o))
	}
	return
}

// publisher sends to one room at a fixed rate and times the acks.
type publisher struct {
	idx  int // global index: room*P + j
	room string
	conn *rawConn

	mu      sync.Mutex
	pending map[uint64]time.Time
	acked   bitset
	errs    map[string]int64
	ack     hist

	sent, nAcked atomic.Int64
}

// subscriber receives one room and checks every event.
type subscriber struct {
	room   int
	conn   *rawConn
	pkg    *client.Client
	last   uint64
	got    map[int]*bitset // by publisher index
	h      hist
	split  *latencySplit // every splitEvery-th delivery: send -> server ts -> receipt
	n      int
	dups   int64
	breaks atomic.Int64
	slow   []int64 // deliveries slower than fanoutOpts.SlowMs, by second of sending
	// delivered counts its unique deliveries: a counter per subscriber, as
	// one shared by every reader bounced its cache line between the cores
	// at each of the run's hundreds of thousands of deliveries a second.
	delivered atomic.Int64
	err       error
	done      chan struct{} // pkg: closed when Events is
}

type fanoutRun struct {
	o     *options
	fo    *fanoutOpts
	rooms []string
	pubs  []*publisher
	subs  []*subscriber
	wg    sync.WaitGroup

	chainBad atomic.Int64
	closing  atomic.Bool  // closeAll has begun: read errors are ours
	start    atomic.Int64 // when sending began, unix ns: slow deliveries are counted by second from it
}

// msgText is a message's text: send time, publisher, number, padding.
func msgText(dst []byte, sent time.Time, pub int, n uint64, pad int) []byte {
	start := len(dst)
	dst = strconv.AppendInt(dst, sent.UnixNano(), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(pub), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, n, 10)
	for len(dst)-start < pad {
		dst = append(dst, 'x')
	}
	return dst
}

// parseText reads msgText's fields without allocating (it runs once per
// delivery, on the cores the server under test shares).
func parseText(b []byte) (sent int64, pub int, n uint64, ok bool) {
	f0, rest, ok0 := bytes.Cut(b, []byte{' '})
	f1, f2, ok1 := bytes.Cut(rest, []byte{' '})
	if !ok0 || !ok1 {
		return 0, 0, 0, false
	}
	if i := bytes.IndexByte(f2, ' '); i >= 0 {
		f2 = f2[:i]
	}
	f2 = bytes.TrimRight(f2, "x")
	s, okS := atou(f0)
	p, okP := atou(f1)
	n, okN := atou(f2)
	if !okS || !okP || !okN || s > math.MaxInt64 || p > math.MaxInt32 {
		return 0, 0, 0, false
	}
	return int64(s), int(p), n, true
}

// atou parses a non-empty run of decimal digits.
func atou(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 { // 19 digits cannot overflow a uint64
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

func runFanout(ctx context.Context, o *options, fo *fanoutOpts) error {
	res, err := fanout(ctx, o, fo, o.Prefix)
	if err != nil {
		return err
	}
	return o.report(res, fanoutRows(res))
}

func fanoutRows(r *fanoutResult) [][2]string {
	rows := [][2]string{
		{"fanout", fmt.Sprintf("%d rooms x (%d subs, %d pubs at %g msg/s), %s, subscribers: %s", r.Rooms, r.Subs, r.Pubs, r.Rate, time.Duration(r.DurationS*float64(time.Second)), r.Client)},
		{"sends", fmt.Sprintf("planned %d, sent %d, acked %d, errors %v", r.Planned, r.Sent, r.Acked, r.SendErrors)},
		{"ack latency", r.AckLatency.String()},
	}
	if r.Subs > 0 {
		rows = append(rows,
			[2]string{"deliveries", fmt.Sprintf("%d of %d (%.3f%%), %.0f/s", r.Delivered, r.Expected, 100*r.DeliveryRatio, r.DeliveriesPerSec)},
			[2]string{"checks", fmt.Sprintf("missing %d, duplicates %d, chain breaks %d, disconnects %d %v", r.Missing, r.Duplicates, r.ChainBreaks, r.Disconnects, r.CloseCodes)},
			[2]string{"delivery latency", r.Latency.String()},
			[2]string{"  send to server ts", r.LatencyToServer.String()},
			[2]string{"  server ts to receipt", r.LatencyFromServer.String()},
			[2]string{fmt.Sprintf("slow (> %g ms)", r.SlowAfterMs), slowRow(r.SlowPerSecond)},
		)
	}
	rows = append(rows, [2]string{"cpu", r.Resources.String()}, [2]string{"pass", strconv.FormatBool(r.Pass)})
	return rows
}

// fanout runs one round: connect, send for the duration, drain, check.
func fanout(ctx context.Context, o *options, fo *fanoutOpts, prefix string) (*fanoutResult, error) {
	if fo.Rooms < 1 || fo.Pubs < 1 || fo.Subs < 0 || fo.Rate <= 0 {
		return nil, errors.New("need --rooms >= 1, --pubs >= 1, --subs >= 0, --rate > 0")
	}
	if fo.Client != "raw" && fo.Client != "pkg" {
		return nil, fmt.Errorf("--client %q: raw or pkg", fo.Client)
	}
	oo := *o
	oo.Prefix = prefix
	f := &fanoutRun{o: &oo, fo: fo}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer f.closeAll()

	var err error
	if f.rooms, err = oo.createRooms(ctx, fo.Rooms); err != nil {
		return nil, err
	}
	if err := f.connect(ctx); err != nil {
		return nil, err
	}
	stats := o.startStats()
	start := time.Now()
	f.start.Store(start.UnixNano())
	end := start.Add(o.Duration)
	stopProgress := o.progress("fanout", func() string {
		var sent, acked int64
		for _, p := range f.pubs {
			sent += p.sent.Load()
			acked += p.nAcked.Load()
		}
		el := time.Since(start).Seconds()
		return fmt.Sprintf("sent %d acked %d delivered %d (%.0f/s) chain breaks %d", sent, acked, f.deliveredSoFar(), float64(f.deliveredSoFar())/el, f.chainBad.Load())
	})
	defer stopProgress()

	var swg sync.WaitGroup
	for _, p := range f.pubs {
		swg.Add(1)
		go func() { defer swg.Done(); p.send(ctx, start, end, fo.Rate, fo.TextBytes) }()
	}
	swg.Wait()
	sendEnd := time.Now()

	// Drain: the acks, then the deliveries of every acked message.
	drainCtx, dcancel := context.WithTimeout(ctx, fo.Drain)
	defer dcancel()
	for !f.acksDone() && sleepCtx(drainCtx, 20*time.Millisecond) {
	}
	var expected int64
	for _, p := range f.pubs {
		expected += p.nAcked.Load() * int64(fo.Subs)
	}
	lastDelivery := time.Now()
	for f.deliveredSoFar() < expected && sleepCtx(drainCtx, 10*time.Millisecond) {
		lastDelivery = time.Now()
	}
	if f.deliveredSoFar() >= expected {
		lastDelivery = time.Now()
	}
	stopProgress()
	res := stats.stop()
	f.closeAll()

	r := &fanoutResult{
		Kind: "fanout", Prefix: prefix, Rooms: fo.Rooms, Subs: fo.Subs, Pubs: fo.Pubs, Rate: fo.Rate, Client: fo.Client,
		DurationS: round3(sendEnd.Sub(start).Seconds()), Resources: res,
		Planned: int64(float64(fo.Rooms*fo.Pubs) * fo.Rate * o.Duration.Seconds()),
	}
	var ack hist
	acked := make(map[int]bitset, len(f.pubs))
	for _, p := range f.pubs {
		p.mu.Lock()
		r.Sent += p.sent.Load()
		r.Acked += p.nAcked.Load()
		ack.merge(&p.ack)
		for k, v := range p.errs {
			if r.SendErrors == nil {
				r.SendErrors = map[string]int64{}
			}
			r.SendErrors[k] += v
		}
		acked[p.idx] = p.acked
		p.mu.Unlock()
	}
	r.AckLatency = ack.summary()
	var lat hist
	var split latencySplit
	for _, s := range f.subs {
		lat.merge(&s.h)
		split.toServer.merge(&s.split.toServer)
		split.fromServer.merge(&s.split.fromServer)
		r.Duplicates += s.dups
		r.ChainBreaks += s.breaks.Load()
		for i, n := range s.slow {
			for len(r.SlowPerSecond) <= i {
				r.SlowPerSecond = append(r.SlowPerSecond, 0)
			}
			r.SlowPerSecond[i] += n
		}
		if s.pkg != nil {
			r.Disconnects += int64(s.pkg.Reconnects())
		}
		if s.err != nil {
			r.Disconnects++
			if r.CloseCodes == nil {
				r.CloseCodes = map[string]int64{}
			}
			r.CloseCodes[strconv.Itoa(closeCode(s.err))]++
		}
		for j := 0; j < fo.Pubs; j++ {
			pi := s.room*fo.Pubs + j
			var got bitset
			if g := s.got[pi]; g != nil {
				got = *g
			}
			missing, both := andNotCount(acked[pi], got)
			r.Missing += missing
			r.Delivered += both
		}
	}
	r.Expected = r.Acked * int64(fo.Subs)
	if r.Expected > 0 {
		r.DeliveryRatio = round3(float64(r.Delivered)/float64(r.Expected)*1000) / 1000
	} else if fo.Subs == 0 {
		r.DeliveryRatio = 1
	}
	if el := lastDelivery.Sub(start).Seconds(); el > 0 {
		r.DeliveriesPerSec = float64(int64(float64(r.Delivered) / el))
	}
	r.Latency = lat.summary()
	r.SlowAfterMs = fo.SlowMs
	r.LatencyToServer, r.LatencyFromServer = split.toServer.summary(), split.fromServer.summary()
	r.Pass = r.DeliveryRatio >= 0.99 && r.Duplicates == 0 && r.ChainBreaks == 0 &&
		float64(r.Acked) >= 0.99*float64(r.Planned) &&
		(fo.Subs == 0 && r.AckLatency.P99 <= 250 || fo.Subs > 0 && r.Latency.P99 <= 250)
	return r, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (f *fanoutRun) acksDone() bool {
	for _, p := range f.pubs {
		p.mu.Lock()
		n := len(p.pending)
		p.mu.Unlock()
		if n > 0 {
			return false
		}
	}
	return true
}

// connect opens every subscriber, then every publisher, each joined to its
// room, and starts their readers.
func (f *fanoutRun) connect(ctx context.Context) error {
	fo, o := f.fo, f.o
	f.subs = make([]*subscriber, fo.Rooms*fo.Subs)
	err := parallel(ctx, len(f.subs), o.DialConc, func(ctx context.Context, i int) error {
		s := &subscriber{room: i % fo.Rooms, got: map[int]*bitset{}, split: &latencySplit{}}
		user := fmt.Sprintf("%s-s%d", o.Prefix, i)
		if fo.Client == "pkg" {
			tok, err := o.token(ctx, user)
			if err != nil {
				return err
			}
			c, err := client.Dial(ctx, client.Options{URL: o.url(i), Token: tok, HTTPClient: o.hc})
			if err != nil {
				return fmt.Errorf("subscriber %d: %w", i, err)
			}
			s.pkg = c
			f.subs[i] = s
			j, err := c.Join(ctx, f.rooms[s.room])
			if err != nil {
				return fmt.Errorf("subscriber %d join: %w", i, err)
			}
			s.last = j.Head
			f.wg.Add(2)
			s.done = make(chan struct{})
			go func() { defer f.wg.Done(); f.readPkg(s) }()
			go func() { defer f.wg.Done(); f.pkgErrors(s) }()
			return nil
		}
		c, err := o.dial(ctx, i, user)
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		s.conn = c
		f.subs[i] = s
		if s.last, err = c.join(ctx, f.rooms[s.room]); err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			var e wireEvent
			err := c.readLoop(context.Background(), func(line []byte, now time.Time) {
				if !isEvent(line) || parseEvent(line, &e) != nil {
					return
				}
				f.event(s, now, e.Seq, e.Prev, e.Type, e.Text, e.TS)
			})
			if !f.closing.Load() {
				s.err = err
			}
		}()
		return nil
	})
	if err != nil {
		return err
	}
	f.pubs = make([]*publisher, fo.Rooms*fo.Pubs)
	return parallel(ctx, len(f.pubs), o.DialConc, func(ctx context.Context, i int) error {
		p := &publisher{idx: i, room: f.rooms[i/fo.Pubs], pending: map[uint64]time.Time{}}
		c, err := o.dial(ctx, i, fmt.Sprintf("%s-p%d", o.Prefix, i))
		if err != nil {
			return fmt.Errorf("publisher %d: %w", i, err)
		}
		p.conn = c
		f.pubs[i] = p
		if _, err := c.join(ctx, p.room); err != nil {
			return fmt.Errorf("publisher %d: %w", i, err)
		}
		f.wg.Add(1)
		go func() { defer f.wg.Done(); p.read() }()
		return nil
	})
}

// readPkg consumes a pkg/client subscriber's events.
func (f *fanoutRun) readPkg(s *subscriber) {
	defer close(s.done)
	for ev := range s.pkg.Events() {
		f.event(s, time.Now(), ev.Seq, ev.Prev, []byte(ev.Type), []byte(ev.Text), ev.Time.AppendFormat(nil, time.RFC3339Nano))
	}
}

// pkgErrors counts the chain errors pkg/client reports (it drops the event
// and repairs the room, so they never reach Events).
func (f *fanoutRun) pkgErrors(s *subscriber) {
	count := func(err error) {
		var ce *client.ChainError
		if errors.As(err, &ce) {
			s.breaks.Add(1)
			f.chainBad.Add(1)
		}
	}
	for {
		select {
		case err := <-s.pkg.Errors():
			count(err)
		case <-s.done:
			for {
				select {
				case err := <-s.pkg.Errors():
					count(err)
				default:
					return
				}
			}
		}
	}
}

// event checks one event received by s.
func (f *fanoutRun) event(s *subscriber, now time.Time, seq, prev uint64, typ, text, ts []byte) {
	if seq <= s.last || prev != s.last {
		s.breaks.Add(1)
		f.chainBad.Add(1)
	}
	s.last = max(s.last, seq)
	if string(typ) != string(chat.MessageSent) {
		return
	}
	sent, pub, n, ok := parseText(text)
	if !ok || pub/f.fo.Pubs != s.room {
		return
	}
	g := s.got[pub]
	if g == nil {
		g = &bitset{}
		s.got[pub] = g
	}
	if g.set(n) {
		s.dups++
		return
	}
	s.delivered.Add(1)
	l := now.Sub(time.Unix(0, sent))
	s.h.add(l)
	if l > time.Duration(f.fo.SlowMs*float64(time.Millisecond)) {
		if i := (sent - f.start.Load()) / int64(time.Second); i >= 0 && i < maxSlowSeconds {
			for int64(len(s.slow)) <= i {
				s.slow = append(s.slow, 0)
			}
			s.slow[i]++
		}
	}
	if s.n++; s.n%splitEvery == 0 {
		s.split.add(sent, ts, now)
	}
}

// slowRow shows slow deliveries by second of sending: the total, then the
// seconds that had any ("3s:1204"), at most 12 of them.
func slowRow(perSecond []int64) string {
	var total int64
	var parts []string
	for i, n := range perSecond {
		total += n
		if n > 0 && len(parts) < 12 {
			parts = append(parts, fmt.Sprintf("%ds:%d", i, n))
		}
	}
	if total == 0 {
		return "none"
	}
	return fmt.Sprintf("%d, by second sent: %s", total, strings.Join(parts, " "))
}

// maxSlowSeconds bounds slow_per_second (a run sends for at most this long
// and counts the rest nowhere).
const maxSlowSeconds = 24 * 3600

// splitEvery is how often a subscriber splits a delivery's latency at the
// event's server timestamp (parsing it costs about as much as the rest of
// the check).
const splitEvery = 16

// latencySplit splits the latency of sampled deliveries at the server's
// timestamp of the event (taken when the node handled the send, before it
// published it): to the server (the publisher's write, the node's reader)
// and from it (publish, store, fan-out, the subscriber's socket and read).
type latencySplit struct {
	toServer, fromServer hist
	bad                  int64 // timestamps that did not parse
}

func (l *latencySplit) add(sent int64, ts []byte, now time.Time) {
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		l.bad++
		return
	}
	l.toServer.add(t.Sub(time.Unix(0, sent)))
	l.fromServer.add(now.Sub(t))
}

// deliveredSoFar sums the subscribers' unique deliveries (progress, drain).
func (f *fanoutRun) deliveredSoFar() int64 {
	var n int64
	for _, s := range f.subs {
		if s != nil {
			n += s.delivered.Load()
		}
	}
	return n
}

func (f *fanoutRun) closeAll() {
	f.closing.Store(true)
	for _, s := range f.subs {
		if s == nil {
			continue
		}
		if s.conn != nil {
			s.conn.close()
		}
		if s.pkg != nil {
			_ = s.pkg.Close()
		}
	}
	for _, p := range f.pubs {
		if p != nil && p.conn != nil {
			p.conn.close()
		}
	}
	f.wg.Wait()
}

// send sends at rate from start until end; a publisher that falls behind
// catches up at once (the send time in each text is the real one).
func (p *publisher) send(ctx context.Context, start, end time.Time, rate float64, pad int) {
	interval := time.Duration(float64(time.Second) / rate)
	var buf, text []byte
	for n := uint64(0); ; n++ {
		due := start.Add(time.Duration(n) * interval)
		if !due.Before(end) {
			return
		}
		if d := time.Until(due); d > 0 && !sleepCtx(ctx, d) {
			return
		}
		now := time.Now()
		text = msgText(text[:0], now, p.idx, n, pad)
		buf = append(buf[:0], `{"type":"send","ref":"`...)
		buf = strconv.AppendUint(buf, n, 10)
		buf = append(buf, `","room":"`...)
		buf = append(buf, p.room...)
		buf = append(buf, `","id":"m`...)
		buf = strconv.AppendUint(buf, n, 10)
		buf = append(buf, `","text":"`...)
		buf = append(buf, text...)
		buf = append(buf, `"}`...)
		p.mu.Lock()
		p.pending[n] = now
		p.mu.Unlock()
		if err := p.conn.write(ctx, buf); err != nil {
			p.mu.Lock()
			delete(p.pending, n)
			p.countErr("write")
			p.mu.Unlock()
			return
		}
		p.sent.Add(1)
	}
}

// countErr counts an error by code. Call it with mu held.
func (p *publisher) countErr(code string) {
	if p.errs == nil {
		p.errs = map[string]int64{}
	}
	p.errs[code]++
}

// read matches acks and errors to the sends; events are skipped unparsed.
func (p *publisher) read() {
	err := p.conn.readLoop(context.Background(), func(line []byte, now time.Time) {
		if isEvent(line) {
			return
		}
		var f chat.ServerFrame
		if json.Unmarshal(line, &f) != nil || (f.Type != chat.FrameAck && f.Type != chat.FrameError) {
			return
		}
		n, err := strconv.ParseUint(f.Ref, 10, 64)
		if err != nil {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		t, ok := p.pending[n]
		if !ok {
			return
		}
		delete(p.pending, n)
		if f.Type == chat.FrameError {
			p.countErr(f.Code)
			return
		}
		p.ack.add(now.Sub(t))
		p.acked.set(n)
		p.nAcked.Add(1)
	})
	p.mu.Lock()
	if len(p.pending) > 0 {
		p.countErr(fmt.Sprintf("closed-%d", closeCode(err)))
	}
	p.mu.Unlock()
}

// runRamp runs fanout rounds, doubling the rate, until one fails.
func runRamp(ctx context.Context, o *options, fo *fanoutOpts, maxRate float64) error {
	type ramp struct {
		Kind                     string          `json:"kind"`
		Rounds                   []*fanoutResult `json:"rounds"`
		LastPass                 float64         `json:"last_passing_rate_per_pub"`
		LastPassDeliveriesPerSec float64         `json:"last_passing_deliveries_per_s"`
		StoppedBy                string          `json:"stopped_by"`
	}
	out := ramp{Kind: "ramp"}
	rate := fo.Rate
	// The deadline allows 12 rounds (see options.deadline).
	for i := 0; i < 12; i++ {
		if rate > maxRate {
			out.StoppedBy = "max-rate"
			break
		}
		r := *fo
		r.Rate = rate
		res, err := fanout(ctx, o, &r, fmt.Sprintf("%s%d", o.Prefix, i))
		if err != nil {
			out.StoppedBy = "error: " + err.Error()
			break
		}
		out.Rounds = append(out.Rounds, res)
		fmt.Fprintf(o.stderr, "round %d: %g msg/s per publisher: %.0f deliveries/s, delivery %.3f%%, p99 %.1f ms, pass %v\n",
			i, rate, res.DeliveriesPerSec, 100*res.DeliveryRatio, res.Latency.P99, res.Pass)
		if !res.Pass {
			out.StoppedBy = fmt.Sprintf("round %d failed", i)
			break
		}
		out.LastPass, out.LastPassDeliveriesPerSec = rate, res.DeliveriesPerSec
		rate *= 2
	}
	rows := [][2]string{
		{"ramp", fmt.Sprintf("%d rooms x (%d subs, %d pubs), rounds of %s from %g msg/s", fo.Rooms, fo.Subs, fo.Pubs, o.Duration, fo.Rate)},
		{"last passing rate", fmt.Sprintf("%g msg/s per publisher, %.0f deliveries/s", out.LastPass, out.LastPassDeliveriesPerSec)},
		{"stopped by", out.StoppedBy},
	}
	return o.report(out, rows)
}

// runSendLat measures ack latency: publishers only, no subscribers.
func runSendLat(ctx context.Context, o *options, fo *fanoutOpts) error {
	fo.Client, fo.Drain = "raw", 10*time.Second
	res, err := fanout(ctx, o, fo, o.Prefix)
	if err != nil {
		return err
	}
	res.Kind = "sendlat"
	rows := [][2]string{
		{"sendlat", fmt.Sprintf("%g sends/s over %d connections (one room each), %s", fo.Rate*float64(fo.Rooms), fo.Rooms, o.Duration)},
		{"sends", fmt.Sprintf("planned %d, sent %d, acked %d, errors %v", res.Planned, res.Sent, res.Acked, res.SendErrors)},
		{"ack latency", res.AckLatency.String()},
		{"cpu", res.Resources.String()},
	}
	return o.report(res, rows)
}
