// Package reads is the read-marker read model: for every member of every
// room, the seq they have read up to, and how many messages by others after
// it are unread (capped at MaxUnread), for clients that show unread badges.
//
// The business rules live here once, in [Fold]; the store adapters
// (reads/sqlite for the embedded default, reads/mongo for a cluster) only load
// the state a batch depends on, write the states Fold returns, and count
// unread messages. Both are held to one contract suite, reads/storetest,
// which the in-memory reference model [Memory] passes too.
//
// Every store is a named version ("reads_v1") with its position, the stream
// sequence of the last event applied, kept beside its data.
//
// This package must not import a database driver or any adapter.
package reads

import (
	"cmp"
	"context"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Marker is one member's read position in one room.
type Marker struct {
	Room   string `json:"room"`
	User   string `json:"user"`
	Read   uint64 `json:"read"`   // seq read up to
	Unread int    `json:"unread"` // messages after Read by others, not deleted; capped at MaxUnread
}

// MaxUnread is where unread counts stop (a UI shows "999+"): it keeps a count
// cheap in a room of a million messages.
const MaxUnread = 1000

// Key names a membership: a user in a room.
type Key struct {
	Room string
	User string
}

// Message is a message that counts towards others' unread counts: sent and
// not deleted.
type Message struct {
	Room   string `json:"room"`
	Seq    uint64 `json:"seq"`
	Author string `json:"author"`
}

// MessageKey names a message: its room and its message.sent seq.
type MessageKey struct {
	Room string
	Seq  uint64
}

// Snapshot is every row of a store: markers (with their unread counts) by
// (room, user), messages by (room, seq).
type Snapshot struct {
	Markers  []Marker
	Messages []Message
}

// Store is a named version of the read-marker model with its position: the
// stream sequence of the last event applied.
//
// A store has one writer, the projection's durable consumer; readers may call
// Markers and All concurrently with Apply.
type Store interface {
	// Apply applies events in stream order, all with the new position: events
	// with Seq <= Position() are skipped, so redelivered or overlapping
	// batches have their effect exactly once.
	Apply(ctx context.Context, events []chat.Event) error
	// Position is the sequence of the last event applied, 0 before any.
	Position(ctx context.Context) (uint64, error)
	// Markers returns user's marker in each of rooms that user is a member
	// of, keyed by room; rooms user is not a member of are absent.
	Markers(ctx context.Context, user string, rooms []string) (map[string]Marker, error)
	// All returns user's marker in every room user is a member of, by room.
	All(ctx context.Context, user string) ([]Marker, error)
	// Dump returns every row, for comparing a projection with a fresh
	// rebuild. Meant for tests and checks, not for serving.
	Dump(ctx context.Context) (Snapshot, error)
	// Drop removes this version's data and position.
	Drop(ctx context.Context) error
	Close() error
}

// CompareMarkers orders markers by (room, user), the order of Dump.
func CompareMarkers(a, b Marker) int {
	if c := cmp.Compare(a.Room, b.Room); c != 0 {
		return c
	}
	return cmp.Compare(a.User, b.User)
}

// CompareMessages orders messages by (room, seq), the order of Dump.
func CompareMessages(a, b Message) int {
	if c := cmp.Compare(a.Room, b.Room); c != 0 {
		return c
	}
	return cmp.Compare(a.Seq, b.Seq)
}
