package rooms_test

import (
	"sync"
	"testing"

	"github.com/jetchat/jetchat/projections/rooms"
	"github.com/jetchat/jetchat/projections/rooms/storetest"
)

// TestMemory holds the reference model to the contract, so a failure in an
// adapter is the adapter's.
func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Open {
		var mu sync.Mutex
		stores := make(map[string]*rooms.Memory)
		return func(name string) rooms.Store {
			mu.Lock()
			defer mu.Unlock()
			if stores[name] == nil {
				stores[name] = rooms.NewMemory()
			}
			return stores[name]
		}
	})
}
