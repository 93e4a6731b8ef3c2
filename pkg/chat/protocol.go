package chat

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// ProtocolVersion is the WebSocket protocol's version, sent in welcome.
const ProtocolVersion = 1

// MaxFrameBytes bounds one WebSocket message from a client.
const MaxFrameBytes = 64 << 10

// Client frame types.
const (
	FrameHello   = "hello" // first frame: {token}
	FrameJoin    = "join"  // {room, since?}: subscribe (and become a member of a public room)
	FrameLeave   = "leave" // {room, id}: stop being a member; unsubscribes too
	FrameUnsub   = "unsubscribe"
	FrameCreate  = "create"  // {room, name, private, id}
	FrameInvite  = "invite"  // {room, user, id}: private rooms, by the creator
	FrameSend    = "send"    // {room, id, text}
	FrameEdit    = "edit"    // {room, id, target, text}
	FrameDelete  = "delete"  // {room, id, target}
	FrameReact   = "react"   // {room, id, target, emoji}
	FrameUnreact = "unreact" // {room, id, target, emoji}
	FrameRead    = "read"    // {room, id, target}
	FrameTyping  = "typing"  // {room}; also sent by the server: {room, user}
	FramePing    = "ping"    // {ref}
	FrameHistory = "history" // {room, before?, after?, limit?}; also the answer: {room, messages}
)

// Server frame types (FrameTyping is shared).
const (
	FrameWelcome  = "welcome"  // {user, node, v}
	FrameJoined   = "joined"   // {ref, room, head, recovered, replayed}
	FrameLeft     = "left"     // {ref, room}
	FrameAck      = "ack"      // {ref, room, id, seq, dup}
	FrameEvent    = "event"    // {event}
	FrameError    = "error"    // {ref, room, id, code, message, retry_after_ms}
	FramePong     = "pong"     // {ref}
	FramePresence = "presence" // {room, user, online}: user came online (true) or went offline (false) in room
)

// ClientFrame is any frame a client sends. Type selects the fields that matter;
// the others must be absent or zero.
type ClientFrame struct {
	Type    string  `json:"type"`
	Ref     string  `json:"ref,omitempty"`
	Token   string  `json:"token,omitempty"`
	Room    string  `json:"room,omitempty"`
	Since   *uint64 `json:"since,omitempty"`
	ID      string  `json:"id,omitempty"`
	Text    string  `json:"text,omitempty"`
	Target  uint64  `json:"target,omitempty"`
	Emoji   string  `json:"emoji,omitempty"`
	User    string  `json:"user,omitempty"`
	Name    string  `json:"name,omitempty"`
	Private bool    `json:"private,omitempty"`
	Before  uint64  `json:"before,omitempty"` // history
	After   uint64  `json:"after,omitempty"`  // history
	Limit   int     `json:"limit,omitempty"`  // history
}

// ServerFrame is any frame the server sends.
type ServerFrame struct {
	Type string `json:"type"`
	Ref  string `json:"ref,omitempty"`
	Room string `json:"room,omitempty"`

	User     string `json:"user,omitempty"` // welcome, typing, presence
	Node     string `json:"node,omitempty"` // welcome
	Protocol int    `json:"v,omitempty"`    // welcome

	ID  string `json:"id,omitempty"`  // ack, error
	Seq uint64 `json:"seq,omitempty"` // ack
	Dup bool   `json:"dup,omitempty"` // ack: the id was stored before; Seq is the original's

	Head      uint64 `json:"head,omitempty"`      // joined: the room's position when it went live
	Recovered *bool  `json:"recovered,omitempty"` // joined with since: false if the log no longer holds it
	Replayed  int    `json:"replayed,omitempty"`  // joined: events replayed after since
	// Online is, in joined, who is present in the room ([]string, best
	// effort); in presence, whether User came online or went offline (bool).
	Online any     `json:"online,omitempty"`
	Read   *uint64 `json:"read,omitempty"`   // joined: your read marker, when the reads projection has one
	Unread *int    `json:"unread,omitempty"` // joined: messages after it by others (capped)

	Event *Event `json:"event,omitempty"`

	Messages any `json:"messages,omitempty"` // history: the page, oldest first

	Code         string `json:"code,omitempty"` // error
	Message      string `json:"message,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

// DecodeClientFrame decodes one client frame strictly: unknown fields and
// trailing data are errors that name the problem.
func DecodeClientFrame(data []byte) (ClientFrame, error) {
	f, ok := fastClientFrame(data)
	if !ok {
		var slow ClientFrame // its own variable: f stays on the stack
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&slow); err != nil {
			return ClientFrame{}, Errorf(ErrBadRequest, "malformed frame: %s", jsonProblem(err))
		}
		if dec.More() {
			return ClientFrame{}, Errorf(ErrBadRequest, "malformed frame: data after the JSON object")
		}
		f = slow
	}
	if f.Type == "" {
		return ClientFrame{}, Errorf(ErrBadRequest, "frame has no type")
	}
	return f, nil
}

// jsonProblem shortens a decoder error to something safe to echo.
func jsonProblem(err error) string {
	s := err.Error()
	s = trimPrefix(s, "json: ")
	if len(s) > 100 {
		s = s[:100]
	}
	return s
}

func trimPrefix(s, p string) string {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// AppendEventFrame appends the event frame for e to dst. It is built once per
// event and shared by every recipient.
func AppendEventFrame(dst []byte, e *Event) ([]byte, error) {
	out, err := e.appendJSON(append(dst, `{"type":"event","event":`...))
	if err != nil {
		return dst, err
	}
	return append(out, '}'), nil
}

// SplitFrames calls fn for each frame in one WebSocket message: the server may
// pack several JSON frames into one message, one per line.
func SplitFrames(msg []byte, fn func(frame []byte) error) error {
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		var line []byte
		if i < 0 {
			line, msg = msg, nil
		} else {
			line, msg = msg[:i], msg[i+1:]
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return nil
}

// ParseSeq parses a position from a query parameter or header.
func ParseSeq(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, Errorf(ErrBadRequest, "position %q is not an unsigned integer", s)
	}
	return n, nil
}
