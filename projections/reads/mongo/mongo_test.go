package mongo_test

import (
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/testrig"
	"github.com/jetchat/jetchat/projections/projectiontest"
	"github.com/jetchat/jetchat/projections/reads"
	readsmongo "github.com/jetchat/jetchat/projections/reads/mongo"
	"github.com/jetchat/jetchat/projections/reads/storetest"
)

// TestStore runs the contract against embedded FerretDB: one server, a
// database per subtest, and a new client for every open, as a restarted
// process would have.
func TestStore(t *testing.T) {
	uri := testrig.RunFerret(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) storetest.Open {
		dbName := fmt.Sprintf("reads_test_%d", n.Add(1))
		return projectiontest.MustOpen(t, func(name string) (reads.Store, error) {
			return readsmongo.New(t.Context(), testrig.MongoDatabase(t, uri, dbName), name)
		})
	})
}

// TestCrashBeforePositionReplaysToSameState: a batch of which only some
// writes landed (here: the messages, and the marker of one user) and not the
// position is delivered again and leaves the same state as one clean apply.
func TestCrashBeforePositionReplaysToSameState(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := testrig.MongoDatabase(t, testrig.RunFerret(t), "reads_crash")
	s, err := readsmongo.New(ctx, db, "reads_v1")
	if err != nil {
		t.Fatal(err)
	}
	ev := func(seq uint64, typ chat.EventType, author, user string, target uint64) chat.Event {
		return chat.Event{ID: fmt.Sprint("e", seq), Type: typ, Room: "a", Author: author, User: user, Target: target, Text: "x", Name: "A", Seq: seq, Time: time.Unix(int64(seq), 0)}
	}
	first := []chat.Event{
		ev(1, chat.RoomCreated, "ann", "", 0),
		ev(2, chat.MemberJoined, "bob", "bob", 0),
		ev(3, chat.MessageSent, "bob", "", 0),
	}
	second := []chat.Event{
		ev(4, chat.MessageSent, "ann", "", 0),
		ev(5, chat.ReadMoved, "bob", "", 4),
		ev(6, chat.MessageDeleted, "bob", "", 3),
		ev(7, chat.MemberLeft, "ann", "ann", 0),
		ev(8, chat.MemberJoined, "cat", "cat", 0),
		ev(9, chat.MessageSent, "cat", "", 0),
	}
	if err := s.Apply(ctx, first); err != nil {
		t.Fatal(err)
	}
	markers := db.Collection("reads_v1_markers")
	var bobAfterFirst bson.Raw
	if bobAfterFirst, err = markers.FindOne(ctx, bson.D{{Key: "_id", Value: "a:bob"}}).Raw(); err != nil {
		t.Fatal(err)
	}
	var annAfterFirst bson.Raw
	if annAfterFirst, err = markers.FindOne(ctx, bson.D{{Key: "_id", Value: "a:ann"}}).Raw(); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, second); err != nil {
		t.Fatal(err)
	}
	want, err := s.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The crash: bob's and ann's markers and the position are as after the
	// first batch, the messages and cat's marker as after the second.
	for _, d := range []bson.Raw{bobAfterFirst, annAfterFirst} {
		id := d.Lookup("_id").StringValue()
		if _, err := markers.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, d, options.Replace().SetUpsert(true)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Collection("reads_v1_position").UpdateOne(ctx, bson.D{{Key: "_id", Value: "position"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "position", Value: int64(3)}}}}); err != nil {
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
