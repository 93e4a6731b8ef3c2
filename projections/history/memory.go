package history

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Memory is a Store in memory: the reference model of the contract, and a
// store for tests that need history without a database. It keeps nothing
// across restarts.
type Memory struct {
	mu       sync.RWMutex
	msgs     map[MessageKey]Message
	position uint64
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{msgs: make(map[MessageKey]Message)}
}

// Apply implements Store.
func (s *Memory) Apply(ctx context.Context, events []chat.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := Fold(ctx, s.position, events, func(_ context.Context, l Lookup) ([]Message, error) {
		var out []Message
		for _, k := range l.Seqs {
			if m, ok := s.msgs[k]; ok {
				out = append(out, m)
			}
		}
		ids := make(map[ClientKey]bool, len(l.IDs))
		for _, k := range l.IDs {
			ids[k] = true
		}
		for _, m := range s.msgs {
			if ids[ClientKey{m.Room, m.Author, m.ID}] {
				out = append(out, m)
			}
		}
		return out, nil
	})
	if err != nil {
		return err
	}
	for _, m := range b.Messages {
		s.msgs[MessageKey{m.Room, m.Seq}] = m
	}
	s.position = b.Position
	return nil
}

// Position implements Store.
func (s *Memory) Position(context.Context) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.position, nil
}

// Messages implements Store.
func (s *Memory) Messages(_ context.Context, room string, p Page) ([]Message, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	var all []Message
	for k, m := range s.msgs {
		if k.Room == room {
			all = append(all, m)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(all, Compare)
	switch {
	case p.After != 0:
		i, _ := slices.BinarySearchFunc(all, p.After+1, func(m Message, seq uint64) int { return cmp.Compare(m.Seq, seq) })
		all = all[i:]
		if len(all) > p.Limit {
			all = all[:p.Limit]
		}
	default:
		if p.Before != 0 {
			i, _ := slices.BinarySearchFunc(all, p.Before, func(m Message, seq uint64) int { return cmp.Compare(m.Seq, seq) })
			all = all[:i]
		}
		if len(all) > p.Limit {
			all = all[len(all)-p.Limit:]
		}
	}
	return slices.Clone(all), nil
}

// Dump implements Store.
func (s *Memory) Dump(context.Context) ([]Message, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var all []Message
	for _, m := range s.msgs {
		all = append(all, m)
	}
	slices.SortFunc(all, Compare)
	return all, nil
}

// Drop implements Store.
func (s *Memory) Drop(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.msgs)
	s.position = 0
	return nil
}

// Close implements Store.
func (s *Memory) Close() error { return nil }
