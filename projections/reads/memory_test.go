package reads_test

import (
	"testing"

	"github.com/jetchat/jetchat/projections/projectiontest"
	"github.com/jetchat/jetchat/projections/reads"
	"github.com/jetchat/jetchat/projections/reads/storetest"
)

// TestMemory holds the reference model to the contract, so a failure in an
// adapter is the adapter's.
func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Open {
		return projectiontest.MemoryVersions(func() reads.Store { return reads.NewMemory() })
	})
}
