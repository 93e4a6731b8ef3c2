package mongostore_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/jetchat/jetchat/pkg/testrig"
	"github.com/jetchat/jetchat/projections/mongostore"
)

// TestMongoStore runs against one embedded FerretDB (ferretdb.New is not
// safe to call from parallel tests), a database per subtest.
func TestMongoStore(t *testing.T) {
	uri := testrig.RunFerret(t)
	t.Run("Position", func(t *testing.T) { t.Parallel(); testPosition(t, uri) })
	t.Run("CreateIndexesFindDrop", func(t *testing.T) { t.Parallel(); testCreateIndexesFindDrop(t, uri) })
}

// testPosition: 0 before the first write; $max never moves it back.
func testPosition(t *testing.T, uri string) {
	ctx := t.Context()
	p := mongostore.NewPosition(testrig.MongoDatabase(t, uri, "position"), "things_v1")
	if pos, err := p.Get(ctx); err != nil || pos != 0 {
		t.Fatalf("position %d (%v), want 0", pos, err)
	}
	for _, set := range []uint64{5, 3, 9} {
		if err := p.Set(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	if pos, err := p.Get(ctx); err != nil || pos != 9 {
		t.Fatalf("position %d (%v), want 9", pos, err)
	}
	if err := p.Set(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if pos, err := p.Get(ctx); err != nil || pos != 9 {
		t.Fatalf("position after a late write %d (%v), want 9", pos, err)
	}
}

// testCreateIndexesFindDrop: creating the indexes again is harmless, a
// unique index holds, Find decodes, and Drop leaves the collections empty.
func testCreateIndexesFindDrop(t *testing.T, uri string) {
	ctx := t.Context()
	db := testrig.MongoDatabase(t, uri, "indexes")
	coll := db.Collection("things_v1_things")
	p := mongostore.NewPosition(db, "things_v1")
	ix := []mongostore.Index{
		{Name: "room_seq", Keys: bson.D{{Key: "room", Value: 1}, {Key: "seq", Value: 1}}, Unique: true},
		{Name: "author", Keys: bson.D{{Key: "author", Value: 1}}},
	}
	for range 2 {
		if err := mongostore.CreateIndexes(ctx, coll, ix...); err != nil {
			t.Fatal(err)
		}
	}
	type thing struct {
		Room   string `bson:"room"`
		Seq    int64  `bson:"seq"`
		Author string `bson:"author"`
	}
	if _, err := coll.InsertMany(ctx, []any{thing{"a", 2, "ann"}, thing{"a", 1, "ann"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, thing{"a", 1, "bob"}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("duplicate (room, seq): %v, want a duplicate key error", err)
	}
	got, err := mongostore.Find[thing](ctx, coll, bson.D{{Key: "room", Value: "a"}}, options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}))
	if err != nil || len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 2 {
		t.Fatalf("Find: %+v (%v), want seqs 1, 2", got, err)
	}
	if err := p.Set(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := mongostore.Drop(ctx, coll, p.Coll); err != nil {
		t.Fatal(err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
		t.Fatalf("%d documents after Drop (%v), want 0", n, err)
	}
	if pos, err := p.Get(ctx); err != nil || pos != 0 {
		t.Fatalf("position after Drop %d (%v), want 0", pos, err)
	}
}
