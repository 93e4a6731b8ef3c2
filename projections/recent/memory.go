package recent

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Memory is a Store in memory: the embedded node's, and the reference model
// of the contract. It keeps nothing across restarts, so the embedded node
// starts it at the stream's head (NewMemory(n, head)) rather than replaying
// the log: windows are empty at first and fill as events arrive.
type Memory struct {
	n int

	mu       sync.RWMutex
	rooms    map[string][]chat.Event // ascending by seq, at most n
	position uint64
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty store with windows of n events (DefaultN if
// n <= 0) at position: events at or below it are skipped.
func NewMemory(n int, position uint64) *Memory {
	if n <= 0 {
		n = DefaultN
	}
	return &Memory{n: n, rooms: make(map[string][]chat.Event), position: position}
}

// Apply implements Store.
func (s *Memory) Apply(_ context.Context, events []chat.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := Fold(s.position, events, s.n)
	for _, w := range b.Windows {
		win := slices.DeleteFunc(s.rooms[w.Room], func(old chat.Event) bool {
			_, found := slices.BinarySearchFunc(w.Events, old.Seq, bySeq)
			return found
		})
		win = append(win, w.Events...)
		slices.SortFunc(win, func(a, b chat.Event) int { return cmp.Compare(a.Seq, b.Seq) })
		if len(win) > s.n {
			win = slices.Clone(win[len(win)-s.n:])
		}
		s.rooms[w.Room] = win
	}
	s.position = b.Position
	return nil
}

func bySeq(e chat.Event, seq uint64) int { return cmp.Compare(e.Seq, seq) }

// Position implements Store.
func (s *Memory) Position(context.Context) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.position, nil
}

// Events implements Store.
func (s *Memory) Events(_ context.Context, room string, n int) ([]chat.Event, error) {
	if err := chat.ValidateRoomID(room); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Chain(s.rooms[room], min(n, s.n)), nil
}

// Close implements Store.
func (s *Memory) Close() error { return nil }
