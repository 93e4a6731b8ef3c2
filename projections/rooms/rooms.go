// Package rooms is the room list read model: every room with its name,
// visibility, creator, member count, last activity and a preview of its last
// message, and the member set behind the count, for clients that list the
// rooms they may enter.
//
// The business rules live here once, in [Fold]; the store adapters
// (rooms/sqlite for the embedded default, rooms/mongo for a cluster) only load
// the state a batch depends on and write the states Fold returns. Both are
// held to one contract suite, rooms/storetest, which the in-memory reference
// model [Memory] passes too.
//
// Every store is a named version ("rooms_v1") with its position, the stream
// sequence of the last event applied, kept beside its data.
//
// This package must not import a database driver or any adapter.
package rooms

import (
	"cmp"
	"context"
	"time"
	"unicode/utf8"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Room is one room as the list shows it.
type Room struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Private      bool      `json:"private"`
	Creator      string    `json:"creator"`
	Created      time.Time `json:"created"`        // the room.created event's ts (UTC)
	Members      int       `json:"members"`        // member count
	LastActivity time.Time `json:"last_activity"`  // ts of the room's last event other than read.moved
	Head         uint64    `json:"head"`           // seq of the room's last event applied (any type)
	Last         *Preview  `json:"last,omitempty"` // the last message sent, nil if none
}

// Preview is a room's last message sent, as the list shows it.
type Preview struct {
	Seq     uint64    `json:"seq"`
	Author  string    `json:"author"`
	Text    string    `json:"text"` // PreviewText of the current text; "" once deleted
	Time    time.Time `json:"ts"`   // when it was sent (UTC)
	Deleted bool      `json:"deleted,omitempty"`
}

// Member is one user's membership of a room.
type Member struct {
	Room string `json:"room"`
	User string `json:"user"`
}

// Snapshot is every row of a store: rooms by id, memberships by (room, user).
type Snapshot struct {
	Rooms   []Room
	Members []Member
}

// List limits.
const (
	DefaultLimit = 100
	MaxLimit     = 500
)

// Limit normalizes a List limit: 0 (or less) means DefaultLimit, above
// MaxLimit means MaxLimit.
func Limit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

// PreviewRunes bounds a preview's text, the ellipsis included.
const PreviewRunes = 140

// PreviewText returns text if it has at most PreviewRunes runes, else its
// first PreviewRunes-1 runes and "…".
func PreviewText(text string) string {
	if utf8.RuneCountInString(text) <= PreviewRunes {
		return text
	}
	n := 0
	for i := range text {
		if n == PreviewRunes-1 {
			return text[:i] + "…"
		}
		n++
	}
	return text
}

// Store is a named version of the room list with its position: the stream
// sequence of the last event applied.
//
// A store has one writer, the projection's durable consumer; readers may call
// List, Get and IsMember concurrently with Apply.
type Store interface {
	// Apply applies events in stream order, all with the new position: events
	// with Seq <= Position() are skipped, so redelivered or overlapping
	// batches have their effect exactly once.
	Apply(ctx context.Context, events []chat.Event) error
	// Position is the sequence of the last event applied, 0 before any.
	Position(ctx context.Context) (uint64, error)
	// List returns the public rooms and the private rooms user is a member
	// of, newest LastActivity first (ties by id), at most Limit(limit).
	List(ctx context.Context, user string, limit int) ([]Room, error)
	// Get returns a room; false if it does not exist.
	Get(ctx context.Context, room string) (Room, bool, error)
	// IsMember reports whether user is a member of room.
	IsMember(ctx context.Context, room, user string) (bool, error)
	// Dump returns every row, rooms by id and members by (room, user), for
	// comparing a projection with a fresh rebuild. Meant for tests and checks,
	// not for serving.
	Dump(ctx context.Context) (Snapshot, error)
	// Drop removes this version's data and position.
	Drop(ctx context.Context) error
	Close() error
}

// CompareList orders rooms as List returns them: newest LastActivity first,
// ties by id.
func CompareList(a, b Room) int {
	if c := b.LastActivity.Compare(a.LastActivity); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// CompareMembers orders memberships by (room, user), the order of Dump.
func CompareMembers(a, b Member) int {
	if c := cmp.Compare(a.Room, b.Room); c != 0 {
		return c
	}
	return cmp.Compare(a.User, b.User)
}
