// Package sqlitestoretest checks, in an SQLite adapter's tests, what
// sqlitestore promises of the file: WAL mode, and queries that the planner
// serves by a key or an index. It is for tests only.
package sqlitestoretest

import (
	"database/sql"
	"testing"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// OpenWAL opens the SQLite file at path beside the store that made it,
// fails the test unless the file runs in WAL mode (so readers do not wait
// for the writer), and closes it when the test ends.
func OpenWAL(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		tb.Fatalf("journal_mode %q (%v), want wal", mode, err)
	}
	return db
}

// QueryPlan returns the steps (the detail column) of EXPLAIN QUERY PLAN q.
func QueryPlan(tb testing.TB, db *sql.DB, q string, args ...any) []string {
	tb.Helper()
	rows, err := db.Query(`EXPLAIN QUERY PLAN `+q, args...)
	if err != nil {
		tb.Fatalf("explain %s: %v", q, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			tb.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("explain %s: %v", q, err)
	}
	return plan
}
