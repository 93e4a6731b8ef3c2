package jetstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/nats-io/nats.go/jetstream"
)

// The room directory lives in a key-value bucket:
//
//	room.<room>                  chat.Room
//	member.<room>.<base64url(user)>  chat.Member
//
// It is derived from the log (room.created, member.joined, member.left) and
// written after the event is stored, so a retry of the action repairs it.

func roomKey(room string) string { return "room." + room }

func memberKey(room, user string) string {
	return "member." + room + "." + base64.RawURLEncoding.EncodeToString([]byte(user))
}

// CreateRoom records a new room; chat.ErrRoomExists if the id is taken.
func (l *Log) CreateRoom(ctx context.Context, r chat.Room) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := l.kv.Create(ctx, roomKey(r.ID), data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return chat.ErrRoomExists
		}
		return fmt.Errorf("directory create room: %w: %w", chat.ErrLogDown, err)
	}
	return nil
}

// Room returns a room; chat.ErrRoomNotFound if there is none.
func (l *Log) Room(ctx context.Context, id string) (chat.Room, error) {
	e, err := l.kv.Get(ctx, roomKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return chat.Room{}, chat.ErrRoomNotFound
	}
	if err != nil {
		return chat.Room{}, fmt.Errorf("directory room: %w: %w", chat.ErrLogDown, err)
	}
	var r chat.Room
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return chat.Room{}, fmt.Errorf("directory room %s: %w", id, err)
	}
	return r, nil
}

// Rooms lists every room, ordered by id.
func (l *Log) Rooms(ctx context.Context) ([]chat.Room, error) {
	var rooms []chat.Room
	err := l.scan(ctx, "room.*", func(v []byte) {
		var r chat.Room
		if json.Unmarshal(v, &r) == nil {
			rooms = append(rooms, r)
		}
	})
	sort.Slice(rooms, func(i, j int) bool { return rooms[i].ID < rooms[j].ID })
	return rooms, err
}

// AddMember records user as a member of room (idempotent).
func (l *Log) AddMember(ctx context.Context, room string, m chat.Member) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := l.kv.Put(ctx, memberKey(room, m.User), data); err != nil {
		return fmt.Errorf("directory add member: %w: %w", chat.ErrLogDown, err)
	}
	return nil
}

// RemoveMember forgets a membership (idempotent).
func (l *Log) RemoveMember(ctx context.Context, room, user string) error {
	if err := l.kv.Delete(ctx, memberKey(room, user)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("directory remove member: %w: %w", chat.ErrLogDown, err)
	}
	return nil
}

// IsMember reports whether user is a member of room.
func (l *Log) IsMember(ctx context.Context, room, user string) (bool, error) {
	_, err := l.kv.Get(ctx, memberKey(room, user))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("directory member: %w: %w", chat.ErrLogDown, err)
	}
	return true, nil
}

// Members lists a room's members, ordered by user.
func (l *Log) Members(ctx context.Context, room string) ([]chat.Member, error) {
	var ms []chat.Member
	err := l.scan(ctx, "member."+room+".*", func(v []byte) {
		var m chat.Member
		if json.Unmarshal(v, &m) == nil {
			ms = append(ms, m)
		}
	})
	sort.Slice(ms, func(i, j int) bool { return ms[i].User < ms[j].User })
	return ms, err
}

func (l *Log) scan(ctx context.Context, filter string, fn func([]byte)) error {
	w, err := l.kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("directory scan: %w: %w", chat.ErrLogDown, err)
	}
	defer w.Stop()
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				return nil // all current values seen
			}
			fn(e.Value())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
