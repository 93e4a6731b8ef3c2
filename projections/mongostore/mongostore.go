// Package mongostore holds what the MongoDB adapters under projections do
// alike: a version's position document, written with $max so that it never
// moves back; indexes created only where missing (FerretDB v1 cannot be told
// to create one that exists); finds decoded into a slice; dropping a
// version's collections.
//
// Only operations that both MongoDB and FerretDB v1 support are used. The
// package never knows a read model's documents or what an event means: those
// are the adapter's.
package mongostore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Position is a version's collection N_position, which holds one document
// {_id: "position", position}: the seq of the last event applied.
type Position struct{ Coll *mongo.Collection }

// NewPosition returns the position of the version name in db.
func NewPosition(db *mongo.Database, name string) Position {
	return Position{Coll: db.Collection(name + "_position")}
}

var positionID = bson.D{{Key: "_id", Value: "position"}}

// Get returns the position, 0 before the first write.
func (p Position) Get(ctx context.Context) (uint64, error) {
	var d struct {
		Position int64 `bson:"position"`
	}
	err := p.Coll.FindOne(ctx, positionID).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return uint64(d.Position), nil
}

// Set raises the position to pos ($max, upserting): a write that arrives
// late never moves it back.
func (p Position) Set(ctx context.Context, pos uint64) error {
	_, err := p.Coll.UpdateOne(ctx, positionID,
		bson.D{{Key: "$max", Value: bson.D{{Key: "position", Value: int64(pos)}}}},
		options.UpdateOne().SetUpsert(true))
	return err
}

// Index is an index of a collection.
type Index struct {
	Name   string
	Keys   bson.D
	Unique bool
}

// codeNamespaceNotFound is MongoDB's answer to listIndexes on a collection
// that does not exist yet.
const codeNamespaceNotFound = 26

// CreateIndexes creates the indexes of coll that do not exist yet, by name.
// MongoDB would accept creating them again, but FerretDB v1.24 drops the
// connection (a panic in its handler) when createIndexes names indexes that
// exist.
func CreateIndexes(ctx context.Context, coll *mongo.Collection, want ...Index) error {
	specs, err := coll.Indexes().ListSpecifications(ctx)
	var se mongo.ServerError
	if errors.As(err, &se) && se.HasErrorCode(codeNamespaceNotFound) {
		specs, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("list indexes of %s: %w", coll.Name(), err)
	}
	var missing []mongo.IndexModel
	for _, ix := range want {
		if !slices.ContainsFunc(specs, func(s mongo.IndexSpecification) bool { return s.Name == ix.Name }) {
			opts := options.Index().SetName(ix.Name)
			if ix.Unique {
				opts.SetUnique(true)
			}
			missing = append(missing, mongo.IndexModel{Keys: ix.Keys, Options: opts})
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := coll.Indexes().CreateMany(ctx, missing); err != nil {
		return fmt.Errorf("create indexes of %s: %w", coll.Name(), err)
	}
	return nil
}

// Find returns the documents of coll that match filter, decoded as T.
func Find[T any](ctx context.Context, coll *mongo.Collection, filter any, opts *options.FindOptionsBuilder) ([]T, error) {
	cur, err := coll.Find(ctx, filter, opts)
	if err != nil {
		return nil, err
	}
	var docs []T
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	return docs, nil
}

// Drop drops colls in order, stopping at the first error.
func Drop(ctx context.Context, colls ...*mongo.Collection) error {
	for _, c := range colls {
		if err := c.Drop(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Upsert is the idempotent write every adapter makes: replace the document
// with id by doc, inserting it if absent.
func Upsert(id, doc any) mongo.WriteModel {
	return mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).SetReplacement(doc).SetUpsert(true)
}

// Delete removes the document with id (nothing if absent).
func Delete(id any) mongo.WriteModel {
	return mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: id}})
}

// Write runs models as one ordered bulk write; none is a no-op.
func Write(ctx context.Context, coll *mongo.Collection, models []mongo.WriteModel) error {
	if len(models) == 0 {
		return nil
	}
	_, err := coll.BulkWrite(ctx, models)
	return err
}
