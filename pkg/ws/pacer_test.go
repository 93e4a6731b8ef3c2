package ws

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// pacedConn serves one connection with a pacer, dialled by the library's
// client, and brings it to the pacer: its delay set to delay, a frame
// written, and one queued within the delay, which its writer hands to the
// pacer. The client has not read the first frame ("0") yet.
func pacedConn(t *testing.T, delay time.Duration) (*websocket.Conn, *conn, *pacer) {
	t.Helper()
	client, cn := dialConn(t)
	return client, cn, toPacer(t, cn, delay)
}

// toPacer brings cn to a pacer of its own, as pacedConn does.
func toPacer(t *testing.T, cn *conn, delay time.Duration) *pacer {
	t.Helper()
	p := newPacer()
	t.Cleanup(p.close)
	cn.mu.Lock()
	cn.pacer = p
	cn.writeDelay, cn.maxWriteDelay, cn.delay = 2*time.Millisecond, delay, delay
	cn.mu.Unlock()
	cn.Send([]byte("0")) // quiet: written by Send
	cn.Send([]byte("1")) // within the delay: queued for a writer, which hands over
	for deadline := time.Now().Add(5 * time.Second); !cn.isPaced(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not hand the connection to the pacer")
		}
	}
	return p
}

// readMsg reads one message and fails unless it is want.
func readMsg(t *testing.T, client *websocket.Conn, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, msg, err := client.Read(ctx); err != nil || string(msg) != want {
		t.Fatalf("got %q, %v; want %q", msg, err, want)
	}
}

// TestPacerWritesWhenTheDelayEnds: a paced connection has no writer
// goroutine; the pacer writes what came during the delay in one message
// when it ends, not before, and lets the connection go quiet when nothing
// more came.
func TestPacerWritesWhenTheDelayEnds(t *testing.T) {
	client, cn, _ := pacedConn(t, 300*time.Millisecond)
	start := time.Now()
	cn.Send([]byte("2"))
	readMsg(t, client, "0")
	readMsg(t, client, "1\n2")
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("paced frames written %v after they came, before the delay (300 ms) ended", el)
	}
	for deadline := time.Now().Add(5 * time.Second); cn.isWriting(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connection is still held 5 s after its last frame")
		}
	}
	if cn.isPaced() {
		t.Fatal("a quiet connection is still paced")
	}
	cn.Send([]byte("3"))
	readMsg(t, client, "3")
}

// TestPacerKeepsABusyConnection sends a frame every millisecond to a
// connection with a pacer: every frame arrives once and in order, the
// writes carry many frames each, and the pacer (not a writer goroutine)
// holds the connection between them.
func TestPacerKeepsABusyConnection(t *testing.T) {
	client, cn := dialConn(t)
	p := newPacer()
	t.Cleanup(p.close)
	var writes atomic.Int64
	cn.mu.Lock()
	cn.pacer, cn.writes = p, &writes
	cn.writeDelay, cn.maxWriteDelay = 2*time.Millisecond, 50*time.Millisecond
	cn.mu.Unlock()
	const frames = 400
	var pacedSeen atomic.Bool
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := range frames {
			cn.Send([]byte(strconv.Itoa(i)))
			if cn.isPaced() {
				pacedSeen.Store(true)
			}
			<-tick.C
		}
	}()
	readInOrder(t, client, frames)
	if !pacedSeen.Load() {
		t.Fatal("the busy connection was never paced")
	}
	if n := writes.Load(); n > frames/8 {
		t.Fatalf("%d writes for %d frames a millisecond apart", n, frames)
	}
}

// TestPacedFlush: a reply flushed on a paced connection goes out at once
// with what was queued, not when the delay ends.
func TestPacedFlush(t *testing.T) {
	client, cn, _ := pacedConn(t, 5*time.Second)
	readMsg(t, client, "0")
	start := time.Now()
	cn.Send([]byte("ack"))
	cn.Flush()
	readMsg(t, client, "1\nack")
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("the flushed reply took %v", el)
	}
}

// TestPacedClose: closing a paced connection writes what was queued and
// the close frame at once.
func TestPacedClose(t *testing.T) {
	client, cn, _ := pacedConn(t, 5*time.Second)
	readMsg(t, client, "0")
	start := time.Now()
	cn.Close(4000, "bye")
	readMsg(t, client, "1")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, _, err := client.Read(ctx)
	if code := websocket.CloseStatus(err); code != 4000 {
		t.Fatalf("after the queued frame: %v, want close 4000", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("the close took %v", el)
	}
}

// TestPacerClosed: the connections a closing pacer holds get writers, and
// their frames still arrive, in order; the pacer takes no more.
func TestPacerClosed(t *testing.T) {
	client, cn, p := pacedConn(t, 300*time.Millisecond)
	p.close()
	if cn.isPaced() {
		t.Fatal("still paced by a closed pacer")
	}
	readMsg(t, client, "0")
	readMsg(t, client, "1")
	cn.Send([]byte("2"))
	cn.Send([]byte("3"))
	var got []string
	for len(got) < 2 {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, msg, err := client.Read(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.Split(string(msg), "\n")...)
		if cn.isPaced() {
			t.Fatal("paced by a closed pacer")
		}
	}
	if strings.Join(got, ",") != "2,3" {
		t.Fatalf("got %q, want 2, 3", got)
	}
}

// TestPacedWriteRest: a batch bigger than the socket takes at once is
// written in part by the pacer, and the rest by the writer it starts, before
// anything else; it arrives whole.
func TestPacedWriteRest(t *testing.T) {
	client, cn := smallBufferConn(t)
	toPacer(t, cn, 300*time.Millisecond)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	cn.Send(big)                                           // queued behind "1" until the pacer's turn
	if !cn.isPaced() {
		t.Fatal("the connection left the pacer before its turn")
	}
	readMsg(t, client, "0")
	readMsg(t, client, "1") // a batch holds at most maxBatch: the big one goes next
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, msg, err := client.Read(ctx); err != nil || !bytes.Equal(msg, big) {
		t.Fatalf("the big frame: %d bytes, %v", len(msg), err)
	}
	cn.Send([]byte("after"))
	readMsg(t, client, "after")
}

// TestPacedStalledPeer: when the socket of a paced connection is full, the
// pacer hands the batch to a writer goroutine, whose stalled write ends
// with the write timeout, closing the connection.
func TestPacedStalledPeer(t *testing.T) {
	cn, closedDown := stalledPeer(t, 300*time.Millisecond)
	p := newPacer()
	t.Cleanup(p.close)
	cn.mu.Lock()
	cn.pacer = p
	cn.writeDelay, cn.maxWriteDelay, cn.delay = 2*time.Millisecond, 20*time.Millisecond, 20*time.Millisecond
	cn.mu.Unlock()
	frame := bytes.Repeat([]byte("x"), 1<<10)
	var paced bool
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-closedDown:
			if !paced {
				t.Fatal("closed before the pacer held the connection")
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection to a peer that reads nothing is still open after 10 s")
		}
		cn.Send(frame)
		paced = paced || cn.isPaced()
		time.Sleep(time.Millisecond)
	}
}
