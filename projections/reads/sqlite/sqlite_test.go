package sqlite_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetchat/jetchat/projections/projectiontest"
	"github.com/jetchat/jetchat/projections/reads"
	"github.com/jetchat/jetchat/projections/reads/sqlite"
	"github.com/jetchat/jetchat/projections/reads/storetest"
	"github.com/jetchat/jetchat/projections/sqlitestore/sqlitestoretest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Open {
		path := filepath.Join(t.TempDir(), "projections.db")
		return projectiontest.MustOpen(t, func(name string) (reads.Store, error) {
			return sqlite.Open(context.Background(), path, name)
		})
	})
}

func TestOpenErrBadName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "Reads", "r; DROP TABLE x", "1r"} {
		if s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "x.db"), name); err == nil {
			_ = s.Close()
			t.Errorf("Open with name %q: no error", name)
		}
	}
}

// TestWALAndIndexedQueries: the file runs in WAL mode, and the reader's
// queries are served by a key or an index, never a scan of a whole table.
func TestWALAndIndexedQueries(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "p.db")
	s, err := sqlite.Open(context.Background(), path, "reads_v1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db := sqlitestoretest.OpenWAL(t, path)
	for q, args := range map[string][]any{
		sqlite.UnreadQuery: {"a", 5, "ann"},
		`SELECT room, read FROM {N}_markers WHERE user = ? ORDER BY room`: {"ann"},
		`SELECT read FROM {N}_markers WHERE room = ? AND user = ?`:        {"a", "ann"},
	} {
		q = strings.ReplaceAll(q, "{N}", "reads_v1")
		plan := sqlitestoretest.QueryPlan(t, db, q, args...)
		for _, step := range plan {
			if (strings.HasPrefix(step, "SCAN ") && !strings.HasPrefix(step, "SCAN (subquery")) || strings.Contains(step, "TEMP B-TREE") {
				t.Errorf("%s\nscans or sorts: %q (plan %q)", q, step, plan)
			}
		}
	}
}
