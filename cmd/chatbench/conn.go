package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/jetchat/jetchat/pkg/chat"
)

// rawConn is a lean protocol connection for the load tool: one WebSocket,
// no reconnects, no per-room state and no channel hop per event. The
// subscribers of fanout use it because pkg/client decodes every frame into a
// full chat.ServerFrame and passes it through a channel, which costs CPU that
// the server being measured shares on this machine (README.md, "Load tool").
type rawConn struct {
	ws   *websocket.Conn
	user string
	node string

	wmu sync.Mutex // serialises writes

	// leftover holds the lines of the last message read by await after the
	// frame it waited for: the read loop handles them first.
	leftover [][]byte
}

const (
	rawReadLimit   = 16 << 20
	rawDialTimeout = 10 * time.Second
	writeTimeout   = 10 * time.Second
)

// dialRaw connects to url, says hello with token and waits for welcome.
func dialRaw(ctx context.Context, hc *http.Client, url, token string) (*rawConn, error) {
	ctx, cancel := context.WithTimeout(ctx, rawDialTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	ws.SetReadLimit(rawReadLimit)
	c := &rawConn{ws: ws}
	if err := c.writeFrame(ctx, chat.ClientFrame{Type: chat.FrameHello, Ref: "hello", Token: token}); err != nil {
		_ = ws.CloseNow()
		return nil, err
	}
	f, err := c.await(ctx, func(f *chat.ServerFrame) bool {
		return f.Type == chat.FrameWelcome || f.Type == chat.FrameError
	})
	if err != nil {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("hello: %w", err)
	}
	if f.Type == chat.FrameError {
		_ = ws.CloseNow()
		return nil, &chat.Error{Code: f.Code, Message: f.Message}
	}
	c.user, c.node = f.User, f.Node
	return c, nil
}

// writeFrame encodes and writes one client frame.
func (c *rawConn) writeFrame(ctx context.Context, f chat.ClientFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return c.write(ctx, b)
}

// write writes one message with its own deadline (a cancelled write closes
// the connection, so the caller's context only bounds the wait for it).
func (c *rawConn) write(ctx context.Context, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// await reads frames until match accepts one and returns it. Frames before
// it are dropped; the lines after it in the same message are kept for the
// read loop. Use it only before the read loop runs.
func (c *rawConn) await(ctx context.Context, match func(*chat.ServerFrame) bool) (chat.ServerFrame, error) {
	for {
		lines := c.leftover
		c.leftover = nil
		if lines == nil {
			typ, msg, err := c.ws.Read(ctx)
			if err != nil {
				return chat.ServerFrame{}, err
			}
			if typ != websocket.MessageText {
				continue
			}
			lines = splitLines(msg)
		}
		for i, line := range lines {
			var f chat.ServerFrame
			if json.Unmarshal(line, &f) != nil || !match(&f) {
				continue
			}
			if rest := lines[i+1:]; len(rest) > 0 {
				c.leftover = rest
			}
			return f, nil
		}
	}
}

// roundTrip writes f with a ref and waits for the answer with that ref (or
// joined for a join). An error frame is returned as *chat.Error.
func (c *rawConn) roundTrip(ctx context.Context, f chat.ClientFrame) (chat.ServerFrame, error) {
	if f.Ref == "" {
		f.Ref = "rt-" + f.Type
	}
	if err := c.writeFrame(ctx, f); err != nil {
		return chat.ServerFrame{}, err
	}
	res, err := c.await(ctx, func(s *chat.ServerFrame) bool { return s.Ref == f.Ref })
	if err != nil {
		return res, fmt.Errorf("%s %s: %w", f.Type, f.Room, err)
	}
	if res.Type == chat.FrameError {
		return res, &chat.Error{Code: res.Code, Message: res.Message}
	}
	return res, nil
}

// join joins room live at its head and returns the head.
func (c *rawConn) join(ctx context.Context, room string) (uint64, error) {
	res, err := c.roundTrip(ctx, chat.ClientFrame{Type: chat.FrameJoin, Ref: "join-" + room, Room: room})
	if err != nil {
		return 0, err
	}
	return res.Head, nil
}

// readLoop hands every line of every message to fn, with the time the
// message was read, until the connection fails or ctx ends.
func (c *rawConn) readLoop(ctx context.Context, fn func(line []byte, now time.Time)) error {
	if lines := c.leftover; lines != nil {
		c.leftover = nil
		now := time.Now()
		for _, l := range lines {
			fn(l, now)
		}
	}
	// One buffer for every message: the lines handed to fn point into it
	// and are valid only during the call.
	buf := make([]byte, 0, 4<<10)
	for {
		typ, r, err := c.ws.Reader(ctx)
		if err != nil {
			return err
		}
		if buf, err = readAll(r, buf[:0]); err != nil {
			return err
		}
		if typ != websocket.MessageText {
			continue
		}
		msg := buf
		now := time.Now()
		for len(msg) > 0 {
			i := bytes.IndexByte(msg, '\n')
			var line []byte
			if i < 0 {
				line, msg = msg, nil
			} else {
				line, msg = msg[:i], msg[i+1:]
			}
			if len(line) > 0 {
				fn(line, now)
			}
		}
	}
}

// readAll appends what r holds to buf, as io.ReadAll does but into a buffer
// the caller keeps.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func (c *rawConn) close() { _ = c.ws.CloseNow() }

// closeCode is the WebSocket close code in err, or -1.
func closeCode(err error) int { return int(websocket.CloseStatus(err)) }

func splitLines(msg []byte) [][]byte {
	var out [][]byte
	_ = chat.SplitFrames(msg, func(b []byte) error {
		out = append(out, b)
		return nil
	})
	return out
}

// wireEvent is what the tool needs of an event frame. Its byte slices point
// into the message read.
type wireEvent struct {
	Type, Room, ID, Author, TS, Text []byte
	Seq, Prev                        uint64
}

var errNotEvent = errors.New("not an event frame")

var eventPrefix = []byte(`{"type":"event","event":`)

// isEvent reports whether a server line is an event frame.
func isEvent(line []byte) bool { return bytes.HasPrefix(line, eventPrefix) }

// parseEvent decodes an event frame. The server writes events in one
// layout (chat.Event's field order, no escapes in our ids and texts); that
// layout is read directly, about ten times faster than encoding/json (see
// BenchmarkParseEvent), and anything else falls back to encoding/json.
func parseEvent(line []byte, e *wireEvent) error {
	if fastParseEvent(line, e) {
		return nil
	}
	var f struct {
		Type  string `json:"type"`
		Event *struct {
			ID     string `json:"id"`
			Type   string `json:"type"`
			Room   string `json:"room"`
			Author string `json:"author"`
			TS     string `json:"ts"`
			Seq    uint64 `json:"seq"`
			Prev   uint64 `json:"prev"`
			Text   string `json:"text"`
		} `json:"event"`
	}
	if err := json.Unmarshal(line, &f); err != nil {
		return err
	}
	if f.Type != chat.FrameEvent || f.Event == nil {
		return errNotEvent
	}
	*e = wireEvent{
		Type: []byte(f.Event.Type), Room: []byte(f.Event.Room), ID: []byte(f.Event.ID),
		Author: []byte(f.Event.Author), TS: []byte(f.Event.TS), Text: []byte(f.Event.Text),
		Seq: f.Event.Seq, Prev: f.Event.Prev,
	}
	return nil
}

// fastParseEvent reads the exact layout
// {"type":"event","event":{"id":"..","type":"..","room":"..","author":"..","ts":"..","seq":N,"prev":N[,"text":".."]...}}
// and reports false on any deviation (an escape included).
func fastParseEvent(b []byte, e *wireEvent) bool {
	p := parser{b: b}
	ok := p.lit(`{"type":"event","event":{"id":"`) && p.str(&e.ID) &&
		p.lit(`,"type":"`) && p.str(&e.Type) &&
		p.lit(`,"room":"`) && p.str(&e.Room) &&
		p.lit(`,"author":"`) && p.str(&e.Author) &&
		p.lit(`,"ts":"`) && p.str(&e.TS) &&
		p.lit(`,"seq":`) && p.num(&e.Seq) &&
		p.lit(`,"prev":`) && p.num(&e.Prev)
	if !ok {
		return false
	}
	e.Text = nil
	if p.lit(`,"text":"`) {
		return p.str(&e.Text)
	}
	return true
}

type parser struct {
	b []byte
	i int
}

func (p *parser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// str reads up to the closing quote; an escape makes it give up. One pass:
// the strings are short, and two IndexByte calls per string cost more.
func (p *parser) str(dst *[]byte) bool {
	b := p.b[p.i:]
	for j, c := range b {
		if c == '"' {
			if dst != nil {
				*dst = b[:j]
			}
			p.i += j + 1
			return true
		}
		if c == '\\' {
			return false
		}
	}
	return false
}

func (p *parser) num(dst *uint64) bool {
	j := p.i
	for j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9' {
		j++
	}
	n, ok := atou(p.b[p.i:j])
	if !ok {
		return false
	}
	*dst, p.i = n, j
	return true
}
