package recent

import (
	"slices"

	"github.com/jetchat/jetchat/pkg/chat"
)

// Lose removes events from a room's window of m, as a lost write would; no
// seqs removes the whole window.
func Lose(m *Memory, room string, seqs ...uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(seqs) == 0 {
		delete(m.rooms, room)
		return
	}
	m.rooms[room] = slices.DeleteFunc(m.rooms[room], func(e chat.Event) bool { return slices.Contains(seqs, e.Seq) })
}
