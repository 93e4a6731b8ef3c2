// Package sqlite stores the read-marker read model in an SQLite file: the
// embedded default's store (modernc.org/sqlite, no cgo).
//
// A version named N ("reads_v1") owns three tables:
//
//	N_markers   (room, user) PRIMARY KEY, read; WITHOUT ROWID
//	  index N_markers_user (user, room, read): a user's markers (All), covered
//	N_messages  (room, seq) PRIMARY KEY, author; WITHOUT ROWID: the messages
//	            that count as unread, counted by a range of the key
//	N_position  one row: the seq of the last event applied
//
// An unread count is SELECT count(*) FROM (SELECT 1 FROM N_messages WHERE
// room = ? AND seq > ? AND author <> ? LIMIT 1000): a range of the primary
// key that stops at reads.MaxUnread rows, however large the room.
//
// Apply folds a batch with reads.Fold and writes what it changed and the new
// position in one IMMEDIATE transaction, so data and position never
// disagree. projections/sqlitestore opens the file and keeps N_position:
// WAL mode with a busy timeout; writes go through one connection, reads
// through a separate pool that WAL lets run beside it.
//
// The package never decides what an event means: that is reads.Fold's job.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/reads"
	"github.com/jetchat/jetchat/projections/sqlitestore"
)

// Store is one named version of the read-marker model in an SQLite file.
type Store struct {
	db *sqlitestore.DB

	loadMarker, loadMessage      *sql.Stmt         // on w, for Fold's loader
	putMarker, delMarker, delMsg *sql.Stmt         // on w
	putMsgs                      *sqlitestore.Rows // on w
	marker, markersOf, unread    *sql.Stmt         // on r
}

var _ reads.Store = (*Store)(nil)

// Open opens (creating if needed) the version name of the reads store in the
// SQLite file at path. The path must not hold '?' or '#'.
func Open(ctx context.Context, path, name string) (*Store, error) {
	s := &Store{}
	db, err := sqlitestore.Open(ctx, "reads", path, name, schema, s.stmts()...)
	if err != nil {
		return nil, err
	}
	s.db = db
	return s, nil
}

// schema is the version's tables but N_position, which sqlitestore keeps.
const schema = `
CREATE TABLE IF NOT EXISTS {N}_markers (
	room TEXT    NOT NULL,
	user TEXT    NOT NULL,
	read INTEGER NOT NULL,
	PRIMARY KEY (room, user)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {N}_markers_user ON {N}_markers (user, room, read);
CREATE TABLE IF NOT EXISTS {N}_messages (
	room   TEXT    NOT NULL,
	seq    INTEGER NOT NULL,
	author TEXT    NOT NULL,
	PRIMARY KEY (room, seq)
) WITHOUT ROWID;`

// unreadQuery counts the unread messages of a marker, stopping at
// reads.MaxUnread.
const unreadQuery = `SELECT count(*) FROM (SELECT 1 FROM {N}_messages WHERE room = ? AND seq > ? AND author <> ? LIMIT 1000)`

func init() {
	if !strings.Contains(unreadQuery, fmt.Sprintf("LIMIT %d)", reads.MaxUnread)) {
		panic("reads/sqlite: unreadQuery's limit is not reads.MaxUnread")
	}
}

// stmts are the statements Open prepares.
func (s *Store) stmts() []sqlitestore.Stmt {
	return []sqlitestore.Stmt{
		sqlitestore.Writer(&s.loadMarker, `SELECT read FROM {N}_markers WHERE room = ? AND user = ?`),
		sqlitestore.Writer(&s.loadMessage, `SELECT author FROM {N}_messages WHERE room = ? AND seq = ?`),
		sqlitestore.Writer(&s.putMarker, `INSERT INTO {N}_markers (room, user, read) VALUES (?, ?, ?) ON CONFLICT (room, user) DO UPDATE SET read = excluded.read`),
		sqlitestore.Writer(&s.delMarker, `DELETE FROM {N}_markers WHERE room = ? AND user = ?`),
		sqlitestore.WriterRows(&s.putMsgs, `INSERT INTO {N}_messages (room, seq, author) VALUES {ROWS} ON CONFLICT (room, seq) DO UPDATE SET author = excluded.author`, `(?, ?, ?)`),
		sqlitestore.Writer(&s.delMsg, `DELETE FROM {N}_messages WHERE room = ? AND seq = ?`),
		sqlitestore.Reader(&s.marker, `SELECT read FROM {N}_markers WHERE room = ? AND user = ?`),
		sqlitestore.Reader(&s.markersOf, `SELECT room, read FROM {N}_markers WHERE user = ? ORDER BY room`),
		sqlitestore.Reader(&s.unread, unreadQuery),
	}
}

// Apply implements reads.Store: one transaction per batch.
func (s *Store) Apply(ctx context.Context, events []chat.Event) (err error) {
	tx, err := s.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply reads: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	pos, err := s.db.Position(ctx, tx)
	if err != nil {
		return fmt.Errorf("apply reads: %w", err)
	}
	b, err := reads.Fold(ctx, pos, events, func(ctx context.Context, l reads.Lookup) (reads.State, error) {
		return s.load(ctx, tx, l)
	})
	if err != nil {
		return fmt.Errorf("apply reads: %w", err)
	}
	if b.Position == pos {
		return tx.Rollback()
	}
	exec := func(st *sql.Stmt, what string, args ...any) error {
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("apply reads: %s %v: %w", what, args, err)
		}
		return nil
	}
	for _, m := range b.Markers {
		if err := exec(s.putMarker, "write marker", m.Room, m.User, int64(m.Read)); err != nil {
			return err
		}
	}
	for _, k := range b.Removed {
		if err := exec(s.delMarker, "remove marker", k.Room, k.User); err != nil {
			return err
		}
	}
	args := make([]any, 0, sqlitestore.MaxRows*s.putMsgs.Width())
	err = s.putMsgs.Each(ctx, tx, len(b.Messages), func(st *sql.Stmt, from, to int) error {
		args = args[:0]
		for _, m := range b.Messages[from:to] {
			args = append(args, m.Room, int64(m.Seq), m.Author)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("apply reads: write messages %s/%d...: %w", b.Messages[from].Room, b.Messages[from].Seq, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range b.Deleted {
		if err := exec(s.delMsg, "remove message", k.Room, int64(k.Seq)); err != nil {
			return err
		}
	}
	if err := s.db.SetPosition(ctx, tx, b.Position); err != nil {
		return fmt.Errorf("apply reads: write position %d: %w", b.Position, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("apply reads: commit: %w", err)
	}
	return nil
}

// load is Fold's loader: primary-key lookups in the write transaction.
func (s *Store) load(ctx context.Context, tx *sql.Tx, l reads.Lookup) (reads.State, error) {
	var st reads.State
	marker, message := tx.StmtContext(ctx, s.loadMarker), tx.StmtContext(ctx, s.loadMessage)
	for _, k := range l.Markers {
		var read int64
		switch err := marker.QueryRowContext(ctx, k.Room, k.User).Scan(&read); {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return reads.State{}, err
		default:
			st.Markers = append(st.Markers, reads.Marker{Room: k.Room, User: k.User, Read: uint64(read)})
		}
	}
	for _, k := range l.Messages {
		var author string
		switch err := message.QueryRowContext(ctx, k.Room, int64(k.Seq)).Scan(&author); {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return reads.State{}, err
		default:
			st.Messages = append(st.Messages, reads.Message{Room: k.Room, Seq: k.Seq, Author: author})
		}
	}
	return st, nil
}

// Position implements reads.Store.
func (s *Store) Position(ctx context.Context) (uint64, error) {
	pos, err := s.db.Position(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("reads position: %w", err)
	}
	return pos, nil
}

// Markers implements reads.Store: a key lookup and a bounded count per room,
// in one read transaction.
func (s *Store) Markers(ctx context.Context, user string, rooms []string) (map[string]reads.Marker, error) {
	tx, err := s.db.R.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("read markers: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	marker, unread := tx.StmtContext(ctx, s.marker), tx.StmtContext(ctx, s.unread)
	out := make(map[string]reads.Marker, len(rooms))
	for _, room := range rooms {
		var read int64
		switch err := marker.QueryRowContext(ctx, room, user).Scan(&read); {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			return nil, fmt.Errorf("read markers: %w", err)
		}
		m := reads.Marker{Room: room, User: user, Read: uint64(read)}
		if err := unread.QueryRowContext(ctx, room, read, user).Scan(&m.Unread); err != nil {
			return nil, fmt.Errorf("read markers: count unread in %s: %w", room, err)
		}
		out[room] = m
	}
	return out, nil
}

// All implements reads.Store: the user's markers from N_markers_user, then a
// bounded count per room, in one read transaction.
func (s *Store) All(ctx context.Context, user string) ([]reads.Marker, error) {
	tx, err := s.db.R.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("read markers: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.StmtContext(ctx, s.markersOf).QueryContext(ctx, user)
	ms, err := scanMarkers(user, rows, err)
	if err != nil {
		return nil, fmt.Errorf("read markers of %s: %w", user, err)
	}
	if err := s.count(ctx, tx, ms); err != nil {
		return nil, fmt.Errorf("read markers of %s: %w", user, err)
	}
	return ms, nil
}

func (s *Store) count(ctx context.Context, tx *sql.Tx, ms []reads.Marker) error {
	unread := tx.StmtContext(ctx, s.unread)
	for i, m := range ms {
		if err := unread.QueryRowContext(ctx, m.Room, int64(m.Read), m.User).Scan(&ms[i].Unread); err != nil {
			return fmt.Errorf("count unread in %s: %w", m.Room, err)
		}
	}
	return nil
}

// scanMarkers reads (room, read) rows of user's markers.
func scanMarkers(user string, rows *sql.Rows, err error) ([]reads.Marker, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ms []reads.Marker
	for rows.Next() {
		m := reads.Marker{User: user}
		var read int64
		if err := rows.Scan(&m.Room, &read); err != nil {
			return nil, err
		}
		m.Read = uint64(read)
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

// Dump implements reads.Store.
func (s *Store) Dump(ctx context.Context) (reads.Snapshot, error) {
	tx, err := s.db.R.BeginTx(ctx, nil)
	if err != nil {
		return reads.Snapshot{}, fmt.Errorf("reads dump: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var snap reads.Snapshot
	err = func() error {
		rows, err := tx.QueryContext(ctx, s.db.SQL(`SELECT room, user, read FROM {N}_markers ORDER BY room, user`))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m reads.Marker
			var read int64
			if err := rows.Scan(&m.Room, &m.User, &read); err != nil {
				return err
			}
			m.Read = uint64(read)
			snap.Markers = append(snap.Markers, m)
		}
		return rows.Err()
	}()
	if err == nil {
		err = s.count(ctx, tx, snap.Markers)
	}
	if err != nil {
		return reads.Snapshot{}, fmt.Errorf("reads dump: %w", err)
	}
	rows, err := tx.QueryContext(ctx, s.db.SQL(`SELECT room, seq, author FROM {N}_messages ORDER BY room, seq`))
	if err != nil {
		return reads.Snapshot{}, fmt.Errorf("reads dump: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m reads.Message
		var seq int64
		if err := rows.Scan(&m.Room, &seq, &m.Author); err != nil {
			return reads.Snapshot{}, fmt.Errorf("reads dump: %w", err)
		}
		m.Seq = uint64(seq)
		snap.Messages = append(snap.Messages, m)
	}
	if err := rows.Err(); err != nil {
		return reads.Snapshot{}, fmt.Errorf("reads dump: %w", err)
	}
	return snap, nil
}

// Drop implements reads.Store: it drops the version's tables. The store must
// be closed afterwards; opening the name again starts it empty.
func (s *Store) Drop(ctx context.Context) error {
	if err := s.db.Drop(ctx, "markers", "messages"); err != nil {
		return fmt.Errorf("drop reads %s: %w", s.db.Name, err)
	}
	return nil
}

// Close implements reads.Store; it may be called more than once.
func (s *Store) Close() error { return s.db.Close() }
