package sqlite_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetchat/jetchat/projections/projectiontest"
	"github.com/jetchat/jetchat/projections/rooms"
	"github.com/jetchat/jetchat/projections/rooms/sqlite"
	"github.com/jetchat/jetchat/projections/rooms/storetest"
	"github.com/jetchat/jetchat/projections/sqlitestore/sqlitestoretest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Open {
		path := filepath.Join(t.TempDir(), "projections.db")
		return projectiontest.MustOpen(t, func(name string) (rooms.Store, error) {
			return sqlite.Open(context.Background(), path, name)
		})
	})
}

func TestOpenErrBadName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "Rooms", "r; DROP TABLE x", "1r"} {
		if s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "x.db"), name); err == nil {
			_ = s.Close()
			t.Errorf("Open with name %q: no error", name)
		}
	}
}

// TestWALAndIndexedQueries: the file runs in WAL mode, and every query a
// reader or the loader runs is served by a key or an index, never a scan of
// a whole table.
func TestWALAndIndexedQueries(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "p.db")
	s, err := sqlite.Open(context.Background(), path, "rooms_v1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db := sqlitestoretest.OpenWAL(t, path)
	for _, q := range []string{
		sqlite.ListQuery,
		`SELECT count(*) FROM rooms_v1_members WHERE room = 'a'`,
		`SELECT count(*) FROM rooms_v1_members WHERE room = 'a' AND user = 'u'`,
		`SELECT * FROM rooms_v1_rooms WHERE id = 'a'`,
	} {
		q = strings.ReplaceAll(q, "{N}", "rooms_v1")
		plan := sqlitestoretest.QueryPlan(t, db, q, 100, "ann")
		if q == strings.ReplaceAll(sqlite.ListQuery, "{N}", "rooms_v1") && !strings.Contains(strings.Join(plan, "\n"), "rooms_v1_members_user") {
			t.Errorf("List does not find a user's private rooms through rooms_v1_members_user: %q", plan)
		}
		for _, step := range plan {
			if strings.HasPrefix(step, "SCAN ") && !strings.Contains(step, "INDEX") && !strings.HasPrefix(step, "SCAN (subquery") {
				t.Errorf("%s\nscans a table: %q (plan %q)", q, step, plan)
			}
		}
	}
}
