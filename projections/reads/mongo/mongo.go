// Package mongo stores the read-marker read model in MongoDB: the cluster's
// store.
//
// A version named N ("reads_v1") owns three collections:
//
//	N_markers   one document per membership {_id: room + ":" + user, room,
//	            user, read}
//	  index user_room  {user: 1, room: 1} unique: a user's markers (All,
//	                   Markers), equality on user, sorted by room
//	N_messages  one document per message that counts as unread {_id: room +
//	            ":" + seq (20 digits), room, seq, author}
//	  index room_seq   {room: 1, seq: 1} unique: an unread count is
//	                   CountDocuments {room, seq: {$gt: read}, author: {$ne:
//	                   user}} with limit reads.MaxUnread, equality on room and
//	                   a range on seq that stops after 1,000 documents
//	N_position  one document {_id: "position", position}
//
// Fold's loader finds markers and messages by _id.
//
// Apply folds a batch with reads.Fold and writes what it changed (upserting
// replaceOne and deleteOne by _id, one bulk write per collection), and then,
// last, the position ($max). There is no transaction (FerretDB, which the
// tests run against, has none): a crash before the position is written
// leaves any subset of the batch's writes, so the batch is delivered and
// folded again, to the same result (reads.Fold has the argument). Unread
// counts are not stored, so they cannot drift. A projection has one writer,
// its durable consumer, so the read-fold-write cycle does not race.
//
// Only operations that both MongoDB and FerretDB v1 support are used: find
// with filter and sort; countDocuments with a limit; replaceOne, updateOne
// and deleteOne in bulk writes; createIndexes with unique indexes; drop.
package mongo

import (
	"context"
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/mongostore"
	"github.com/jetchat/jetchat/projections/reads"
)

// Store is one named version of the read-marker model in a MongoDB database.
type Store struct {
	name     string
	markers  *mongo.Collection
	messages *mongo.Collection
	position mongostore.Position
}

var _ reads.Store = (*Store)(nil)

// New opens the version name of the reads store in db, creating its indexes.
// The caller owns db's client: Close does not disconnect it.
func New(ctx context.Context, db *mongo.Database, name string) (*Store, error) {
	if err := projections.ValidateName(name); err != nil {
		return nil, fmt.Errorf("open reads store: %w", err)
	}
	s := &Store{
		name:     name,
		markers:  db.Collection(name + "_markers"),
		messages: db.Collection(name + "_messages"),
		position: mongostore.NewPosition(db, name),
	}
	if err := mongostore.CreateIndexes(ctx, s.markers, mongostore.Index{Name: "user_room", Keys: bson.D{{Key: "user", Value: 1}, {Key: "room", Value: 1}}, Unique: true}); err != nil {
		return nil, fmt.Errorf("open reads store %s: %w", name, err)
	}
	if err := mongostore.CreateIndexes(ctx, s.messages, mongostore.Index{Name: "room_seq", Keys: bson.D{{Key: "room", Value: 1}, {Key: "seq", Value: 1}}, Unique: true}); err != nil {
		return nil, fmt.Errorf("open reads store %s: %w", name, err)
	}
	return s, nil
}

type markerDoc struct {
	ID   string `bson:"_id"`
	Room string `bson:"room"`
	User string `bson:"user"`
	Read int64  `bson:"read"`
}

type messageDoc struct {
	ID     string `bson:"_id"`
	Room   string `bson:"room"`
	Seq    int64  `bson:"seq"`
	Author string `bson:"author"`
}

// markerID is a marker's _id: room ids hold no ':', so it is unambiguous.
func markerID(room, user string) string { return room + ":" + user }

func messageID(room string, seq uint64) string { return fmt.Sprintf("%s:%020d", room, seq) }

// Apply implements reads.Store: data first, position last (see the package
// comment for why that is safe without a transaction).
func (s *Store) Apply(ctx context.Context, events []chat.Event) error {
	pos, err := s.Position(ctx)
	if err != nil {
		return fmt.Errorf("apply reads: %w", err)
	}
	b, err := reads.Fold(ctx, pos, events, s.load)
	if err != nil {
		return fmt.Errorf("apply reads: %w", err)
	}
	if b.Position == pos {
		return nil
	}
	var mk, msg []mongo.WriteModel
	for _, m := range b.Markers {
		d := markerDoc{ID: markerID(m.Room, m.User), Room: m.Room, User: m.User, Read: int64(m.Read)}
		mk = append(mk, mongostore.Upsert(d.ID, d))
	}
	for _, k := range b.Removed {
		mk = append(mk, mongostore.Delete(markerID(k.Room, k.User)))
	}
	for _, m := range b.Messages {
		d := messageDoc{ID: messageID(m.Room, m.Seq), Room: m.Room, Seq: int64(m.Seq), Author: m.Author}
		msg = append(msg, mongostore.Upsert(d.ID, d))
	}
	for _, k := range b.Deleted {
		msg = append(msg, mongostore.Delete(messageID(k.Room, k.Seq)))
	}
	if err := mongostore.Write(ctx, s.messages, msg); err != nil {
		return fmt.Errorf("apply reads: write messages: %w", err)
	}
	if err := mongostore.Write(ctx, s.markers, mk); err != nil {
		return fmt.Errorf("apply reads: write markers: %w", err)
	}
	if err := s.position.Set(ctx, b.Position); err != nil {
		return fmt.Errorf("apply reads: write position: %w", err)
	}
	return nil
}

// lookupChunk bounds the ids of one $in.
const lookupChunk = 500

// load is Fold's loader: finds by _id.
func (s *Store) load(ctx context.Context, l reads.Lookup) (reads.State, error) {
	var st reads.State
	for c := range slices.Chunk(l.Markers, lookupChunk) {
		ids := make(bson.A, 0, len(c))
		for _, k := range c {
			ids = append(ids, markerID(k.Room, k.User))
		}
		docs, err := mongostore.Find[markerDoc](ctx, s.markers, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}, options.Find())
		if err != nil {
			return reads.State{}, fmt.Errorf("load markers: %w", err)
		}
		for _, d := range docs {
			st.Markers = append(st.Markers, reads.Marker{Room: d.Room, User: d.User, Read: uint64(d.Read)})
		}
	}
	for c := range slices.Chunk(l.Messages, lookupChunk) {
		ids := make(bson.A, 0, len(c))
		for _, k := range c {
			ids = append(ids, messageID(k.Room, k.Seq))
		}
		docs, err := mongostore.Find[messageDoc](ctx, s.messages, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}, options.Find())
		if err != nil {
			return reads.State{}, fmt.Errorf("load messages: %w", err)
		}
		for _, d := range docs {
			st.Messages = append(st.Messages, reads.Message{Room: d.Room, Seq: uint64(d.Seq), Author: d.Author})
		}
	}
	return st, nil
}

// Position implements reads.Store.
func (s *Store) Position(ctx context.Context) (uint64, error) {
	pos, err := s.position.Get(ctx)
	if err != nil {
		return 0, fmt.Errorf("reads position: %w", err)
	}
	return pos, nil
}

// Markers implements reads.Store: the user's markers in rooms (equality on
// user, $in on room: the user_room index), then a bounded count per room.
func (s *Store) Markers(ctx context.Context, user string, rooms []string) (map[string]reads.Marker, error) {
	out := make(map[string]reads.Marker, len(rooms))
	for c := range slices.Chunk(rooms, lookupChunk) {
		docs, err := mongostore.Find[markerDoc](ctx, s.markers, bson.D{{Key: "user", Value: user}, {Key: "room", Value: bson.D{{Key: "$in", Value: c}}}}, options.Find())
		if err != nil {
			return nil, fmt.Errorf("read markers of %s: %w", user, err)
		}
		ms, err := s.count(ctx, docs)
		if err != nil {
			return nil, fmt.Errorf("read markers of %s: %w", user, err)
		}
		for _, m := range ms {
			out[m.Room] = m
		}
	}
	return out, nil
}

// All implements reads.Store: the user's markers sorted by room (the
// user_room index), then a bounded count per room.
func (s *Store) All(ctx context.Context, user string) ([]reads.Marker, error) {
	docs, err := mongostore.Find[markerDoc](ctx, s.markers, bson.D{{Key: "user", Value: user}}, options.Find().SetSort(bson.D{{Key: "room", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("read markers of %s: %w", user, err)
	}
	ms, err := s.count(ctx, docs)
	if err != nil {
		return nil, fmt.Errorf("read markers of %s: %w", user, err)
	}
	return ms, nil
}

// count turns marker documents into markers with their unread counts.
func (s *Store) count(ctx context.Context, docs []markerDoc) ([]reads.Marker, error) {
	var ms []reads.Marker
	for _, d := range docs {
		n, err := s.messages.CountDocuments(ctx, bson.D{
			{Key: "room", Value: d.Room},
			{Key: "seq", Value: bson.D{{Key: "$gt", Value: d.Read}}},
			{Key: "author", Value: bson.D{{Key: "$ne", Value: d.User}}},
		}, options.Count().SetLimit(reads.MaxUnread))
		if err != nil {
			return nil, fmt.Errorf("count unread in %s: %w", d.Room, err)
		}
		ms = append(ms, reads.Marker{Room: d.Room, User: d.User, Read: uint64(d.Read), Unread: int(n)})
	}
	return ms, nil
}

// Dump implements reads.Store.
func (s *Store) Dump(ctx context.Context) (reads.Snapshot, error) {
	mdocs, err := mongostore.Find[markerDoc](ctx, s.markers, bson.D{}, options.Find().SetSort(bson.D{{Key: "room", Value: 1}, {Key: "user", Value: 1}}))
	if err != nil {
		return reads.Snapshot{}, fmt.Errorf("reads dump: %w", err)
	}
	var snap reads.Snapshot
	if snap.Markers, err = s.count(ctx, mdocs); err != nil {
		return reads.Snapshot{}, fmt.Errorf("reads dump: %w", err)
	}
	docs, err := mongostore.Find[messageDoc](ctx, s.messages, bson.D{}, options.Find().SetSort(bson.D{{Key: "room", Value: 1}, {Key: "seq", Value: 1}}))
	if err != nil {
		return reads.Snapshot{}, fmt.Errorf("reads dump: %w", err)
	}
	for _, d := range docs {
		snap.Messages = append(snap.Messages, reads.Message{Room: d.Room, Seq: uint64(d.Seq), Author: d.Author})
	}
	return snap, nil
}

// Drop implements reads.Store: it drops the version's collections.
func (s *Store) Drop(ctx context.Context) error {
	if err := mongostore.Drop(ctx, s.markers, s.messages, s.position.Coll); err != nil {
		return fmt.Errorf("drop reads %s: %w", s.name, err)
	}
	return nil
}

// Close implements reads.Store. It releases nothing: the client is the
// caller's.
func (s *Store) Close() error { return nil }
