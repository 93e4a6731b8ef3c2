// Package sqlite stores the history read model in an SQLite file: the
// embedded default's store (modernc.org/sqlite, no cgo).
//
// A version named N ("history_v1") owns three tables:
//
//	N_messages  (room, seq) PRIMARY KEY, UNIQUE (room, author, id)
//	N_reactions (room, seq, emoji, user) PRIMARY KEY, WITHOUT ROWID
//	N_position  one row: the seq of the last event applied
//
// Apply folds a batch with history.Fold and writes the messages it changed
// and the new position in one IMMEDIATE transaction, so data and position
// never disagree. projections/sqlitestore opens the file and keeps
// N_position: WAL mode with a busy timeout; writes go through one
// connection (SQLite has one writer anyway), reads through a separate pool
// that WAL lets run beside it.
//
// The package never decides what an event means: that is history.Fold's job.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/sqlitestore"
)

// Store is one named version of the history read model in an SQLite file.
type Store struct {
	db *sqlitestore.DB

	bySeq, byClient       *sqlitestore.Rows // on w, for Fold's loader
	reactionsOf           *sql.Stmt         // on w, for Fold's loader
	upsert                *sqlitestore.Rows // on w
	clearReacts, addReact *sql.Stmt         // on w
	latest, before, after *sql.Stmt         // on r
	pageReacts            *sql.Stmt         // on r
}

var _ history.Store = (*Store)(nil)

// Open opens (creating if needed) the version name of the history store in
// the SQLite file at path. The path must not hold '?' or '#'.
func Open(ctx context.Context, path, name string) (*Store, error) {
	s := &Store{}
	db, err := sqlitestore.Open(ctx, "history", path, name, schema, s.stmts()...)
	if err != nil {
		return nil, err
	}
	s.db = db
	return s, nil
}

// schema is the version's tables but N_position, which sqlitestore keeps.
const schema = `
CREATE TABLE IF NOT EXISTS {N}_messages (
	room      TEXT    NOT NULL,
	seq       INTEGER NOT NULL,
	id        TEXT    NOT NULL,
	author    TEXT    NOT NULL,
	ts        INTEGER NOT NULL, -- unix nanoseconds
	text      TEXT    NOT NULL,
	edited    INTEGER NOT NULL,
	edited_at INTEGER NOT NULL, -- unix nanoseconds, 0 if never edited
	deleted   INTEGER NOT NULL,
	PRIMARY KEY (room, seq),
	UNIQUE (room, author, id)
);
CREATE TABLE IF NOT EXISTS {N}_reactions (
	room  TEXT    NOT NULL,
	seq   INTEGER NOT NULL,
	emoji TEXT    NOT NULL,
	user  TEXT    NOT NULL,
	PRIMARY KEY (room, seq, emoji, user)
) WITHOUT ROWID;`

const cols = `room, seq, id, author, ts, text, edited, edited_at, deleted`

// stmts are the statements Open prepares.
func (s *Store) stmts() []sqlitestore.Stmt {
	return []sqlitestore.Stmt{
		sqlitestore.WriterRows(&s.bySeq, `SELECT `+cols+` FROM {N}_messages WHERE (room, seq) IN (VALUES {ROWS})`, `(?, ?)`),
		sqlitestore.WriterRows(&s.byClient, `SELECT `+cols+` FROM {N}_messages WHERE (room, author, id) IN (VALUES {ROWS})`, `(?, ?, ?)`),
		sqlitestore.Writer(&s.reactionsOf, `SELECT seq, emoji, user FROM {N}_reactions WHERE room = ? AND seq = ? ORDER BY emoji, user`),
		sqlitestore.WriterRows(&s.upsert, `INSERT INTO {N}_messages (`+cols+`) VALUES {ROWS}
			ON CONFLICT (room, seq) DO UPDATE SET text = excluded.text, edited = excluded.edited,
				edited_at = excluded.edited_at, deleted = excluded.deleted`, `(?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		sqlitestore.Writer(&s.clearReacts, `DELETE FROM {N}_reactions WHERE room = ? AND seq = ?`),
		sqlitestore.Writer(&s.addReact, `INSERT INTO {N}_reactions (room, seq, emoji, user) VALUES (?, ?, ?, ?)`),
		sqlitestore.Reader(&s.latest, `SELECT `+cols+` FROM {N}_messages WHERE room = ? ORDER BY seq DESC LIMIT ?`),
		sqlitestore.Reader(&s.before, `SELECT `+cols+` FROM {N}_messages WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?`),
		sqlitestore.Reader(&s.after, `SELECT `+cols+` FROM {N}_messages WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?`),
		sqlitestore.Reader(&s.pageReacts, `SELECT seq, emoji, user FROM {N}_reactions WHERE room = ? AND seq BETWEEN ? AND ? ORDER BY seq, emoji, user`),
	}
}

// Apply implements history.Store: one transaction per batch.
func (s *Store) Apply(ctx context.Context, events []chat.Event) (err error) {
	tx, err := s.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply history: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	pos, err := s.db.Position(ctx, tx)
	if err != nil {
		return fmt.Errorf("apply history: %w", err)
	}
	// The messages already stored: only they can have reactions rows to
	// clear. A message Fold made in this batch has none (a message row is
	// never deleted, and reactions rows are written only with theirs).
	stored := make(map[history.MessageKey]bool)
	b, err := history.Fold(ctx, pos, events, func(ctx context.Context, l history.Lookup) ([]history.Message, error) {
		ms, err := s.load(ctx, tx, l)
		for _, m := range ms {
			stored[history.MessageKey{Room: m.Room, Seq: m.Seq}] = true
		}
		return ms, err
	})
	if err != nil {
		return fmt.Errorf("apply history: %w", err)
	}
	if b.Position == pos {
		return tx.Rollback()
	}
	args := make([]any, 0, sqlitestore.MaxRows*s.upsert.Width())
	err = s.upsert.Each(ctx, tx, len(b.Messages), func(st *sql.Stmt, from, to int) error {
		args = args[:0]
		for _, m := range b.Messages[from:to] {
			args = append(args, m.Room, int64(m.Seq), m.ID, m.Author, projections.Nanos(m.Time), m.Text, m.Edited, projections.Nanos(m.EditedAt), m.Deleted)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("write messages %s/%d...: %w", b.Messages[from].Room, b.Messages[from].Seq, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply history: %w", err)
	}
	clearReacts, addReact := tx.StmtContext(ctx, s.clearReacts), tx.StmtContext(ctx, s.addReact)
	for _, m := range b.Messages {
		if stored[history.MessageKey{Room: m.Room, Seq: m.Seq}] {
			if _, err := clearReacts.ExecContext(ctx, m.Room, int64(m.Seq)); err != nil {
				return fmt.Errorf("apply history: write reactions %s/%d: %w", m.Room, m.Seq, err)
			}
		}
		for _, r := range m.Reactions {
			for _, u := range r.Users {
				if _, err := addReact.ExecContext(ctx, m.Room, int64(m.Seq), r.Emoji, u); err != nil {
					return fmt.Errorf("apply history: write reactions %s/%d: %w", m.Room, m.Seq, err)
				}
			}
		}
	}
	if err := s.db.SetPosition(ctx, tx, b.Position); err != nil {
		return fmt.Errorf("apply history: write position: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("apply history: commit: %w", err)
	}
	return nil
}

// load is Fold's loader: primary-key and unique-index lookups in the write
// transaction.
func (s *Store) load(ctx context.Context, tx *sql.Tx, l history.Lookup) ([]history.Message, error) {
	seen := make(map[history.MessageKey]bool)
	var out []history.Message
	collect := func(rows *sql.Rows, err error) error {
		ms, err := scanMessages(rows, err)
		for _, m := range ms {
			if k := (history.MessageKey{Room: m.Room, Seq: m.Seq}); !seen[k] {
				seen[k] = true
				out = append(out, m)
			}
		}
		return err
	}
	var args []any
	err := s.bySeq.Each(ctx, tx, len(l.Seqs), func(st *sql.Stmt, from, to int) error {
		args = args[:0]
		for _, k := range l.Seqs[from:to] {
			args = append(args, k.Room, int64(k.Seq))
		}
		return collect(st.QueryContext(ctx, args...))
	})
	if err != nil {
		return nil, err
	}
	err = s.byClient.Each(ctx, tx, len(l.IDs), func(st *sql.Stmt, from, to int) error {
		args = args[:0]
		for _, k := range l.IDs[from:to] {
			args = append(args, k.Room, k.Author, k.ID)
		}
		return collect(st.QueryContext(ctx, args...))
	})
	if err != nil {
		return nil, err
	}
	reactionsOf := tx.StmtContext(ctx, s.reactionsOf)
	for i := range out {
		if err := attachReactions(ctx, out[i:i+1], reactionsOf, out[i].Room, int64(out[i].Seq)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Position implements history.Store.
func (s *Store) Position(ctx context.Context) (uint64, error) {
	pos, err := s.db.Position(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("history position: %w", err)
	}
	return pos, nil
}

// Messages implements history.Store: one range scan of the primary key and
// one of the reactions' for the page, in one read transaction.
func (s *Store) Messages(ctx context.Context, room string, p history.Page) ([]history.Message, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	tx, err := s.db.R.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("history messages: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var ms []history.Message
	switch {
	case p.After != 0:
		ms, err = scanMessages(tx.StmtContext(ctx, s.after).QueryContext(ctx, room, int64(p.After), p.Limit))
	case p.Before != 0:
		ms, err = scanMessages(tx.StmtContext(ctx, s.before).QueryContext(ctx, room, int64(p.Before), p.Limit))
		slices.Reverse(ms)
	default:
		ms, err = scanMessages(tx.StmtContext(ctx, s.latest).QueryContext(ctx, room, p.Limit))
		slices.Reverse(ms)
	}
	if err != nil {
		return nil, fmt.Errorf("history messages: %w", err)
	}
	if len(ms) == 0 {
		return nil, nil
	}
	err = attachReactions(ctx, ms, tx.StmtContext(ctx, s.pageReacts), room, int64(ms[0].Seq), int64(ms[len(ms)-1].Seq))
	if err != nil {
		return nil, fmt.Errorf("history messages: %w", err)
	}
	return ms, nil
}

// Dump implements history.Store.
func (s *Store) Dump(ctx context.Context) ([]history.Message, error) {
	tx, err := s.db.R.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("history dump: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	ms, err := scanMessages(tx.QueryContext(ctx, s.db.SQL(`SELECT `+cols+` FROM {N}_messages ORDER BY room, seq`)))
	if err != nil {
		return nil, fmt.Errorf("history dump: %w", err)
	}
	rows, err := tx.QueryContext(ctx, s.db.SQL(`SELECT room, seq, emoji, user FROM {N}_reactions ORDER BY room, seq, emoji, user`))
	if err != nil {
		return nil, fmt.Errorf("history dump: %w", err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var k history.MessageKey
		var seq int64
		var emoji, user string
		if err := rows.Scan(&k.Room, &seq, &emoji, &user); err != nil {
			return nil, fmt.Errorf("history dump: %w", err)
		}
		k.Seq = uint64(seq)
		for i < len(ms) && history.Compare(ms[i], history.Message{Room: k.Room, Seq: k.Seq}) < 0 {
			i++
		}
		if i < len(ms) && ms[i].Room == k.Room && ms[i].Seq == k.Seq {
			ms[i].Reactions = addReaction(ms[i].Reactions, emoji, user)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history dump: %w", err)
	}
	return ms, nil
}

// Drop implements history.Store: it drops the version's tables. The store
// must be closed afterwards; opening the name again starts it empty.
func (s *Store) Drop(ctx context.Context) error {
	if err := s.db.Drop(ctx, "messages", "reactions"); err != nil {
		return fmt.Errorf("drop history %s: %w", s.db.Name, err)
	}
	return nil
}

// Close implements history.Store; it may be called more than once.
func (s *Store) Close() error { return s.db.Close() }

func scanMessages(rows *sql.Rows, err error) ([]history.Message, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ms []history.Message
	for rows.Next() {
		var m history.Message
		var seq, ts, editedAt int64
		if err := rows.Scan(&m.Room, &seq, &m.ID, &m.Author, &ts, &m.Text, &m.Edited, &editedAt, &m.Deleted); err != nil {
			return nil, err
		}
		m.Seq, m.Time, m.EditedAt = uint64(seq), projections.FromNanos(ts), projections.FromNanos(editedAt)
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

// attachReactions adds the reactions that st returns as (seq, emoji, user)
// rows ordered by seq, emoji, user to ms, which is ordered by seq.
func attachReactions(ctx context.Context, ms []history.Message, st *sql.Stmt, args ...any) error {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var seq int64
		var emoji, user string
		if err := rows.Scan(&seq, &emoji, &user); err != nil {
			return err
		}
		for i < len(ms) && ms[i].Seq < uint64(seq) {
			i++
		}
		if i < len(ms) && ms[i].Seq == uint64(seq) {
			ms[i].Reactions = addReaction(ms[i].Reactions, emoji, user)
		}
	}
	return rows.Err()
}

// addReaction appends user to emoji's reaction, rows coming ordered by emoji
// then user.
func addReaction(rs []history.Reaction, emoji, user string) []history.Reaction {
	if n := len(rs); n > 0 && rs[n-1].Emoji == emoji {
		rs[n-1].Users = append(rs[n-1].Users, user)
		return rs
	}
	return append(rs, history.Reaction{Emoji: emoji, Users: []string{user}})
}
