package testrig

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// MongoDatabase connects a new client to the MongoDB (or FerretDB) at uri,
// disconnected when the test ends, and returns its database name: a test
// that opens a store twice on one name gets the two clients that a restarted
// process would have. Give each test its own name.
func MongoDatabase(tb testing.TB, uri, name string) *mongo.Database {
	tb.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		tb.Fatalf("connect to %s: %v", uri, err)
	}
	tb.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return client.Database(name)
}
