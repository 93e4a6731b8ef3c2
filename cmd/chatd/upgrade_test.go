package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

// TestFrameSentWithUpgradeRequest: a client may send its first frame in the
// same packet as the upgrade request (net/http then holds it in its read-ahead
// buffer); the server must still read it.
func TestFrameSentWithUpgradeRequest(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", "")
	conn, err := net.DialTimeout("tcp", n.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))

	hello := []byte(fmt.Sprintf(`{"type":"hello","token":%q}`, token(t, "alice", time.Hour)))
	req := "GET /ws HTTP/1.1\r\nHost: " + n.Addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	// One masked text frame (clients must mask), 16-bit length.
	mask := [4]byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | 126, 0, 0}
	binary.BigEndian.PutUint16(frame[2:], uint16(len(hello)))
	frame = append(frame, mask[:]...)
	for i, b := range hello {
		frame = append(frame, b^mask[i%4])
	}
	if _, err := conn.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}

	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %v, %v", resp, err)
	}
	// The server's first frame: unmasked text, the welcome.
	head := make([]byte, 2)
	if _, err := io.ReadFull(br, head); err != nil {
		t.Fatalf("no frame after the upgrade: %v", err)
	}
	size := int(head[1] & 0x7f)
	if size == 126 {
		var ext [2]byte
		_, _ = io.ReadFull(br, ext[:])
		size = int(binary.BigEndian.Uint16(ext[:]))
	}
	payload := make([]byte, size)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatal(err)
	}
	var f chat.ServerFrame
	if head[0]&0x0f != 1 || json.Unmarshal([]byte(strings.SplitN(string(payload), "\n", 2)[0]), &f) != nil || f.Type != chat.FrameWelcome {
		t.Fatalf("first frame %#x %q, want a welcome", head[0], payload)
	}
}
