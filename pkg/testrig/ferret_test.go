package testrig_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/jetchat/jetchat/pkg/testrig"
)

// TestRunFerret: the embedded FerretDB answers the MongoDB protocol: a
// document written is read back.
func TestRunFerret(t *testing.T) {
	t.Parallel()
	uri := testrig.RunFerret(t)
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	ctx := t.Context()
	coll := client.Database("testrig_ferret").Collection("docs")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 1}}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var got struct {
		N int `bson:"n"`
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&got); err != nil || got.N != 1 {
		t.Fatalf("find: %+v, %v", got, err)
	}
}
