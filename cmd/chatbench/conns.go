package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

type connsOpts struct {
	N      int
	Rooms  int
	Settle time.Duration
}

func connsFlags(fs *flag.FlagSet) *connsOpts {
	co := &connsOpts{}
	fs.IntVar(&co.N, "n", 2000, "N: idle connections (hello, then join one room each)")
	fs.IntVar(&co.Rooms, "rooms", 1, "rooms the connections are spread over (every first join of a room is a member.joined event sent to all its connections: N^2/2 events for one room)")
	fs.DurationVar(&co.Settle, "settle", 2*time.Second, "wait this long after the last join before reading the RSS")
	return co
}

type connsResult struct {
	Kind         string  `json:"kind"`
	Prefix       string  `json:"prefix"`
	Conns        int     `json:"conns"`
	Rooms        int     `json:"rooms"`
	PID          int     `json:"server_pid"`
	RSSBefore    int64   `json:"rss_before_bytes"`
	RSSAfter     int64   `json:"rss_after_bytes"`
	KiBPerConn   float64 `json:"kib_per_conn"`
	OpenSeconds  float64 `json:"open_s"`
	ConnsPerSec  float64 `json:"conns_per_s"`
	Disconnected int64   `json:"disconnected"` // closed by the server before the RSS was read
}

// runConns opens N idle connections and reads the server's RSS before and
// after, as cmd/chatd's BenchmarkIdleConnMemory does.
func runConns(ctx context.Context, o *options, co *connsOpts) error {
	if o.PID <= 0 {
		return errors.New("conns needs the server's pid: --pid, or a chatd of this user listening on the first URL's port")
	}
	if co.N < 1 || co.Rooms < 1 {
		return errors.New("need --n >= 1 and --rooms >= 1")
	}
	rooms, err := o.createRooms(ctx, co.Rooms)
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond) // let the creations' work settle
	before, err := procRSS(o.PID)
	if err != nil {
		return err
	}
	conns := make([]*rawConn, co.N)
	var opened, closed atomic.Int64
	var wg sync.WaitGroup
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
		wg.Wait()
	}()
	stop := o.progress("conns", func() string {
		rss, _ := procRSS(o.PID)
		return fmt.Sprintf("open %d of %d, server RSS %.1f MiB", opened.Load(), co.N, float64(rss)/(1<<20))
	})
	defer stop()
	start := time.Now()
	err = parallel(ctx, co.N, o.DialConc, func(ctx context.Context, i int) error {
		c, err := o.dial(ctx, i, fmt.Sprintf("%s-c%d", o.Prefix, i))
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		conns[i] = c
		if _, err := c.join(ctx, rooms[i%len(rooms)]); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		opened.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Read (and drop) everything: this answers the server's pings.
			if err := c.readLoop(context.Background(), func([]byte, time.Time) {}); closeCode(err) != -1 {
				closed.Add(1)
			}
		}()
		return nil
	})
	openTime := time.Since(start)
	if err != nil {
		return err
	}
	if !sleepCtx(ctx, co.Settle) {
		return ctx.Err()
	}
	after, err := procRSS(o.PID)
	if err != nil {
		return err
	}
	stop()
	r := connsResult{
		Kind: "conns", Prefix: o.Prefix, Conns: co.N, Rooms: co.Rooms, PID: o.PID,
		RSSBefore: before, RSSAfter: after,
		KiBPerConn:   round3(float64(after-before) / float64(co.N) / 1024),
		OpenSeconds:  round3(openTime.Seconds()),
		ConnsPerSec:  float64(int64(float64(co.N) / openTime.Seconds())),
		Disconnected: closed.Load(),
	}
	return o.report(r, [][2]string{
		{"conns", fmt.Sprintf("%d idle connections over %d rooms, chatd pid %d", r.Conns, r.Rooms, r.PID)},
		{"opened", fmt.Sprintf("in %.1f s (%.0f/s)", r.OpenSeconds, r.ConnsPerSec)},
		{"server RSS", fmt.Sprintf("%.1f MiB before, %.1f MiB after", float64(before)/(1<<20), float64(after)/(1<<20))},
		{"per connection", fmt.Sprintf("%.1f KiB", r.KiBPerConn)},
		{"closed by server", fmt.Sprint(r.Disconnected)},
	})
}
