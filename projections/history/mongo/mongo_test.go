package mongo_test

import (
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/testrig"
	"github.com/jetchat/jetchat/projections/history"
	historymongo "github.com/jetchat/jetchat/projections/history/mongo"
	"github.com/jetchat/jetchat/projections/history/storetest"
	"github.com/jetchat/jetchat/projections/projectiontest"
)

// TestStore runs the contract against embedded FerretDB: one server, a
// database per subtest, and a new client for every open, as a restarted
// process would have.
func TestStore(t *testing.T) {
	uri := testrig.RunFerret(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) storetest.Open {
		dbName := fmt.Sprintf("history_test_%d", n.Add(1))
		return projectiontest.MustOpen(t, func(name string) (history.Store, error) {
			return historymongo.New(t.Context(), testrig.MongoDatabase(t, uri, dbName), name)
		})
	})
}

// TestCrashBeforePositionReplaysToSameState: a batch whose messages were
// written but whose position was not (a crash between the two writes) is
// delivered again and leaves the same state as one clean apply.
func TestCrashBeforePositionReplaysToSameState(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := testrig.MongoDatabase(t, testrig.RunFerret(t), "history_crash")
	s, err := historymongo.New(ctx, db, "history_v1")
	if err != nil {
		t.Fatal(err)
	}
	at := func(seq uint64) time.Time { return time.Unix(1_700_000_000+int64(seq), 0).UTC() }
	first := []chat.Event{
		{Type: chat.MessageSent, ID: "m1", Room: "a", Author: "ann", Text: "one", Seq: 1, Time: at(1)},
		{Type: chat.MessageSent, ID: "m2", Room: "a", Author: "bob", Text: "two", Seq: 2, Time: at(2)},
	}
	second := []chat.Event{
		{Type: chat.MessageEdited, ID: "e3", Room: "a", Author: "ann", Target: 1, Text: "one!", Seq: 3, Time: at(3)},
		{Type: chat.ReactionAdded, ID: "e4", Room: "a", Author: "bob", Target: 1, Emoji: "👍", Seq: 4, Time: at(4)},
		{Type: chat.ReactionRemove, ID: "e5", Room: "a", Author: "bob", Target: 1, Emoji: "👍", Seq: 5, Time: at(5)},
		{Type: chat.ReactionAdded, ID: "e6", Room: "a", Author: "ann", Target: 2, Emoji: "🎉", Seq: 6, Time: at(6)},
		{Type: chat.MessageDeleted, ID: "e7", Room: "a", Author: "bob", Target: 2, Seq: 7, Time: at(7)},
		{Type: chat.MessageSent, ID: "m1", Room: "a", Author: "ann", Text: "one", Seq: 8, Time: at(8)},
		{Type: chat.MessageSent, ID: "m9", Room: "a", Author: "cat", Text: "nine", Seq: 9, Time: at(9)},
	}
	for _, b := range [][]chat.Event{first, second} {
		if err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	want, err := s.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The crash: the second batch's data is stored, its position is not.
	_, err = db.Collection("history_v1_position").UpdateOne(ctx, bson.D{{Key: "_id", Value: "position"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "position", Value: int64(2)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, second); err != nil {
		t.Fatal(err)
	}
	got, err := s.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after replay:\n got %+v\nwant %+v", got, want)
	}
	if pos, err := s.Position(ctx); err != nil || pos != 9 {
		t.Fatalf("position %d (%v), want 9", pos, err)
	}
}
