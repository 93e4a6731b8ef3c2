package reads

import (
	"context"
	"slices"
	"sync"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Memory is a Store in memory: the reference model of the contract, and a
// store for tests that need read markers without a database. It keeps
// nothing across restarts.
type Memory struct {
	mu       sync.RWMutex
	markers  map[Key]uint64
	messages map[MessageKey]string // author
	position uint64
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{markers: make(map[Key]uint64), messages: make(map[MessageKey]string)}
}

// Apply implements Store.
func (s *Memory) Apply(ctx context.Context, events []chat.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := Fold(ctx, s.position, events, func(_ context.Context, l Lookup) (State, error) {
		var st State
		for _, k := range l.Markers {
			if r, ok := s.markers[k]; ok {
				st.Markers = append(st.Markers, Marker{Room: k.Room, User: k.User, Read: r})
			}
		}
		for _, k := range l.Messages {
			if a, ok := s.messages[k]; ok {
				st.Messages = append(st.Messages, Message{Room: k.Room, Seq: k.Seq, Author: a})
			}
		}
		return st, nil
	})
	if err != nil {
		return err
	}
	for _, m := range b.Markers {
		s.markers[Key{m.Room, m.User}] = m.Read
	}
	for _, k := range b.Removed {
		delete(s.markers, k)
	}
	for _, m := range b.Messages {
		s.messages[MessageKey{m.Room, m.Seq}] = m.Author
	}
	for _, k := range b.Deleted {
		delete(s.messages, k)
	}
	s.position = b.Position
	return nil
}

// unread counts, under s.mu, the messages of room after read by others.
func (s *Memory) unread(room, user string, read uint64) int {
	n := 0
	for k, author := range s.messages {
		if k.Room == room && k.Seq > read && author != user {
			n++
		}
	}
	return min(n, MaxUnread)
}

// Position implements Store.
func (s *Memory) Position(context.Context) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.position, nil
}

// Markers implements Store.
func (s *Memory) Markers(_ context.Context, user string, rooms []string) (map[string]Marker, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]Marker)
	for _, room := range rooms {
		if r, ok := s.markers[Key{room, user}]; ok {
			out[room] = Marker{Room: room, User: user, Read: r, Unread: s.unread(room, user, r)}
		}
	}
	return out, nil
}

// All implements Store.
func (s *Memory) All(_ context.Context, user string) ([]Marker, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Marker
	for k, r := range s.markers {
		if k.User == user {
			out = append(out, Marker{Room: k.Room, User: user, Read: r, Unread: s.unread(k.Room, user, r)})
		}
	}
	slices.SortFunc(out, CompareMarkers)
	return out, nil
}

// Dump implements Store.
func (s *Memory) Dump(context.Context) (Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var snap Snapshot
	for k, r := range s.markers {
		snap.Markers = append(snap.Markers, Marker{Room: k.Room, User: k.User, Read: r, Unread: s.unread(k.Room, k.User, r)})
	}
	slices.SortFunc(snap.Markers, CompareMarkers)
	for k, a := range s.messages {
		snap.Messages = append(snap.Messages, Message{Room: k.Room, Seq: k.Seq, Author: a})
	}
	slices.SortFunc(snap.Messages, CompareMessages)
	return snap, nil
}

// Drop implements Store.
func (s *Memory) Drop(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.markers)
	clear(s.messages)
	s.position = 0
	return nil
}

// Close implements Store.
func (s *Memory) Close() error { return nil }
