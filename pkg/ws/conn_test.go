package ws

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// stalledPeer makes a connection whose client reads nothing (as a slow or
// hostile one), with small socket buffers on both sides. closedDown is
// closed when the connection reports itself closed.
func stalledPeer(t *testing.T, writeTimeout time.Duration) (cn *conn, closedDown chan struct{}) {
	t.Helper()
	closedDown = make(chan struct{})
	url, ready := serveConns(t, writeTimeout, func(h *hijacker) {
		_ = h.raw.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096) })
	})
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	nc, err := d.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_, _ = nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	br := bufio.NewReader(nc)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	cn = <-ready
	var once sync.Once // the stall timer and the writer may both report
	cn.onClosed = func() { once.Do(func() { close(closedDown) }) }
	return cn, closedDown
}

// serveConns serves WebSocket connections as the node does (through the
// hijacker's outbound) and hands each over as a conn, after tune.
func serveConns(t *testing.T, writeTimeout time.Duration, tune func(*hijacker)) (url string, ready <-chan *conn) {
	conns := make(chan *conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := &hijacker{ResponseWriter: w}
		ws, err := websocket.Accept(h, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		h.adopt()
		if tune != nil {
			tune(h)
		}
		conns <- newConn(ws, h.out, 1024, writeTimeout, time.Hour, 4004)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, conns
}

// dialConn serves one connection as the node does and dials it with the
// library's client, which reads everything.
func dialConn(t *testing.T) (*websocket.Conn, *conn) {
	t.Helper()
	url, ready := serveConns(t, time.Second, nil)
	client, _, err := websocket.Dial(t.Context(), "ws"+strings.TrimPrefix(url, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.CloseNow() })
	return client, <-ready
}

// TestFinalWriteToStalledPeerEnds closes, with a big frame queued, a
// connection whose client reads nothing: the last write must give up (the
// stall timer) and the connection end, not hang in the outbound's write.
func TestFinalWriteToStalledPeerEnds(t *testing.T) {
	cn, closedDown := stalledPeer(t, time.Hour)
	// The node closes it as a slow reader with a frame queued.
	cn.Send(bytes.Repeat([]byte("x"), 1<<20))
	cn.Close(4008, "slow reader")
	select {
	case <-closedDown:
	case <-time.After(8 * time.Second):
		t.Fatal("8 s after Close (1 s for the last write, 5 s for the close handshake) the connection is not closed")
	}
}

// TestCloseEndsAWriteInProgress closes a slow reader's connection while its
// writer is stuck in a write: the write gets closeFlush more, not the rest
// of the write timeout (an hour here).
func TestCloseEndsAWriteInProgress(t *testing.T) {
	cn, closedDown := stalledPeer(t, time.Hour)
	cn.Send(bytes.Repeat([]byte("x"), 1<<20))
	for deadline := time.Now().Add(5 * time.Second); !cn.inWrite.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer never began the write")
		}
	}
	start := time.Now()
	cn.Close(4008, "slow reader")
	select {
	case <-closedDown:
		if el := time.Since(start); el < closeFlush/2 {
			t.Fatalf("closed %v after Close: the write was not given closeFlush", el)
		}
	case <-time.After(closeFlush + 3*time.Second):
		t.Fatalf("%v after Close the write in progress still holds the connection", closeFlush+3*time.Second)
	}
}

// TestStalledWriteEnds queues a frame bigger than the socket buffers hold
// for a client that reads nothing: the write must end after the write
// timeout, closing the connection.
func TestStalledWriteEnds(t *testing.T) {
	cn, closedDown := stalledPeer(t, 500*time.Millisecond)
	start := time.Now()
	cn.Send(bytes.Repeat([]byte("x"), 1<<20))
	select {
	case <-closedDown:
		if el := time.Since(start); el < 500*time.Millisecond {
			t.Fatalf("closed after %v, before the write timeout", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write stalled for 5 s (timeout 500 ms) and the connection is still open")
	}
}

// TestWriterEndsWhenIdle checks that a connection's writer runs while frames
// come and ends once none came for a while: an idle connection holds no
// goroutine.
func TestWriterEndsWhenIdle(t *testing.T) {
	ctx := t.Context()
	client, cn := dialConn(t)
	// Every frame through the writer: Send writes none itself (see
	// TestQuietConnectionWritesInline).
	cn.out.raw = nil
	writing := cn.isWriting
	// Frames every linger/5 for 3 lingers: one writer run throughout.
	for i := 0; i < 15; i++ {
		cn.Send([]byte(strconv.Itoa(i)))
		if _, msg, err := client.Read(ctx); err != nil || string(msg) != strconv.Itoa(i) {
			t.Fatalf("frame %d: %q, %v", i, msg, err)
		}
		if !writing() {
			t.Fatalf("the writer ended after frame %d, less than a linger after it", i)
		}
		time.Sleep(linger / 5)
	}
	deadline := time.Now().Add(2*linger + time.Second)
	for writing() {
		if time.Now().After(deadline) {
			t.Fatalf("the writer still runs %v after the last frame", 2*linger+time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A frame after that starts a new writer.
	cn.Send([]byte("again"))
	if _, msg, err := client.Read(ctx); err != nil || string(msg) != "again" {
		t.Fatalf("after the writer ended: %q, %v", msg, err)
	}
}

// TestQuietConnectionWritesInline: Send writes a frame to a quiet
// connection itself, starting no writer; a frame within the write delay of
// that write is queued, and the writer it starts waits out the rest of the
// delay, so that it carries what came meanwhile.
func TestQuietConnectionWritesInline(t *testing.T) {
	client, cn := dialConn(t)
	var writes atomic.Int64
	cn.writes = &writes
	cn.writeDelay, cn.maxWriteDelay = 200*time.Millisecond, 200*time.Millisecond
	writing := cn.isWriting
	read := func(want string) { t.Helper(); readMsg(t, client, want) }
	cn.Send([]byte("a"))
	if writing() {
		t.Fatal("a frame to a quiet connection started a writer")
	}
	read("a")
	time.Sleep(cn.writeDelay + 50*time.Millisecond)
	cn.Send([]byte("b"))
	if writing() {
		t.Fatal("a frame a write delay after the last started a writer")
	}
	read("b")
	// Within the delay of "b": queued, for a writer that waits it out.
	cn.Send([]byte("c"))
	cn.Send([]byte("d"))
	if !writing() {
		t.Fatal("a frame within the write delay did not go to a writer")
	}
	read("c\nd")
	wantWrites(t, &writes, 3)
}

// TestInlineWriteRest: a frame larger than the socket takes at once is
// written in part by Send and the rest by the writer, before anything
// else, and arrives whole.
func TestInlineWriteRest(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	client, cn := smallBufferConn(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	writing := cn.isWriting
	sendBig := func() {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); writing(); {
			if time.Now().After(deadline) {
				t.Fatal("the writer did not end")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cn.Send(big)
		if !writing() {
			t.Fatal("the socket took 1 MiB at once: the test needs smaller buffers")
		}
	}
	readBig := func() {
		t.Helper()
		if _, msg, err := client.Read(ctx); err != nil || !bytes.Equal(msg, big) {
			t.Fatalf("the big frame: %d bytes, %v", len(msg), err)
		}
	}
	// Nothing after it: the writer Send started writes the rest.
	sendBig()
	readBig()
	// A frame right after it goes after the rest.
	sendBig()
	cn.Send([]byte("after"))
	readBig()
	if _, msg, err := client.Read(ctx); err != nil || string(msg) != "after" {
		t.Fatalf("after it: %q, %v", msg, err)
	}
}

// TestWriteDelayGrowsOnABusyConnection sends a frame every millisecond, half
// the least write delay: writes that carry two frames must grow the delay,
// so that the connection soon writes every maxWriteDelay. (Growing only at
// four frames a write, the delay never grew from 2 ms at this rate until the
// node fell behind: the start of every busy fan-out was a backlog.) A quiet
// connection (TestWriterEndsWhenIdle) still gets each frame in its own
// message.
func TestWriteDelayGrowsOnABusyConnection(t *testing.T) {
	client, cn := dialConn(t)
	var writes atomic.Int64
	cn.writes = &writes
	cn.writeDelay, cn.maxWriteDelay = 2*time.Millisecond, 50*time.Millisecond
	const frames = 400
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := range frames {
			cn.Send([]byte(strconv.Itoa(i)))
			<-tick.C
		}
	}()
	readInOrder(t, client, frames)
	// About 400 ms of frames: a few writes while the delay grows, then one
	// every 50 ms. Stuck at 2 ms it would be about 200.
	if n := writes.Load(); n > frames/8 {
		t.Fatalf("%d writes for %d frames a millisecond apart: the write delay did not grow", n, frames)
	}
}

// TestFlushSoonSharesWrites: replies flushed with FlushSoon wait until
// ackDelay has passed since the last write (not the longer write delay) and
// share that write; one after a quiet spell, and any flushed with Flush, go
// out at once.
func TestFlushSoonSharesWrites(t *testing.T) {
	ctx := t.Context()
	client, cn := dialConn(t)
	var writes atomic.Int64
	cn.writes = &writes
	cn.writeDelay, cn.maxWriteDelay, cn.ackDelay = time.Second, time.Second, 300*time.Millisecond
	read := func(want string, within time.Duration, since time.Time) {
		t.Helper()
		_, msg, err := client.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(msg) != want {
			t.Fatalf("got message %q, want %q", msg, want)
		}
		if took := time.Since(since); took > within {
			t.Fatalf("%q took %v, want under %v", want, took, within)
		}
	}
	start := time.Now()
	cn.Send([]byte("1"))
	cn.FlushSoon() // nothing written yet: at once
	read("1", 250*time.Millisecond, start)

	cn.Send([]byte("2"))
	cn.FlushSoon()
	time.Sleep(50 * time.Millisecond)
	cn.Send([]byte("3"))
	cn.FlushSoon()
	// Held until ackDelay after "1", in one write; the write delay would
	// have held them a second.
	read("2\n3", 800*time.Millisecond, start)

	start = time.Now()
	cn.Send([]byte("4"))
	cn.Flush() // right after a write, but Flush does not wait
	read("4", 250*time.Millisecond, start)
	wantWrites(t, &writes, 3)
}

// smallBufferConn is dialConn with small socket buffers on both sides, so
// that a big frame does not fit at once; the client reads everything.
func smallBufferConn(t *testing.T) (*websocket.Conn, *conn) {
	t.Helper()
	url, ready := serveConns(t, 10*time.Second, func(h *hijacker) {
		_ = h.raw.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096) })
	})
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	client, _, err := websocket.Dial(t.Context(), "ws"+strings.TrimPrefix(url, "http"), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.CloseNow() })
	client.SetReadLimit(-1)
	return client, <-ready
}

// isWriting reports whether a writer or the pacer holds the connection.
func (c *conn) isWriting() bool {
	writing, _ := c.holders()
	return writing
}

// isPaced reports whether the pacer holds the connection.
func (c *conn) isPaced() bool {
	_, paced := c.holders()
	return paced
}

func (c *conn) holders() (writing, paced bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writing, c.paced
}

// readInOrder reads messages until it has frames lines, which must be 0,
// 1, 2 and so on.
func readInOrder(t *testing.T, client *websocket.Conn, frames int) {
	t.Helper()
	for got := 0; got < frames; {
		_, msg, err := client.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(msg), "\n") {
			if line != strconv.Itoa(got) {
				t.Fatalf("frame %d: got %q", got, line)
			}
			got++
		}
	}
}

// wantWrites fails unless writes reaches want, and stays there: a writer
// counts its write once the call returns, maybe after the client read it.
func wantWrites(t *testing.T, writes *atomic.Int64, want int64) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); writes.Load() < want && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := writes.Load(); n != want {
		t.Fatalf("%d writes, want %d", n, want)
	}
}
