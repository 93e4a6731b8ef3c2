package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/client"
	"github.com/jetchat/jetchat/pkg/testrig"
)

// BenchmarkPublishToDelivery measures the time from a client's send to the
// event's arrival at every one of 10 subscribers on the same node (the send
// is stored in JetStream, file storage, R1, before the ack and the
// republish). One message in flight at a time: this is latency, not
// throughput. With the default write delay, a subscriber that got a frame
// less than 2 ms ago waits out the rest of the 2 ms (that batching is what
// fan-out throughput needs), so this closed loop settles near 2 ms a
// message; WriteDelay=0 shows the path without it.
func BenchmarkPublishToDelivery(b *testing.B) {
	b.Run("WriteDelay=default", func(b *testing.B) { benchPublishToDelivery(b) })
	b.Run("WriteDelay=0", func(b *testing.B) {
		benchPublishToDelivery(b, "--write-delay", "0", "--max-write-delay", "0")
	})
}

func benchPublishToDelivery(b *testing.B, args ...string) {
	js := testrig.RunJetStream(b)
	n := startNode(b, js.URL, "", args...)
	ctx := context.Background()
	sender := dial(b, n, "sender")
	create(b, sender, "bench", false)
	if _, err := sender.Join(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	go discard(sender)
	const subs = 10
	var receivers []*client.Client
	for i := 0; i < subs; i++ {
		c := dial(b, n, fmt.Sprint("r", i))
		if _, err := c.Join(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		receivers = append(receivers, c)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := sender.Send(ctx, "bench", "ping"); err != nil {
			b.Fatal(err)
		}
		for _, c := range receivers {
			for ev := range c.Events() {
				if ev.Type == chat.MessageSent {
					break
				}
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// BenchmarkIdleConnMemory measures a chatd process's resident memory per idle
// WebSocket connection (authenticated, one room joined), read from
// /proc/<pid>/status before and after opening the connections.
func BenchmarkIdleConnMemory(b *testing.B) {
	const conns = 2000
	dir := b.TempDir()
	bin := filepath.Join(dir, "chatd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	addr := freeAddr(b)
	cmd := exec.Command(bin, "--addr", addr, "--data-dir", dir, "--jwt-secret", testSecret, "--log-level", "error")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	n := &testNode{Addr: addr}
	waitHealthy(b, addr)
	owner := dial(b, n, "owner")
	create(b, owner, "idle", false)
	_ = owner.Close()
	for i := 0; i < b.N; i++ {
		before := rss(b, cmd.Process.Pid)
		var ws []*websocket.Conn
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for c := 0; c < conns; c++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(c int) {
				defer wg.Done()
				defer func() { <-sem }()
				rc := helloRaw(b, n, fmt.Sprint("u", c))
				rc.send(`{"type":"join","ref":"j","room":"idle"}`)
				rc.until(chat.FrameJoined)
				mu.Lock()
				ws = append(ws, rc.ws)
				mu.Unlock()
			}(c)
		}
		wg.Wait()
		time.Sleep(5 * time.Second) // let the server settle and return freed memory
		after := rss(b, cmd.Process.Pid)
		b.ReportMetric(float64(after-before)/conns/1024, "KiB/conn")
		for _, w := range ws {
			_ = w.CloseNow()
		}
	}
}

func rss(b *testing.B, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
