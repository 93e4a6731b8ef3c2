package presence

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Memory is Presence within one process: the embedded node's, and the
// reference model of the contract. It keeps nothing across restarts.
type Memory struct {
	expiry time.Duration
	now    func() time.Time

	mu    sync.Mutex
	rooms map[string]map[member]time.Time // room -> entry -> expiry
}

type member struct{ user, conn string }

var _ Presence = (*Memory)(nil)

// NewMemory returns an empty Memory whose entries live for expiry
// (DefaultExpiry if <= 0) without a Refresh, on the clock now (time.Now if
// nil; tests pass a fake one).
func NewMemory(expiry time.Duration, now func() time.Time) *Memory {
	if expiry <= 0 {
		expiry = DefaultExpiry
	}
	if now == nil {
		now = time.Now
	}
	return &Memory{expiry: expiry, now: now, rooms: make(map[string]map[member]time.Time)}
}

// live reports whether the user has a live entry in entries at now.
func live(entries map[member]time.Time, user string, now time.Time) bool {
	for m, exp := range entries {
		if m.user == user && exp.After(now) {
			return true
		}
	}
	return false
}

// Add implements Presence.
func (p *Memory) Add(_ context.Context, room, user, conn string) (bool, error) {
	if err := ValidateEntry(room, user, conn); err != nil {
		return false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	entries := p.rooms[room]
	if entries == nil {
		entries = make(map[member]time.Time)
		p.rooms[room] = entries
	}
	first := !live(entries, user, now)
	entries[member{user, conn}] = now.Add(p.expiry)
	return first, nil
}

// Remove implements Presence.
func (p *Memory) Remove(_ context.Context, room, user, conn string) (bool, error) {
	if err := ValidateEntry(room, user, conn); err != nil {
		return false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	entries := p.rooms[room]
	if _, ok := entries[member{user, conn}]; !ok {
		return false, nil
	}
	delete(entries, member{user, conn})
	now := p.now()
	last := true
	for m, exp := range entries {
		if m.user != user {
			continue
		}
		if exp.After(now) {
			last = false
		} else {
			delete(entries, m)
		}
	}
	if len(entries) == 0 {
		delete(p.rooms, room)
	}
	return last, nil
}

// Refresh implements Presence.
func (p *Memory) Refresh(_ context.Context, entries []Entry) error {
	for _, e := range entries {
		if err := ValidateEntry(e.Room, e.User, e.Conn); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	exp := p.now().Add(p.expiry)
	for _, e := range entries {
		m := p.rooms[e.Room]
		if m == nil {
			m = make(map[member]time.Time)
			p.rooms[e.Room] = m
		}
		m[member{e.User, e.Conn}] = exp
	}
	return nil
}

// Online implements Presence.
func (p *Memory) Online(_ context.Context, room string) ([]string, error) {
	if err := ValidateRoom(room); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var users []string
	for m, exp := range p.rooms[room] {
		if exp.After(now) {
			users = append(users, m.user)
		}
	}
	slices.Sort(users)
	return slices.Compact(users), nil
}

// Expire implements Presence.
func (p *Memory) Expire(_ context.Context, room string) ([]string, error) {
	if err := ValidateRoom(room); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	entries := p.rooms[room]
	var swept []string
	for m, exp := range entries {
		if !exp.After(now) {
			delete(entries, m)
			swept = append(swept, m.user)
		}
	}
	if len(swept) == 0 {
		return nil, nil
	}
	left := make(map[string]bool)
	for m := range entries {
		left[m.user] = true
	}
	var gone []string
	for _, u := range swept {
		if !left[u] {
			gone = append(gone, u)
		}
	}
	if len(entries) == 0 {
		delete(p.rooms, room)
	}
	slices.Sort(gone)
	return slices.Compact(gone), nil
}
