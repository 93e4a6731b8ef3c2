package sqlitestore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/jetchat/jetchat/projections/sqlitestore"
	"github.com/jetchat/jetchat/projections/sqlitestore/sqlitestoretest"
)

const schema = `CREATE TABLE IF NOT EXISTS {N}_things (id INTEGER PRIMARY KEY);`

func open(t *testing.T, path, name string, stmts ...sqlitestore.Stmt) *sqlitestore.DB {
	t.Helper()
	db, err := sqlitestore.Open(context.Background(), "test", path, name, schema, stmts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestOpen: the file runs in WAL mode, statements are prepared on the
// writer and on the query_only readers, and the position survives a reopen.
func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	var put, count *sql.Stmt
	db := open(t, path, "things_v1",
		sqlitestore.Writer(&put, `INSERT INTO {N}_things (id) VALUES (?)`),
		sqlitestore.Reader(&count, `SELECT count(*) FROM {N}_things`))
	sqlitestoretest.OpenWAL(t, path)
	if pos, err := db.Position(ctx, nil); err != nil || pos != 0 {
		t.Fatalf("position %d (%v), want 0", pos, err)
	}
	tx, err := db.W.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.StmtContext(ctx, put).ExecContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := db.SetPosition(ctx, tx, 7); err != nil {
		t.Fatal(err)
	}
	if pos, err := db.Position(ctx, tx); err != nil || pos != 7 {
		t.Fatalf("position in tx %d (%v), want 7", pos, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := count.QueryRowContext(ctx).Scan(&n); err != nil || n != 1 {
		t.Fatalf("count %d (%v), want 1", n, err)
	}
	if _, err := db.R.ExecContext(ctx, db.SQL(`INSERT INTO {N}_things (id) VALUES (2)`)); err == nil {
		t.Errorf("a reader wrote: want query_only")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if pos, err := open(t, path, "things_v1").Position(ctx, nil); err != nil || pos != 7 {
		t.Fatalf("position after reopen %d (%v), want 7", pos, err)
	}
}

// TestDrop: a dropped version opens again empty, and other versions in the
// file keep their tables.
func TestDrop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	v1, v2 := open(t, path, "things_v1"), open(t, path, "things_v2")
	for _, db := range []*sqlitestore.DB{v1, v2} {
		if _, err := db.W.ExecContext(ctx, db.SQL(`INSERT INTO {N}_things (id) VALUES (1); INSERT INTO {N}_position (id, position) VALUES (1, 5)`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := v1.Drop(ctx, "things"); err != nil {
		t.Fatal(err)
	}
	_ = v1.Close()
	var n int
	if err := v2.R.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name LIKE 'things_v1%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d tables of things_v1 left (%v), want 0", n, err)
	}
	if pos, err := open(t, path, "things_v1").Position(ctx, nil); err != nil || pos != 0 {
		t.Fatalf("dropped version's position %d (%v), want 0", pos, err)
	}
	if pos, err := v2.Position(ctx, nil); err != nil || pos != 5 {
		t.Fatalf("other version's position %d (%v), want 5", pos, err)
	}
}

func TestOpenErr(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var st *sql.Stmt
	bad := sqlitestore.Writer(&st, `SELECT nothing FROM {N}_nowhere`)
	for _, c := range []struct {
		name, path, version string
		stmts               []sqlitestore.Stmt
	}{
		{"BadName", filepath.Join(dir, "x.db"), "Things; DROP TABLE x", nil},
		{"EmptyName", filepath.Join(dir, "x.db"), "", nil},
		{"EmptyPath", "", "things_v1", nil},
		{"PathWithQuery", filepath.Join(dir, "x.db?mode=ro"), "things_v1", nil},
		{"BadStatement", filepath.Join(dir, "x.db"), "things_v1", []sqlitestore.Stmt{bad}},
	} {
		t.Run(c.name, func(t *testing.T) {
			db, err := sqlitestore.Open(context.Background(), "test", c.path, c.version, schema, c.stmts...)
			if err == nil {
				_ = db.Close()
				t.Fatal("no error")
			}
		})
	}
}

// TestRows: a Rows inserts any number of rows in chunks of powers of two up
// to MaxRows, each row once and in order.
func TestRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var put *sqlitestore.Rows
	var count *sql.Stmt
	db := open(t, filepath.Join(t.TempDir(), "p.db"), "things_v1",
		sqlitestore.WriterRows(&put, `INSERT INTO {N}_things (id) VALUES {ROWS}`, `(?)`),
		sqlitestore.Reader(&count, `SELECT count(*) FROM {N}_things`))
	if put.Width() != 1 {
		t.Fatalf("width %d, want 1", put.Width())
	}
	total := 0
	for _, n := range []int{0, 1, 2, 3, 63, 64, 65, 129, 200} {
		tx, err := db.W.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		next := 0
		err = put.Each(ctx, tx, n, func(st *sql.Stmt, from, to int) error {
			if k := to - from; from != next || k < 1 || k > sqlitestore.MaxRows || k&(k-1) != 0 {
				t.Fatalf("n=%d: chunk [%d, %d) after %d", n, from, to, next)
			}
			next = to
			args := make([]any, 0, to-from)
			for i := from; i < to; i++ {
				args = append(args, total+i)
			}
			_, err := st.ExecContext(ctx, args...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if next != n {
			t.Fatalf("n=%d: chunks covered %d rows", n, next)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		total += n
		var got int
		if err := count.QueryRowContext(ctx).Scan(&got); err != nil || got != total {
			t.Fatalf("n=%d: %d rows (%v), want %d", n, got, err, total)
		}
	}
}
