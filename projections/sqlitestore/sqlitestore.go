// Package sqlitestore opens one version of a read model in an SQLite file the
// way every SQLite adapter under projections does: WAL mode with a busy
// timeout, one writer connection whose transactions begin IMMEDIATE (SQLite
// has one writer anyway), and a query_only reader pool that WAL lets run
// beside it. It also keeps the version's position table, N_position, whose
// one row holds the seq of the last event applied.
//
// A version named N owns the tables named N_*: queries say {N} and SQL puts
// the name in. The package never knows a read model's tables or what an event
// means: those are the adapter's.
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/jetchat/jetchat/projections"
)

// DB is one version of a read model in an SQLite file.
type DB struct {
	Name string  // the version, N in {N}_table
	W    *sql.DB // the writer: one connection, BEGIN IMMEDIATE
	R    *sql.DB // the readers: query_only

	getPos, setPos *sql.Stmt // on W
	stmts          []*sql.Stmt

	closeOnce sync.Once
	closeErr  error
}

// Stmt is a statement for Open to prepare.
type Stmt struct {
	reader bool
	into   **sql.Stmt
	query  string
	rows   **Rows // a Rows instead, over rows of the form row
	row    string
}

// Writer prepares query on the writer, into *into: for Apply and its loader.
func Writer(into **sql.Stmt, query string) Stmt { return Stmt{into: into, query: query} }

// Reader prepares query on the readers, into *into.
func Reader(into **sql.Stmt, query string) Stmt { return Stmt{reader: true, into: into, query: query} }

const busyTimeout = 10 * time.Second

const positionTable = `
CREATE TABLE IF NOT EXISTS {N}_position (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	position INTEGER NOT NULL
);`

// opening holds a mutex per SQLite file path, for Open.
var opening sync.Map

// Open opens (creating if needed) the version name of the read model called
// model ("history", for errors) in the SQLite file at path, runs schema (its
// CREATE ... IF NOT EXISTS statements) on the writer, creates the position
// table, and prepares stmts; Close closes them. The path must not hold '?' or '#'.
func Open(ctx context.Context, model, path, name, schema string, stmts ...Stmt) (*DB, error) {
	if err := projections.ValidateName(name); err != nil {
		return nil, fmt.Errorf("open %s store: %w", model, err)
	}
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open %s store: bad sqlite path %q", model, path)
	}
	// One open of a file at a time in this process: two first opens of a new
	// file at once (a projection's writer and its live reader) could get
	// SQLITE_BUSY from the switch to WAL, which waits for no busy timeout.
	mu, _ := opening.LoadOrStore(path, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	common := fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)&_pragma=synchronous(NORMAL)", path, busyTimeout.Milliseconds())
	db := &DB{Name: name}
	var err error
	if db.W, err = sql.Open("sqlite", common+"&_pragma=journal_mode(WAL)&_txlock=immediate"); err != nil {
		return nil, fmt.Errorf("open %s store %s: %w", model, path, err)
	}
	db.W.SetMaxOpenConns(1)
	db.W.SetConnMaxIdleTime(0)
	if _, err := db.W.ExecContext(ctx, db.SQL(schema+positionTable)); err != nil {
		_ = db.W.Close()
		return nil, fmt.Errorf("open %s store %s (%s): %w", model, path, name, err)
	}
	if db.R, err = sql.Open("sqlite", common+"&_pragma=query_only(1)"); err != nil {
		_ = db.W.Close()
		return nil, fmt.Errorf("open %s store %s: %w", model, path, err)
	}
	db.R.SetMaxOpenConns(8)
	all := append([]Stmt{
		Writer(&db.getPos, `SELECT position FROM {N}_position WHERE id = 1`),
		Writer(&db.setPos, `INSERT INTO {N}_position (id, position) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET position = excluded.position`),
	}, stmts...)
	for _, p := range all {
		if p.rows != nil {
			r := new(Rows)
			sts, err := r.prepare(ctx, db.W, db.SQL(p.query), p.row)
			db.stmts = append(db.stmts, sts...)
			if err != nil {
				_ = db.Close()
				return nil, fmt.Errorf("open %s store %s (%s): prepare %q: %w", model, path, name, p.query, err)
			}
			*p.rows = r
			continue
		}
		on := db.W
		if p.reader {
			on = db.R
		}
		st, err := on.PrepareContext(ctx, db.SQL(p.query))
		if err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("open %s store %s (%s): prepare %q: %w", model, path, name, p.query, err)
		}
		*p.into = st
		db.stmts = append(db.stmts, st)
	}
	return db, nil
}

// SQL puts the version's name in a query: validated, so safe to splice.
func (db *DB) SQL(q string) string { return strings.ReplaceAll(q, "{N}", db.Name) }

// Position returns the seq of the last event applied, 0 before the first:
// in tx if it is not nil, else on the writer.
func (db *DB) Position(ctx context.Context, tx *sql.Tx) (uint64, error) {
	st := db.getPos
	if tx != nil {
		st = tx.StmtContext(ctx, st)
	}
	var pos int64
	err := st.QueryRowContext(ctx).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return uint64(pos), err
}

// SetPosition writes the seq of the last event applied in tx.
func (db *DB) SetPosition(ctx context.Context, tx *sql.Tx, pos uint64) error {
	_, err := tx.StmtContext(ctx, db.setPos).ExecContext(ctx, int64(pos))
	return err
}

// Drop drops the version's tables N_<table> and N_position. The DB must be
// closed afterwards; opening the name again starts it empty.
func (db *DB) Drop(ctx context.Context, tables ...string) error {
	var q strings.Builder
	for _, t := range append(tables[:len(tables):len(tables)], "position") {
		fmt.Fprintf(&q, "DROP TABLE IF EXISTS {N}_%s; ", t)
	}
	_, err := db.W.ExecContext(ctx, db.SQL(q.String()))
	return err
}

// Close closes the prepared statements, the readers and the writer; it may
// be called more than once.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		for _, st := range db.stmts {
			_ = st.Close()
		}
		var errs []error
		if db.R != nil {
			errs = append(errs, db.R.Close())
		}
		errs = append(errs, db.W.Close())
		db.closeErr = errors.Join(errs...)
	})
	return db.closeErr
}

// MaxRows is the most rows one statement of a Rows covers.
const MaxRows = 64

// Rows is a statement over many rows at once on the writer: a multi-row
// INSERT, or a lookup of many keys with IN (VALUES ...). One statement per
// row pays database/sql's and the driver's work per row (about half the
// cost of projecting a message). Its query holds {ROWS}, which becomes k
// copies of its row, comma-separated: Open prepares it for every power of
// two k up to MaxRows.
type Rows struct {
	width int               // placeholders in a row
	byLen map[int]*sql.Stmt // k -> the statement for k rows
}

// WriterRows prepares query, with {ROWS}, over rows of the form row (such as
// "(?, ?)") on the writer, into *into.
func WriterRows(into **Rows, query, row string) Stmt {
	return Stmt{rows: into, row: row, query: query}
}

// Each runs fn for n rows in order, in chunks of at most MaxRows (a power of
// two each): fn gets the statement for its chunk, in tx, and the chunk's
// rows [from, to). Its arguments are the chunk's rows' in order, Width per
// row.
func (r *Rows) Each(ctx context.Context, tx *sql.Tx, n int, fn func(st *sql.Stmt, from, to int) error) error {
	for from := 0; from < n; {
		k := MaxRows
		for k > n-from {
			k /= 2
		}
		if err := fn(tx.StmtContext(ctx, r.byLen[k]), from, from+k); err != nil {
			return err
		}
		from += k
	}
	return nil
}

// Width is the number of placeholders in one row.
func (r *Rows) Width() int { return r.width }

// prepare prepares q for every power of two rows up to MaxRows on w.
func (r *Rows) prepare(ctx context.Context, w *sql.DB, q, row string) ([]*sql.Stmt, error) {
	r.width, r.byLen = strings.Count(row, "?"), make(map[int]*sql.Stmt)
	var all []*sql.Stmt
	for k := 1; k <= MaxRows; k *= 2 {
		st, err := w.PrepareContext(ctx, strings.Replace(q, "{ROWS}", strings.TrimSuffix(strings.Repeat(row+", ", k), ", "), 1))
		if err != nil {
			return all, err
		}
		r.byLen[k] = st
		all = append(all, st)
	}
	return all, nil
}
