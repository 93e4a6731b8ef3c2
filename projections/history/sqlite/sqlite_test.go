package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/history/sqlite"
	"github.com/jetchat/jetchat/projections/history/storetest"
	"github.com/jetchat/jetchat/projections/projectiontest"
	"github.com/jetchat/jetchat/projections/sqlitestore/sqlitestoretest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Open {
		path := filepath.Join(t.TempDir(), "projections.db")
		return projectiontest.MustOpen(t, func(name string) (history.Store, error) {
			return sqlite.Open(context.Background(), path, name)
		})
	})
}

func TestOpenErrBadName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "History", "h; DROP TABLE x", "1h"} {
		if s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "x.db"), name); err == nil {
			_ = s.Close()
			t.Errorf("Open with name %q: no error", name)
		}
	}
}

// TestWAL: the file runs in WAL mode, so readers do not wait for the writer.
func TestWAL(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "p.db")
	s, err := sqlite.Open(context.Background(), path, "history_v1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sqlitestoretest.OpenWAL(t, path)
}
