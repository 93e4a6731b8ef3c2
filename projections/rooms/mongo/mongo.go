// Package mongo stores the room list read model in MongoDB: the cluster's
// store.
//
// A version named N ("rooms_v1") owns three collections:
//
//	N_rooms     one document per room, _id = the room id, with its last
//	            message's preview as the subdocument "last"
//	  index private_activity  {private: 1, last_activity: -1, _id: 1}: List's
//	                          public rooms, {private: false} sorted by
//	                          {last_activity: -1, _id: 1} with a limit, read
//	                          in index order and stopped at the limit
//	N_members   one document per membership, _id = room + ":" + user
//	  index room_user  {room: 1, user: 1} unique: a room's member count
//	                   (CountDocuments {room}), when its membership changes
//	  index user_room  {user: 1, room: 1} unique: the rooms of a user (List),
//	                   covered by the index
//	N_position  one document {_id: "position", position}
//
// Get, IsMember and Fold's loader find by _id (the _id index).
//
// List runs two indexed queries and merges them, rather than one
// {$or: [{private: false}, {_id: {$in: ids}}]} sorted by activity: an $or can
// be merged in sort order only if every branch is read from an index in that
// order, which the _id branch is not, so MongoDB would fetch every public
// room and sort them. Here the public branch stops at the limit, and the
// private branch ({_id: {$in: the user's rooms}, private: true}) reads only
// the user's rooms.
//
// Apply reads the state a batch depends on (rooms and memberships by _id,
// member counts by room_user), folds the batch with rooms.Fold and writes, in
// this order: the memberships it changed (upserts and deletes by _id, one
// ordered bulk write), the rooms it changed (upserting replaceOne by _id, one
// bulk write), and last the position ($max). There is no transaction
// (FerretDB, which the tests run against, has none): a crash between the
// writes leaves the old position, so the batch is delivered and folded
// again. That gives the same result, because memberships are a set written
// before the rooms, a room's count is recounted from the set whenever the
// batch changes its membership, and rooms are replaced whole by values that
// Fold sets rather than accumulates (rooms.Fold has the argument). A
// projection has one writer, its durable consumer, so the read-fold-write
// cycle does not race.
//
// Times are stored as int64 Unix nanoseconds, not BSON dates, so they read
// back exactly (BSON dates hold milliseconds).
//
// Only operations that both MongoDB and FerretDB v1 support are used: find
// with filter, sort, limit and projection; countDocuments; replaceOne,
// updateOne and deleteOne in bulk writes; createIndexes with unique indexes;
// drop.
package mongo

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/mongostore"
	"github.com/jetchat/jetchat/projections/rooms"
)

// Store is one named version of the room list in a MongoDB database.
type Store struct {
	name     string
	rooms    *mongo.Collection
	members  *mongo.Collection
	position mongostore.Position
}

var _ rooms.Store = (*Store)(nil)

// New opens the version name of the rooms store in db, creating its indexes.
// The caller owns db's client: Close does not disconnect it.
func New(ctx context.Context, db *mongo.Database, name string) (*Store, error) {
	if err := projections.ValidateName(name); err != nil {
		return nil, fmt.Errorf("open rooms store: %w", err)
	}
	s := &Store{
		name:     name,
		rooms:    db.Collection(name + "_rooms"),
		members:  db.Collection(name + "_members"),
		position: mongostore.NewPosition(db, name),
	}
	for _, c := range []struct {
		coll    *mongo.Collection
		indexes []mongostore.Index
	}{
		{s.rooms, []mongostore.Index{{Name: "private_activity", Keys: bson.D{{Key: "private", Value: 1}, {Key: "last_activity", Value: -1}, {Key: "_id", Value: 1}}}}},
		{s.members, []mongostore.Index{
			{Name: "room_user", Keys: bson.D{{Key: "room", Value: 1}, {Key: "user", Value: 1}}, Unique: true},
			{Name: "user_room", Keys: bson.D{{Key: "user", Value: 1}, {Key: "room", Value: 1}}, Unique: true},
		}},
	} {
		if err := mongostore.CreateIndexes(ctx, c.coll, c.indexes...); err != nil {
			return nil, fmt.Errorf("open rooms store %s: %w", name, err)
		}
	}
	return s, nil
}

type roomDoc struct {
	ID           string      `bson:"_id"`
	Name         string      `bson:"name"`
	Private      bool        `bson:"private"`
	Creator      string      `bson:"creator"`
	Created      int64       `bson:"created"` // Unix nanoseconds
	Members      int64       `bson:"members"`
	LastActivity int64       `bson:"last_activity"` // Unix nanoseconds
	Head         int64       `bson:"head"`
	Last         *previewDoc `bson:"last,omitempty"`
}

type previewDoc struct {
	Seq     int64  `bson:"seq"`
	Author  string `bson:"author"`
	Text    string `bson:"text"`
	TS      int64  `bson:"ts"` // Unix nanoseconds
	Deleted bool   `bson:"deleted"`
}

type memberDoc struct {
	ID   string `bson:"_id"`
	Room string `bson:"room"`
	User string `bson:"user"`
}

// memberID is a membership's _id: room ids hold no ':', so it is unambiguous.
func memberID(m rooms.Member) string { return m.Room + ":" + m.User }

func toDoc(r rooms.Room) roomDoc {
	d := roomDoc{
		ID: r.ID, Name: r.Name, Private: r.Private, Creator: r.Creator, Created: projections.Nanos(r.Created),
		Members: int64(r.Members), LastActivity: projections.Nanos(r.LastActivity), Head: int64(r.Head),
	}
	if p := r.Last; p != nil {
		d.Last = &previewDoc{Seq: int64(p.Seq), Author: p.Author, Text: p.Text, TS: projections.Nanos(p.Time), Deleted: p.Deleted}
	}
	return d
}

func (d roomDoc) room() rooms.Room {
	r := rooms.Room{
		ID: d.ID, Name: d.Name, Private: d.Private, Creator: d.Creator, Created: projections.FromNanos(d.Created),
		Members: int(d.Members), LastActivity: projections.FromNanos(d.LastActivity), Head: uint64(d.Head),
	}
	if p := d.Last; p != nil {
		r.Last = &rooms.Preview{Seq: uint64(p.Seq), Author: p.Author, Text: p.Text, Time: projections.FromNanos(p.TS), Deleted: p.Deleted}
	}
	return r
}

// Apply implements rooms.Store: memberships, then rooms, then the position
// (see the package comment for why that is safe without a transaction).
func (s *Store) Apply(ctx context.Context, events []chat.Event) error {
	pos, err := s.Position(ctx)
	if err != nil {
		return fmt.Errorf("apply rooms: %w", err)
	}
	b, err := rooms.Fold(ctx, pos, events, s.load)
	if err != nil {
		return fmt.Errorf("apply rooms: %w", err)
	}
	if b.Position == pos {
		return nil
	}
	members := make([]mongo.WriteModel, 0, len(b.Joined)+len(b.Left))
	for _, m := range b.Joined {
		d := memberDoc{ID: memberID(m), Room: m.Room, User: m.User}
		members = append(members, mongostore.Upsert(d.ID, d))
	}
	for _, m := range b.Left {
		members = append(members, mongostore.Delete(memberID(m)))
	}
	if err := mongostore.Write(ctx, s.members, members); err != nil {
		return fmt.Errorf("apply rooms: write members: %w", err)
	}
	rs := make([]mongo.WriteModel, 0, len(b.Rooms))
	for _, r := range b.Rooms {
		d := toDoc(r)
		rs = append(rs, mongostore.Upsert(d.ID, d))
	}
	if err := mongostore.Write(ctx, s.rooms, rs); err != nil {
		return fmt.Errorf("apply rooms: write rooms: %w", err)
	}
	if err := s.position.Set(ctx, b.Position); err != nil {
		return fmt.Errorf("apply rooms: write position: %w", err)
	}
	return nil
}

// lookupChunk bounds the ids of one $in.
const lookupChunk = 500

// load is Fold's loader: finds by _id, counts by the room_user index.
func (s *Store) load(ctx context.Context, l rooms.Lookup) (rooms.State, error) {
	st := rooms.State{Counts: make(map[string]int, len(l.Count))}
	for c := range slices.Chunk(l.Rooms, lookupChunk) {
		docs, err := mongostore.Find[roomDoc](ctx, s.rooms, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: c}}}}, options.Find())
		if err != nil {
			return rooms.State{}, fmt.Errorf("load rooms: %w", err)
		}
		for _, d := range docs {
			st.Rooms = append(st.Rooms, d.room())
		}
	}
	for _, id := range l.Count {
		n, err := s.members.CountDocuments(ctx, bson.D{{Key: "room", Value: id}})
		if err != nil {
			return rooms.State{}, fmt.Errorf("count members of %s: %w", id, err)
		}
		st.Counts[id] = int(n)
	}
	for c := range slices.Chunk(l.Members, lookupChunk) {
		ids := make(bson.A, 0, len(c))
		for _, m := range c {
			ids = append(ids, memberID(m))
		}
		docs, err := mongostore.Find[memberDoc](ctx, s.members, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}, options.Find())
		if err != nil {
			return rooms.State{}, fmt.Errorf("load members: %w", err)
		}
		for _, d := range docs {
			st.Members = append(st.Members, rooms.Member{Room: d.Room, User: d.User})
		}
	}
	return st, nil
}

// Position implements rooms.Store.
func (s *Store) Position(ctx context.Context) (uint64, error) {
	pos, err := s.position.Get(ctx)
	if err != nil {
		return 0, fmt.Errorf("rooms position: %w", err)
	}
	return pos, nil
}

// listSort is List's order: newest activity first, ties by id.
var listSort = bson.D{{Key: "last_activity", Value: -1}, {Key: "_id", Value: 1}}

// List implements rooms.Store: two indexed queries, merged (see the package
// comment).
func (s *Store) List(ctx context.Context, user string, limit int) ([]rooms.Room, error) {
	n := rooms.Limit(limit)
	docs, err := mongostore.Find[roomDoc](ctx, s.rooms, bson.D{{Key: "private", Value: false}}, options.Find().SetSort(listSort).SetLimit(int64(n)))
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	mine, err := mongostore.Find[memberDoc](ctx, s.members, bson.D{{Key: "user", Value: user}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 0}, {Key: "room", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("list rooms of %s: %w", user, err)
	}
	if len(mine) > 0 {
		ids := make(bson.A, 0, len(mine))
		for _, m := range mine {
			ids = append(ids, m.Room)
		}
		priv, err := mongostore.Find[roomDoc](ctx, s.rooms,
			bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: "private", Value: true}},
			options.Find().SetSort(listSort).SetLimit(int64(n)))
		if err != nil {
			return nil, fmt.Errorf("list rooms of %s: %w", user, err)
		}
		docs = append(docs, priv...)
	}
	rs := make([]rooms.Room, 0, len(docs))
	for _, d := range docs {
		rs = append(rs, d.room())
	}
	slices.SortFunc(rs, rooms.CompareList)
	if len(rs) > n {
		rs = rs[:n]
	}
	return rs, nil
}

// Get implements rooms.Store.
func (s *Store) Get(ctx context.Context, room string) (rooms.Room, bool, error) {
	var d roomDoc
	err := s.rooms.FindOne(ctx, bson.D{{Key: "_id", Value: room}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return rooms.Room{}, false, nil
	}
	if err != nil {
		return rooms.Room{}, false, fmt.Errorf("get room %s: %w", room, err)
	}
	return d.room(), true, nil
}

// IsMember implements rooms.Store.
func (s *Store) IsMember(ctx context.Context, room, user string) (bool, error) {
	err := s.members.FindOne(ctx, bson.D{{Key: "_id", Value: memberID(rooms.Member{Room: room, User: user})}}).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("is member of %s: %w", room, err)
	}
	return true, nil
}

// Dump implements rooms.Store.
func (s *Store) Dump(ctx context.Context) (rooms.Snapshot, error) {
	docs, err := mongostore.Find[roomDoc](ctx, s.rooms, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return rooms.Snapshot{}, fmt.Errorf("rooms dump: %w", err)
	}
	mdocs, err := mongostore.Find[memberDoc](ctx, s.members, bson.D{}, options.Find().SetSort(bson.D{{Key: "room", Value: 1}, {Key: "user", Value: 1}}))
	if err != nil {
		return rooms.Snapshot{}, fmt.Errorf("rooms dump: %w", err)
	}
	var snap rooms.Snapshot
	for _, d := range docs {
		snap.Rooms = append(snap.Rooms, d.room())
	}
	for _, d := range mdocs {
		snap.Members = append(snap.Members, rooms.Member{Room: d.Room, User: d.User})
	}
	return snap, nil
}

// Drop implements rooms.Store: it drops the version's collections.
func (s *Store) Drop(ctx context.Context) error {
	if err := mongostore.Drop(ctx, s.rooms, s.members, s.position.Coll); err != nil {
		return fmt.Errorf("drop rooms %s: %w", s.name, err)
	}
	return nil
}

// Close implements rooms.Store. It releases nothing: the client is the
// caller's.
func (s *Store) Close() error { return nil }
