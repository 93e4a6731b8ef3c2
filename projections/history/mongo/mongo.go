// Package mongo stores the history read model in MongoDB: the cluster's store.
//
// A version named N ("history_v1") owns two collections:
//
//	N_messages  one document per message, _id = room + ":" + seq (20 digits)
//	  index room_seq        {room: 1, seq: 1} unique: every page query is an
//	                        equality on room, a range on seq, a sort on seq and
//	                        a limit, and Dump sorts on it
//	  index room_author_id  {room: 1, author: 1, id: 1} unique: the send's
//	                        idempotency key, looked up by equality
//	N_position  one document {_id: "position", position}
//
// Apply reads the messages a batch depends on (one find: an $or of _id $in
// and exact (room, author, id) clauses, each served by an index), folds the
// batch with history.Fold, writes the new full state of each message it
// changed as an upserting replaceOne keyed by _id in one bulk write, and then,
// last, the position. There is no transaction (FerretDB, which the tests run
// against, has none, and a projection does not need one): a crash between the
// data and the position leaves messages that already hold some or all of the
// batch's effects with the old position, so the batch is delivered again and
// folded again over them. That is harmless because every write is a full
// replacement keyed by (room, seq), and Fold over its own result gives the
// same result (a send finds its own document and changes nothing; edits,
// deletes and reactions set values rather than accumulate them). A
// projection has one writer, its durable consumer, so the read-fold-replace
// cycle does not race.
//
// Times are stored as int64 Unix nanoseconds, not BSON dates, so a message
// reads back exactly as it was folded (BSON dates hold milliseconds).
//
// Only operations that both MongoDB and FerretDB v1 support are used: find
// with filter, sort and limit; replaceOne and updateOne with upsert in bulk
// writes; createIndexes with unique indexes; drop.
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
	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/mongostore"
)

// Store is one named version of the history read model in a MongoDB database.
type Store struct {
	name     string
	messages *mongo.Collection
	position mongostore.Position
}

var _ history.Store = (*Store)(nil)

// New opens the version name of the history store in db, creating its
// indexes. The caller owns db's client: Close does not disconnect it.
func New(ctx context.Context, db *mongo.Database, name string) (*Store, error) {
	if err := projections.ValidateName(name); err != nil {
		return nil, fmt.Errorf("open history store: %w", err)
	}
	s := &Store{
		name:     name,
		messages: db.Collection(name + "_messages"),
		position: mongostore.NewPosition(db, name),
	}
	if err := mongostore.CreateIndexes(ctx, s.messages, indexes...); err != nil {
		return nil, fmt.Errorf("open history store %s: %w", name, err)
	}
	return s, nil
}

// indexes of N_messages, besides _id.
var indexes = []mongostore.Index{
	{Name: "room_seq", Keys: bson.D{{Key: "room", Value: 1}, {Key: "seq", Value: 1}}, Unique: true},
	{Name: "room_author_id", Keys: bson.D{{Key: "room", Value: 1}, {Key: "author", Value: 1}, {Key: "id", Value: 1}}, Unique: true},
}

type doc struct {
	ID        string     `bson:"_id"`
	Room      string     `bson:"room"`
	Seq       int64      `bson:"seq"`
	ClientID  string     `bson:"id"`
	Author    string     `bson:"author"`
	TS        int64      `bson:"ts"` // Unix nanoseconds
	Text      string     `bson:"text"`
	Edited    bool       `bson:"edited"`
	EditedAt  int64      `bson:"edited_at"` // Unix nanoseconds, 0 if never edited
	Deleted   bool       `bson:"deleted"`
	Reactions []reaction `bson:"reactions,omitempty"`
}

type reaction struct {
	Emoji string   `bson:"emoji"`
	Users []string `bson:"users"`
}

func docID(room string, seq uint64) string { return fmt.Sprintf("%s:%020d", room, seq) }

func toDoc(m history.Message) doc {
	d := doc{
		ID: docID(m.Room, m.Seq), Room: m.Room, Seq: int64(m.Seq), ClientID: m.ID, Author: m.Author,
		TS: projections.Nanos(m.Time), Text: m.Text, Edited: m.Edited, EditedAt: projections.Nanos(m.EditedAt), Deleted: m.Deleted,
	}
	for _, r := range m.Reactions {
		d.Reactions = append(d.Reactions, reaction{Emoji: r.Emoji, Users: r.Users})
	}
	return d
}

func (d doc) message() history.Message {
	m := history.Message{
		Room: d.Room, Seq: uint64(d.Seq), ID: d.ClientID, Author: d.Author,
		Time: projections.FromNanos(d.TS), Text: d.Text, Edited: d.Edited, EditedAt: projections.FromNanos(d.EditedAt), Deleted: d.Deleted,
	}
	for _, r := range d.Reactions {
		m.Reactions = append(m.Reactions, history.Reaction{Emoji: r.Emoji, Users: r.Users})
	}
	return m
}

// Apply implements history.Store: data first, position last (see the package
// comment for why that is safe without a transaction).
func (s *Store) Apply(ctx context.Context, events []chat.Event) error {
	pos, err := s.Position(ctx)
	if err != nil {
		return fmt.Errorf("apply history: %w", err)
	}
	b, err := history.Fold(ctx, pos, events, s.load)
	if err != nil {
		return fmt.Errorf("apply history: %w", err)
	}
	if b.Position == pos {
		return nil
	}
	models := make([]mongo.WriteModel, 0, len(b.Messages))
	for _, m := range b.Messages {
		d := toDoc(m)
		models = append(models, mongostore.Upsert(d.ID, d))
	}
	if err := mongostore.Write(ctx, s.messages, models); err != nil {
		return fmt.Errorf("apply history: write messages: %w", err)
	}
	if err := s.position.Set(ctx, b.Position); err != nil {
		return fmt.Errorf("apply history: write position: %w", err)
	}
	return nil
}

// lookupChunk bounds the clauses of one lookup query.
const lookupChunk = 200

// load is Fold's loader: finds by _id and by the (room, author, id) index.
func (s *Store) load(ctx context.Context, l history.Lookup) ([]history.Message, error) {
	var clauses []bson.D
	ids := make(bson.A, 0, len(l.Seqs))
	for _, k := range l.Seqs {
		ids = append(ids, docID(k.Room, k.Seq))
	}
	for c := range slices.Chunk(ids, lookupChunk) {
		clauses = append(clauses, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: c}}}})
	}
	for _, k := range l.IDs {
		clauses = append(clauses, bson.D{{Key: "room", Value: k.Room}, {Key: "author", Value: k.Author}, {Key: "id", Value: k.ID}})
	}
	seen := make(map[string]bool)
	var out []history.Message
	for c := range slices.Chunk(clauses, lookupChunk) {
		docs, err := s.find(ctx, bson.D{{Key: "$or", Value: c}}, options.Find())
		if err != nil {
			return nil, fmt.Errorf("load messages: %w", err)
		}
		for _, d := range docs {
			if !seen[d.ID] {
				seen[d.ID] = true
				out = append(out, d.message())
			}
		}
	}
	return out, nil
}

func (s *Store) find(ctx context.Context, filter any, opts *options.FindOptionsBuilder) ([]doc, error) {
	return mongostore.Find[doc](ctx, s.messages, filter, opts)
}

// Position implements history.Store.
func (s *Store) Position(ctx context.Context) (uint64, error) {
	pos, err := s.position.Get(ctx)
	if err != nil {
		return 0, fmt.Errorf("history position: %w", err)
	}
	return pos, nil
}

// Messages implements history.Store: equality on room, range on seq, sort on
// seq, limit: served by the room_seq index.
func (s *Store) Messages(ctx context.Context, room string, p history.Page) ([]history.Message, error) {
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	filter := bson.D{{Key: "room", Value: room}}
	dir := -1
	switch {
	case p.After != 0:
		filter = append(filter, bson.E{Key: "seq", Value: bson.D{{Key: "$gt", Value: int64(p.After)}}})
		dir = 1
	case p.Before != 0:
		filter = append(filter, bson.E{Key: "seq", Value: bson.D{{Key: "$lt", Value: int64(p.Before)}}})
	}
	docs, err := s.find(ctx, filter, options.Find().SetSort(bson.D{{Key: "seq", Value: dir}}).SetLimit(int64(p.Limit)))
	if err != nil {
		return nil, fmt.Errorf("history messages: %w", err)
	}
	if dir < 0 {
		slices.Reverse(docs)
	}
	return messages(docs), nil
}

// Dump implements history.Store.
func (s *Store) Dump(ctx context.Context) ([]history.Message, error) {
	docs, err := s.find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "room", Value: 1}, {Key: "seq", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("history dump: %w", err)
	}
	return messages(docs), nil
}

func messages(docs []doc) []history.Message {
	if len(docs) == 0 {
		return nil
	}
	ms := make([]history.Message, len(docs))
	for i, d := range docs {
		ms[i] = d.message()
	}
	return ms
}

// Drop implements history.Store: it drops the version's collections.
func (s *Store) Drop(ctx context.Context) error {
	if err := mongostore.Drop(ctx, s.messages, s.position.Coll); err != nil {
		return fmt.Errorf("drop history %s: %w", s.name, err)
	}
	return nil
}

// Close implements history.Store. It releases nothing: the client is the
// caller's.
func (s *Store) Close() error { return nil }
