package history_test

import (
	"sync"
	"testing"

	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/history/storetest"
)

// TestMemory holds the reference model to the contract, so a failure in an
// adapter is the adapter's.
func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Open {
		var mu sync.Mutex
		stores := make(map[string]*history.Memory)
		return func(name string) history.Store {
			mu.Lock()
			defer mu.Unlock()
			if stores[name] == nil {
				stores[name] = history.NewMemory()
			}
			return stores[name]
		}
	})
}
