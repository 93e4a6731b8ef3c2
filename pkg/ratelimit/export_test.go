package ratelimit

// Buckets returns how many buckets m keeps.
func Buckets(m *Memory) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tat)
}
