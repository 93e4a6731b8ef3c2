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
// never disagree. The database runs in WAL mode with a busy timeout; writes go
// through one connection (SQLite has one writer anyway), reads through a
// separate pool that WAL lets run beside it.
//
// The package never decides what an event means: that is history.Fold's job.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/history"
)

// Store is one named version of the history read model in an SQLite file.
type Store struct {
	name string
	w, r *sql.DB // w: one connection, BEGIN IMMEDIATE; r: the readers

	getPos, setPos                *sql.Stmt // on w
	bySeq, byClient, reactionsOf  *sql.Stmt // on w, for Fold's loader
	upsert, clearReacts, addReact *sql.Stmt // on w
	latest, before, after         *sql.Stmt // on r
	pageReacts                    *sql.Stmt // on r

	closeOnce sync.Once
	closeErr  error
}

var _ history.Store = (*Store)(nil)

const busyTimeout = 10 * time.Second

// Open opens (creating if needed) the version name of the history store in
// the SQLite file at path. The path must not hold '?' or '#'.
func Open(ctx context.Context, path, name string) (*Store, error) {
	if err := history.ValidateName(name); err != nil {
		return nil, err
	}
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open history store: bad sqlite path %q", path)
	}
	common := fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)&_pragma=synchronous(NORMAL)", path, busyTimeout.Milliseconds())
	s := &Store{name: name}
	var err error
	if s.w, err = sql.Open("sqlite", common+"&_pragma=journal_mode(WAL)&_txlock=immediate"); err != nil {
		return nil, fmt.Errorf("open history store %s: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetConnMaxIdleTime(0)
	if err := s.init(ctx); err != nil {
		_ = s.w.Close()
		return nil, fmt.Errorf("open history store %s (%s): %w", path, name, err)
	}
	if s.r, err = sql.Open("sqlite", common+"&_pragma=query_only(1)"); err != nil {
		_ = s.w.Close()
		return nil, fmt.Errorf("open history store %s: %w", path, err)
	}
	s.r.SetMaxOpenConns(8)
	if err := s.prepare(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open history store %s (%s): %w", path, name, err)
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	_, err := s.w.ExecContext(ctx, s.sql(`
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
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {N}_position (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	position INTEGER NOT NULL
);`))
	return err
}

const cols = `room, seq, id, author, ts, text, edited, edited_at, deleted`

func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		db    *sql.DB
		stmt  **sql.Stmt
		query string
	}{
		{s.w, &s.getPos, `SELECT position FROM {N}_position WHERE id = 1`},
		{s.w, &s.setPos, `INSERT INTO {N}_position (id, position) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET position = excluded.position`},
		{s.w, &s.bySeq, `SELECT ` + cols + ` FROM {N}_messages WHERE room = ? AND seq = ?`},
		{s.w, &s.byClient, `SELECT ` + cols + ` FROM {N}_messages WHERE room = ? AND author = ? AND id = ?`},
		{s.w, &s.reactionsOf, `SELECT seq, emoji, user FROM {N}_reactions WHERE room = ? AND seq = ? ORDER BY emoji, user`},
		{s.w, &s.upsert, `INSERT INTO {N}_messages (` + cols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (room, seq) DO UPDATE SET text = excluded.text, edited = excluded.edited,
				edited_at = excluded.edited_at, deleted = excluded.deleted`},
		{s.w, &s.clearReacts, `DELETE FROM {N}_reactions WHERE room = ? AND seq = ?`},
		{s.w, &s.addReact, `INSERT INTO {N}_reactions (room, seq, emoji, user) VALUES (?, ?, ?, ?)`},
		{s.r, &s.latest, `SELECT ` + cols + ` FROM {N}_messages WHERE room = ? ORDER BY seq DESC LIMIT ?`},
		{s.r, &s.before, `SELECT ` + cols + ` FROM {N}_messages WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?`},
		{s.r, &s.after, `SELECT ` + cols + ` FROM {N}_messages WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?`},
		{s.r, &s.pageReacts, `SELECT seq, emoji, user FROM {N}_reactions WHERE room = ? AND seq BETWEEN ? AND ? ORDER BY seq, emoji, user`},
	} {
		st, err := p.db.PrepareContext(ctx, s.sql(p.query))
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.query, err)
		}
		*p.stmt = st
	}
	return nil
}

// sql puts the version's name in a query: validated, so safe to splice.
func (s *Store) sql(q string) string { return strings.ReplaceAll(q, "{N}", s.name) }

// Apply implements history.Store: one transaction per batch.
func (s *Store) Apply(ctx context.Context, events []chat.Event) (err error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply history: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	pos, err := position(ctx, tx.StmtContext(ctx, s.getPos))
	if err != nil {
		return fmt.Errorf("apply history: %w", err)
	}
	b, err := history.Fold(ctx, pos, events, func(ctx context.Context, l history.Lookup) ([]history.Message, error) {
		return s.load(ctx, tx, l)
	})
	if err != nil {
		return fmt.Errorf("apply history: %w", err)
	}
	if b.Position == pos {
		return tx.Rollback()
	}
	upsert, clearReacts, addReact := tx.StmtContext(ctx, s.upsert), tx.StmtContext(ctx, s.clearReacts), tx.StmtContext(ctx, s.addReact)
	for _, m := range b.Messages {
		if _, err := upsert.ExecContext(ctx, m.Room, int64(m.Seq), m.ID, m.Author, history.Nanos(m.Time), m.Text, m.Edited, history.Nanos(m.EditedAt), m.Deleted); err != nil {
			return fmt.Errorf("apply history: write message %s/%d: %w", m.Room, m.Seq, err)
		}
		if _, err := clearReacts.ExecContext(ctx, m.Room, int64(m.Seq)); err != nil {
			return fmt.Errorf("apply history: write reactions %s/%d: %w", m.Room, m.Seq, err)
		}
		for _, r := range m.Reactions {
			for _, u := range r.Users {
				if _, err := addReact.ExecContext(ctx, m.Room, int64(m.Seq), r.Emoji, u); err != nil {
					return fmt.Errorf("apply history: write reactions %s/%d: %w", m.Room, m.Seq, err)
				}
			}
		}
	}
	if _, err := tx.StmtContext(ctx, s.setPos).ExecContext(ctx, int64(b.Position)); err != nil {
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
	bySeq, byClient := tx.StmtContext(ctx, s.bySeq), tx.StmtContext(ctx, s.byClient)
	for _, k := range l.Seqs {
		if err := collect(bySeq.QueryContext(ctx, k.Room, int64(k.Seq))); err != nil {
			return nil, err
		}
	}
	for _, k := range l.IDs {
		if err := collect(byClient.QueryContext(ctx, k.Room, k.Author, k.ID)); err != nil {
			return nil, err
		}
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
	pos, err := position(ctx, s.getPos)
	if err != nil {
		return 0, fmt.Errorf("history position: %w", err)
	}
	return pos, nil
}

func position(ctx context.Context, st *sql.Stmt) (uint64, error) {
	var pos int64
	err := st.QueryRowContext(ctx).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return uint64(pos), err
}

// Messages implements history.Store: one range scan of the primary key and
// one of the reactions' for the page, in one read transaction.
func (s *Store) Messages(ctx context.Context, room string, p history.Page) ([]history.Message, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	tx, err := s.r.BeginTx(ctx, nil)
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
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("history dump: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	ms, err := scanMessages(tx.QueryContext(ctx, s.sql(`SELECT `+cols+` FROM {N}_messages ORDER BY room, seq`)))
	if err != nil {
		return nil, fmt.Errorf("history dump: %w", err)
	}
	rows, err := tx.QueryContext(ctx, s.sql(`SELECT room, seq, emoji, user FROM {N}_reactions ORDER BY room, seq, emoji, user`))
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
	_, err := s.w.ExecContext(ctx, s.sql(`DROP TABLE IF EXISTS {N}_messages; DROP TABLE IF EXISTS {N}_reactions; DROP TABLE IF EXISTS {N}_position;`))
	if err != nil {
		return fmt.Errorf("drop history %s: %w", s.name, err)
	}
	return nil
}

// Close implements history.Store; it may be called more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		for _, st := range []*sql.Stmt{s.getPos, s.setPos, s.bySeq, s.byClient, s.reactionsOf, s.upsert, s.clearReacts, s.addReact, s.latest, s.before, s.after, s.pageReacts} {
			if st != nil {
				_ = st.Close()
			}
		}
		var errs []error
		if s.r != nil {
			errs = append(errs, s.r.Close())
		}
		errs = append(errs, s.w.Close())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

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
		m.Seq, m.Time, m.EditedAt = uint64(seq), history.FromNanos(ts), history.FromNanos(editedAt)
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
