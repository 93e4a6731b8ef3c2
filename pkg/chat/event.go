package chat

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// EventType names what happened. The set is closed: an event of another type
// in the log is treated as undecodable.
type EventType string

// Event types. Every one of them is stored in the log; typing and presence are
// ephemeral and never events.
const (
	MessageSent    EventType = "message.sent"
	MessageEdited  EventType = "message.edited"
	MessageDeleted EventType = "message.deleted"
	ReactionAdded  EventType = "reaction.added"
	ReactionRemove EventType = "reaction.removed"
	MemberJoined   EventType = "member.joined"
	MemberLeft     EventType = "member.left"
	RoomCreated    EventType = "room.created"
	ReadMoved      EventType = "read.moved"
	// Invalid stands in, on delivery, for a stored event that could not be
	// decoded: it keeps the room's seq/prev chain whole and carries nothing.
	Invalid EventType = "invalid"
)

// Known reports whether t is one of the event types the log may hold.
func (t EventType) Known() bool {
	switch t {
	case MessageSent, MessageEdited, MessageDeleted, ReactionAdded, ReactionRemove,
		MemberJoined, MemberLeft, RoomCreated, ReadMoved:
		return true
	}
	return false
}

// Limits that hold for every event, whatever the transport.
const (
	MaxTextBytes  = 4 << 10 // message text, in bytes of UTF-8
	MaxIDBytes    = 64      // client-chosen ids
	MaxEmojiBytes = 32
	MaxNameBytes  = 128 // room display names
)

// Event is one immutable fact in a room's log.
//
// Seq and Prev are positions in the stream: Seq is the event's own, Prev the
// room's previous event's (0 for the room's first). They are assigned by the
// log and travel beside the stored body, never inside it.
type Event struct {
	ID     string    `json:"id"`
	Type   EventType `json:"type"`
	Room   string    `json:"room"`
	Author string    `json:"author"`
	Time   time.Time `json:"ts"`

	Seq  uint64 `json:"seq,omitempty"`
	Prev uint64 `json:"prev"`

	Text    string `json:"text,omitempty"`    // message.sent, message.edited
	Target  uint64 `json:"target,omitempty"`  // seq of the message edited, deleted or reacted to; read.moved: the position read
	Emoji   string `json:"emoji,omitempty"`   // reaction.*
	User    string `json:"user,omitempty"`    // member.*: the member (Author is who acted)
	Name    string `json:"name,omitempty"`    // room.created
	Private bool   `json:"private,omitempty"` // room.created
}

// MarshalBody encodes the event as it is stored: without Seq and Prev.
func (e Event) MarshalBody() ([]byte, error) {
	e.Seq, e.Prev = 0, 0
	return e.appendJSON(make([]byte, 0, e.size()))
}

// DecodeBody decodes and validates a stored event body. Events that fail are
// poison: the caller skips them but keeps their position.
func DecodeBody(data []byte) (Event, error) {
	e, ok := fastEvent(data)
	if !ok {
		var slow Event // its own variable: e stays on the stack
		if err := json.Unmarshal(data, &slow); err != nil {
			return Event{}, fmt.Errorf("decode event: %w", err)
		}
		e = slow
	}
	e.Seq, e.Prev = 0, 0
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// Validate checks the event's fields against its type.
func (e Event) Validate() error {
	if !e.Type.Known() {
		return Errorf(ErrBadRequest, "unknown event type %q", e.Type)
	}
	if err := ValidateRoomID(e.Room); err != nil {
		return err
	}
	if err := ValidateUserID(e.Author); err != nil {
		return err
	}
	if err := ValidateClientID(e.ID); err != nil {
		return err
	}
	switch e.Type {
	case MessageSent, MessageEdited:
		if err := ValidateText(e.Text); err != nil {
			return err
		}
	case ReactionAdded, ReactionRemove:
		if e.Emoji == "" || len(e.Emoji) > MaxEmojiBytes || !utf8.ValidString(e.Emoji) {
			return Errorf(ErrBadRequest, "emoji must be 1 to %d bytes of UTF-8", MaxEmojiBytes)
		}
	case MemberJoined, MemberLeft:
		if err := ValidateUserID(e.User); err != nil {
			return err
		}
	case RoomCreated:
		if err := ValidateRoomName(e.Name); err != nil {
			return err
		}
	}
	switch e.Type {
	case MessageEdited, MessageDeleted, ReactionAdded, ReactionRemove, ReadMoved:
		if e.Target == 0 {
			return Errorf(ErrBadRequest, "target must be a message's seq")
		}
	}
	return nil
}

// ValidateText checks a message's text.
func ValidateText(s string) error {
	switch {
	case s == "":
		return Errorf(ErrBadRequest, "text is empty")
	case len(s) > MaxTextBytes:
		return Errorf(ErrTooLarge, "text is longer than %d bytes", MaxTextBytes)
	case !utf8.ValidString(s):
		return Errorf(ErrBadRequest, "text is not valid UTF-8")
	}
	return nil
}

// Signal is an ephemeral room notice passed between nodes (core NATS, never
// stored): a user typing, or coming online or going offline.
type Signal struct {
	Kind string
	User string
}

// Signal kinds.
const (
	SignalTyping  = "typing"
	SignalOnline  = "online"
	SignalOffline = "offline"
)
