package history_test

import (
	"testing"

	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/history/storetest"
	"github.com/jetchat/jetchat/projections/projectiontest"
)

// TestMemory holds the reference model to the contract, so a failure in an
// adapter is the adapter's.
func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Open {
		return projectiontest.MemoryVersions(func() history.Store { return history.NewMemory() })
	})
}
