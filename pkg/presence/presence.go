// Package presence tracks who is online in each room, across every chat
// node: the contract ([Presence]), its in-memory implementation for the
// embedded node ([Memory]), and the rules both follow. pkg/redis holds the
// cluster's implementation; presence/presencetest is the suite both pass.
//
// An entry is one connection of a user in a room. Entries expire unless
// refreshed, so the users of a node that crashed vanish within the expiry.
// Add, Remove and Expire say when a user's first entry arrived or their last
// one went, so that exactly one node announces each join and leave.
//
// Presence is ephemeral: it must never be written to the event log, and
// losing it (Redis down) must never stop delivery; callers treat its errors
// as "presence unavailable".
package presence

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultExpiry is how long an entry lives without a Refresh.
const DefaultExpiry = 30 * time.Second

// Entry is one connection of a user in a room. Conn is unique per connection
// across the cluster (node id + connection number).
type Entry struct{ Room, User, Conn string }

// Presence records who is online in each room.
//
// A user is online in a room while they have a live entry there: one added
// or refreshed less than the expiry ago. Expired entries stay stored until
// Expire (or Remove) sweeps them, and whoever removes a user's last entry
// reports the departure, once.
type Presence interface {
	// Add adds or renews an entry. first reports that the user had no live
	// entry in the room before this call, so a retried Add of the same
	// connection is not a second arrival.
	Add(ctx context.Context, room, user, conn string) (first bool, err error)
	// Remove removes an entry and the user's expired entries in the room. last
	// reports that the user has no entry left there; it is false if the entry
	// was not there (Expire swept it and reported the departure).
	Remove(ctx context.Context, room, user, conn string) (last bool, err error)
	// Refresh extends the entries' expiry, re-adding any that were swept
	// (silently: it reports no arrival). It is the heartbeat of a node for its
	// own connections.
	Refresh(ctx context.Context, entries []Entry) error
	// Online returns the distinct users with a live entry in the room, sorted.
	Online(ctx context.Context, room string) ([]string, error)
	// Expire removes the room's expired entries and returns, sorted, the users
	// whose last entry this call removed: across all nodes calling it, each
	// departure is reported exactly once.
	Expire(ctx context.Context, room string) (gone []string, err error)
}

// ErrInvalidEntry is returned for an empty room, user or conn, or one holding
// a NUL byte (the separator of stored entries).
var ErrInvalidEntry = errors.New("presence: invalid entry")

// ValidateEntry checks the parts of an entry.
func ValidateEntry(room, user, conn string) error {
	for _, f := range [...]struct{ name, v string }{{"room", room}, {"user", user}, {"conn", conn}} {
		if f.v == "" || strings.IndexByte(f.v, 0) >= 0 {
			return fmt.Errorf("%w: %s %q must be non-empty and hold no NUL byte", ErrInvalidEntry, f.name, f.v)
		}
	}
	return nil
}

// ValidateRoom checks a room name given to Online or Expire.
func ValidateRoom(room string) error {
	if room == "" || strings.IndexByte(room, 0) >= 0 {
		return fmt.Errorf("%w: room %q must be non-empty and hold no NUL byte", ErrInvalidEntry, room)
	}
	return nil
}
