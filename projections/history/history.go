// Package history is the message history read model: the current state of
// every message (text, edits, tombstones, reactions), folded from a room's
// events and paged by position for clients that load older messages.
//
// The business rules live here once, in [Fold]; the store adapters
// (history/sqlite for the embedded default, history/mongo for a cluster) only
// load the messages a batch depends on and write the states Fold returns. Both
// are held to one contract suite, history/storetest.
//
// Every store is a named version ("history_v1"): a rebuild folds the whole
// stream into "history_v2" beside the live one and switches readers over when
// it has caught up; Drop then removes the old version's data.
//
// This package must not import a database driver or any adapter.
package history

import (
	"context"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Message is a message's current state.
type Message struct {
	Room   string    `json:"room"`
	Seq    uint64    `json:"seq"`    // the message.sent event's stream sequence: the message's key
	ID     string    `json:"id"`     // the client-chosen id, unique per (room, author)
	Author string    `json:"author"` //
	Time   time.Time `json:"ts"`     // when it was sent (UTC)
	Text   string    `json:"text"`   // empty once deleted
	Edited bool      `json:"edited,omitempty"`
	// EditedAt is the last edit's time (UTC), zero if never edited.
	EditedAt  time.Time  `json:"edited_at,omitzero"`
	Deleted   bool       `json:"deleted,omitempty"`
	Reactions []Reaction `json:"reactions,omitempty"` // sorted by emoji; nil if none
}

// Reaction is one emoji on a message and who added it.
type Reaction struct {
	Emoji string   `json:"emoji"`
	Users []string `json:"users"` // sorted, never empty
}

// Paging limits.
const (
	DefaultLimit = 50
	MaxLimit     = 200
)

// Page selects messages of one room by position. At most one of Before and
// After is set; neither selects the latest messages.
type Page struct {
	Before uint64 // the Limit messages with seq < Before, nearest to it
	After  uint64 // the Limit messages with seq > After
	Limit  int    // 0 (or less) means DefaultLimit; above MaxLimit means MaxLimit
}

// Normalize checks p and fills in its limit.
func (p Page) Normalize() (Page, error) {
	if p.Before != 0 && p.After != 0 {
		return Page{}, chat.Errorf(chat.ErrBadRequest, "set before or after, not both")
	}
	switch {
	case p.Limit <= 0:
		p.Limit = DefaultLimit
	case p.Limit > MaxLimit:
		p.Limit = MaxLimit
	}
	return p, nil
}

// Store is a named version of the history read model with its position: the
// stream sequence of the last event applied.
//
// A store has one writer, the projection's durable consumer; readers may call
// Messages concurrently with Apply.
type Store interface {
	// Apply applies events in stream order, all with the new position: events
	// with Seq <= Position() are skipped, so redelivered or overlapping
	// batches have their effect exactly once.
	Apply(ctx context.Context, events []chat.Event) error
	// Position is the sequence of the last event applied, 0 before any.
	Position(ctx context.Context) (uint64, error)
	// Messages returns a page of room's messages in ascending seq order (an
	// empty room or an unknown one gives none).
	Messages(ctx context.Context, room string, p Page) ([]Message, error)
	// Dump returns every message of every room ordered by (room, seq), for
	// comparing a projection with a fresh rebuild. Meant for tests and checks,
	// not for serving.
	Dump(ctx context.Context) ([]Message, error)
	// Drop removes this version's data and position.
	Drop(ctx context.Context) error
	Close() error
}
