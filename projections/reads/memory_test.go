package reads_test

import (
	"sync"
	"testing"

	"github.com/jetchat/jetchat/projections/reads"
	"github.com/jetchat/jetchat/projections/reads/storetest"
)

// TestMemory holds the reference model to the contract, so a failure in an
// adapter is the adapter's.
func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Open {
		var mu sync.Mutex
		stores := make(map[string]*reads.Memory)
		return func(name string) reads.Store {
			mu.Lock()
			defer mu.Unlock()
			if stores[name] == nil {
				stores[name] = reads.NewMemory()
			}
			return stores[name]
		}
	})
}
