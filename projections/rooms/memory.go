package rooms

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Memory is a Store in memory: the reference model of the contract, and a
// store for tests that need the room list without a database. It keeps
// nothing across restarts.
type Memory struct {
	mu       sync.RWMutex
	rooms    map[string]Room
	members  map[Member]struct{}
	position uint64
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{rooms: make(map[string]Room), members: make(map[Member]struct{})}
}

// Apply implements Store.
func (s *Memory) Apply(ctx context.Context, events []chat.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := Fold(ctx, s.position, events, func(_ context.Context, l Lookup) (State, error) {
		st := State{Counts: make(map[string]int, len(l.Count))}
		for _, id := range l.Rooms {
			if r, ok := s.rooms[id]; ok {
				st.Rooms = append(st.Rooms, clone(r))
			}
		}
		for _, id := range l.Count {
			st.Counts[id] = 0
		}
		for m := range s.members {
			if _, ok := st.Counts[m.Room]; ok {
				st.Counts[m.Room]++
			}
		}
		for _, m := range l.Members {
			if _, ok := s.members[m]; ok {
				st.Members = append(st.Members, m)
			}
		}
		return st, nil
	})
	if err != nil {
		return err
	}
	for _, m := range b.Joined {
		s.members[m] = struct{}{}
	}
	for _, m := range b.Left {
		delete(s.members, m)
	}
	for _, r := range b.Rooms {
		s.rooms[r.ID] = clone(r)
	}
	s.position = b.Position
	return nil
}

// clone copies a room with its preview, so callers never share one.
func clone(r Room) Room {
	if r.Last != nil {
		p := *r.Last
		r.Last = &p
	}
	return r
}

// Position implements Store.
func (s *Memory) Position(context.Context) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.position, nil
}

// List implements Store.
func (s *Memory) List(_ context.Context, user string, limit int) ([]Room, error) {
	s.mu.RLock()
	var out []Room
	for _, r := range s.rooms {
		if _, member := s.members[Member{r.ID, user}]; !r.Private || member {
			out = append(out, clone(r))
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, CompareList)
	if n := Limit(limit); len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// Get implements Store.
func (s *Memory) Get(_ context.Context, room string) (Room, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.rooms[room]
	return clone(r), ok, nil
}

// IsMember implements Store.
func (s *Memory) IsMember(_ context.Context, room, user string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.members[Member{room, user}]
	return ok, nil
}

// Dump implements Store.
func (s *Memory) Dump(context.Context) (Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var snap Snapshot
	for _, r := range s.rooms {
		snap.Rooms = append(snap.Rooms, clone(r))
	}
	slices.SortFunc(snap.Rooms, func(a, b Room) int { return cmp.Compare(a.ID, b.ID) })
	for m := range s.members {
		snap.Members = append(snap.Members, m)
	}
	slices.SortFunc(snap.Members, CompareMembers)
	return snap, nil
}

// Drop implements Store.
func (s *Memory) Drop(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.rooms)
	clear(s.members)
	s.position = 0
	return nil
}

// Close implements Store.
func (s *Memory) Close() error { return nil }
