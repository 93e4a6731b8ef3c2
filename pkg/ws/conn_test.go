package ws

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestFinalWriteToStalledPeerEnds closes, with a big frame queued, a
// connection whose client reads nothing: the last write must give up (the
// stall timer) and the connection end, not hang in the outbound's write.
func TestFinalWriteToStalledPeerEnds(t *testing.T) {
	closedDown := make(chan struct{})
	ready := make(chan *conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := &hijacker{ResponseWriter: w}
		ws, err := websocket.Accept(h, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		h.adopt()
		_ = h.raw.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096) })
		cn := newConn(ws, h.out, 1024, time.Second, time.Hour, 4004)
		var once sync.Once // the stall timer and the writer may both report
		cn.onClosed = func() { once.Do(func() { close(closedDown) }) }
		ready <- cn
	}))
	defer srv.Close()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	nc, err := d.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
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
	cn := <-ready
	// The client now reads nothing (as a slow or hostile one). The node
	// closes it as a slow reader with a frame queued.
	cn.Send(bytes.Repeat([]byte("x"), 1<<20))
	cn.Close(4008, "slow reader")
	select {
	case <-closedDown:
	case <-time.After(8 * time.Second):
		t.Fatal("8 s after Close (1 s for the last write, 5 s for the close handshake) the connection is not closed")
	}
}
