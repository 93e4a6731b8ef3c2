// Package sqlite stores the room list read model in an SQLite file: the
// embedded default's store (modernc.org/sqlite, no cgo).
//
// A version named N ("rooms_v1") owns three tables:
//
//	N_rooms     id PRIMARY KEY; the room with its last message's preview
//	            (last_seq 0: none), WITHOUT ROWID
//	  index N_rooms_list (private, last_activity DESC, id): List's public
//	                     rooms in list order, read up to the limit
//	N_members   (room, user) PRIMARY KEY, WITHOUT ROWID: the member set,
//	            counted per room (a range of the key) when it changes
//	  index N_members_user (user, room): List's private rooms of a user
//	N_position  one row: the seq of the last event applied
//
// Apply folds a batch with rooms.Fold and writes the rooms and memberships it
// changed and the new position in one IMMEDIATE transaction, so data and
// position never disagree. projections/sqlitestore opens the file and
// keeps N_position: WAL mode with a busy timeout; writes go through one
// connection (SQLite has one writer anyway), reads through a separate pool
// that WAL lets run beside it.
//
// The package never decides what an event means: that is rooms.Fold's job.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/rooms"
	"github.com/jetchat/jetchat/projections/sqlitestore"
)

// Store is one named version of the room list in an SQLite file.
type Store struct {
	db *sqlitestore.DB

	loadRoom, countMembers, isMem *sql.Stmt // on w, for Fold's loader
	putRoom, join, leave          *sql.Stmt // on w
	get, member, list             *sql.Stmt // on r
}

var _ rooms.Store = (*Store)(nil)

// Open opens (creating if needed) the version name of the rooms store in the
// SQLite file at path. The path must not hold '?' or '#'.
func Open(ctx context.Context, path, name string) (*Store, error) {
	s := &Store{}
	db, err := sqlitestore.Open(ctx, "rooms", path, name, schema, s.stmts()...)
	if err != nil {
		return nil, err
	}
	s.db = db
	return s, nil
}

// schema is the version's tables but N_position, which sqlitestore keeps.
const schema = `
CREATE TABLE IF NOT EXISTS {N}_rooms (
	id            TEXT    NOT NULL PRIMARY KEY,
	name          TEXT    NOT NULL,
	private       INTEGER NOT NULL,
	creator       TEXT    NOT NULL,
	created       INTEGER NOT NULL, -- unix nanoseconds
	members       INTEGER NOT NULL,
	last_activity INTEGER NOT NULL, -- unix nanoseconds
	head          INTEGER NOT NULL,
	last_seq      INTEGER NOT NULL, -- 0: no message yet
	last_author   TEXT    NOT NULL,
	last_text     TEXT    NOT NULL,
	last_ts       INTEGER NOT NULL, -- unix nanoseconds
	last_deleted  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {N}_rooms_list ON {N}_rooms (private, last_activity DESC, id);
CREATE TABLE IF NOT EXISTS {N}_members (
	room TEXT NOT NULL,
	user TEXT NOT NULL,
	PRIMARY KEY (room, user)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {N}_members_user ON {N}_members (user, room);`

const cols = `id, name, private, creator, created, members, last_activity, head, last_seq, last_author, last_text, last_ts, last_deleted`

// listQuery takes the newest public rooms and the newest private rooms of
// the user, each branch limited and served by an index, and merges them
// (sorting at most twice the limit). The CROSS JOIN fixes the join order:
// the user's memberships first, then each room by its key, never every
// private room.
const listQuery = `
SELECT ` + cols + ` FROM (
	SELECT * FROM (SELECT ` + cols + ` FROM {N}_rooms WHERE private = 0 ORDER BY last_activity DESC, id LIMIT ?1)
	UNION ALL
	SELECT * FROM (SELECT r.id, r.name, r.private, r.creator, r.created, r.members, r.last_activity, r.head,
			r.last_seq, r.last_author, r.last_text, r.last_ts, r.last_deleted
		FROM {N}_members m CROSS JOIN {N}_rooms r ON r.id = m.room -- CROSS: members first, by N_members_user
		WHERE m.user = ?2 AND r.private = 1 ORDER BY r.last_activity DESC, r.id LIMIT ?1)
) ORDER BY last_activity DESC, id LIMIT ?1`

// stmts are the statements Open prepares.
func (s *Store) stmts() []sqlitestore.Stmt {
	return []sqlitestore.Stmt{
		sqlitestore.Writer(&s.loadRoom, `SELECT `+cols+` FROM {N}_rooms WHERE id = ?`),
		sqlitestore.Writer(&s.countMembers, `SELECT count(*) FROM {N}_members WHERE room = ?`),
		sqlitestore.Writer(&s.isMem, `SELECT count(*) FROM {N}_members WHERE room = ? AND user = ?`),
		sqlitestore.Writer(&s.putRoom, `INSERT OR REPLACE INTO {N}_rooms (`+cols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		sqlitestore.Writer(&s.join, `INSERT INTO {N}_members (room, user) VALUES (?, ?) ON CONFLICT DO NOTHING`),
		sqlitestore.Writer(&s.leave, `DELETE FROM {N}_members WHERE room = ? AND user = ?`),
		sqlitestore.Reader(&s.get, `SELECT `+cols+` FROM {N}_rooms WHERE id = ?`),
		sqlitestore.Reader(&s.member, `SELECT count(*) FROM {N}_members WHERE room = ? AND user = ?`),
		sqlitestore.Reader(&s.list, listQuery),
	}
}

// Apply implements rooms.Store: one transaction per batch.
func (s *Store) Apply(ctx context.Context, events []chat.Event) (err error) {
	tx, err := s.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply rooms: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	pos, err := s.db.Position(ctx, tx)
	if err != nil {
		return fmt.Errorf("apply rooms: %w", err)
	}
	b, err := rooms.Fold(ctx, pos, events, func(ctx context.Context, l rooms.Lookup) (rooms.State, error) {
		return s.load(ctx, tx, l)
	})
	if err != nil {
		return fmt.Errorf("apply rooms: %w", err)
	}
	if b.Position == pos {
		return tx.Rollback()
	}
	join, leave, put := tx.StmtContext(ctx, s.join), tx.StmtContext(ctx, s.leave), tx.StmtContext(ctx, s.putRoom)
	for _, m := range b.Joined {
		if _, err := join.ExecContext(ctx, m.Room, m.User); err != nil {
			return fmt.Errorf("apply rooms: write member %s/%s: %w", m.Room, m.User, err)
		}
	}
	for _, m := range b.Left {
		if _, err := leave.ExecContext(ctx, m.Room, m.User); err != nil {
			return fmt.Errorf("apply rooms: remove member %s/%s: %w", m.Room, m.User, err)
		}
	}
	for _, r := range b.Rooms {
		var p rooms.Preview
		if r.Last != nil {
			p = *r.Last
		}
		_, err := put.ExecContext(ctx, r.ID, r.Name, r.Private, r.Creator, projections.Nanos(r.Created), r.Members, projections.Nanos(r.LastActivity), int64(r.Head),
			int64(p.Seq), p.Author, p.Text, projections.Nanos(p.Time), p.Deleted)
		if err != nil {
			return fmt.Errorf("apply rooms: write room %s: %w", r.ID, err)
		}
	}
	if err := s.db.SetPosition(ctx, tx, b.Position); err != nil {
		return fmt.Errorf("apply rooms: write position: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("apply rooms: commit: %w", err)
	}
	return nil
}

// load is Fold's loader: primary-key lookups and per-room key-range counts in
// the write transaction.
func (s *Store) load(ctx context.Context, tx *sql.Tx, l rooms.Lookup) (rooms.State, error) {
	st := rooms.State{Counts: make(map[string]int, len(l.Count))}
	loadRoom := tx.StmtContext(ctx, s.loadRoom)
	for _, id := range l.Rooms {
		rs, err := scanRooms(loadRoom.QueryContext(ctx, id))
		if err != nil {
			return rooms.State{}, err
		}
		st.Rooms = append(st.Rooms, rs...)
	}
	count := tx.StmtContext(ctx, s.countMembers)
	for _, id := range l.Count {
		var n int
		if err := count.QueryRowContext(ctx, id).Scan(&n); err != nil {
			return rooms.State{}, err
		}
		st.Counts[id] = n
	}
	isMem := tx.StmtContext(ctx, s.isMem)
	for _, m := range l.Members {
		var n int
		if err := isMem.QueryRowContext(ctx, m.Room, m.User).Scan(&n); err != nil {
			return rooms.State{}, err
		}
		if n > 0 {
			st.Members = append(st.Members, m)
		}
	}
	return st, nil
}

// Position implements rooms.Store.
func (s *Store) Position(ctx context.Context) (uint64, error) {
	pos, err := s.db.Position(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("rooms position: %w", err)
	}
	return pos, nil
}

// List implements rooms.Store: the newest public rooms read in order from
// N_rooms_list up to the limit, the user's private rooms from
// N_members_user, merged.
func (s *Store) List(ctx context.Context, user string, limit int) ([]rooms.Room, error) {
	rs, err := scanRooms(s.list.QueryContext(ctx, rooms.Limit(limit), user))
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	return rs, nil
}

// Get implements rooms.Store.
func (s *Store) Get(ctx context.Context, room string) (rooms.Room, bool, error) {
	rs, err := scanRooms(s.get.QueryContext(ctx, room))
	if err != nil {
		return rooms.Room{}, false, fmt.Errorf("get room %s: %w", room, err)
	}
	if len(rs) == 0 {
		return rooms.Room{}, false, nil
	}
	return rs[0], true, nil
}

// IsMember implements rooms.Store.
func (s *Store) IsMember(ctx context.Context, room, user string) (bool, error) {
	var n int
	if err := s.member.QueryRowContext(ctx, room, user).Scan(&n); err != nil {
		return false, fmt.Errorf("is member of %s: %w", room, err)
	}
	return n > 0, nil
}

// Dump implements rooms.Store.
func (s *Store) Dump(ctx context.Context) (rooms.Snapshot, error) {
	tx, err := s.db.R.BeginTx(ctx, nil)
	if err != nil {
		return rooms.Snapshot{}, fmt.Errorf("rooms dump: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var snap rooms.Snapshot
	if snap.Rooms, err = scanRooms(tx.QueryContext(ctx, s.db.SQL(`SELECT `+cols+` FROM {N}_rooms ORDER BY id`))); err != nil {
		return rooms.Snapshot{}, fmt.Errorf("rooms dump: %w", err)
	}
	rows, err := tx.QueryContext(ctx, s.db.SQL(`SELECT room, user FROM {N}_members ORDER BY room, user`))
	if err != nil {
		return rooms.Snapshot{}, fmt.Errorf("rooms dump: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m rooms.Member
		if err := rows.Scan(&m.Room, &m.User); err != nil {
			return rooms.Snapshot{}, fmt.Errorf("rooms dump: %w", err)
		}
		snap.Members = append(snap.Members, m)
	}
	if err := rows.Err(); err != nil {
		return rooms.Snapshot{}, fmt.Errorf("rooms dump: %w", err)
	}
	return snap, nil
}

// Drop implements rooms.Store: it drops the version's tables. The store must
// be closed afterwards; opening the name again starts it empty.
func (s *Store) Drop(ctx context.Context) error {
	if err := s.db.Drop(ctx, "rooms", "members"); err != nil {
		return fmt.Errorf("drop rooms %s: %w", s.db.Name, err)
	}
	return nil
}

// Close implements rooms.Store; it may be called more than once.
func (s *Store) Close() error { return s.db.Close() }

func scanRooms(rows *sql.Rows, err error) ([]rooms.Room, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var rs []rooms.Room
	for rows.Next() {
		var r rooms.Room
		var p rooms.Preview
		var created, activity, head, lastSeq, lastTS int64
		if err := rows.Scan(&r.ID, &r.Name, &r.Private, &r.Creator, &created, &r.Members, &activity, &head,
			&lastSeq, &p.Author, &p.Text, &lastTS, &p.Deleted); err != nil {
			return nil, err
		}
		r.Created, r.LastActivity, r.Head = projections.FromNanos(created), projections.FromNanos(activity), uint64(head)
		if lastSeq != 0 {
			p.Seq, p.Time = uint64(lastSeq), projections.FromNanos(lastTS)
			r.Last = &p
		}
		rs = append(rs, r)
	}
	return rs, rows.Err()
}
