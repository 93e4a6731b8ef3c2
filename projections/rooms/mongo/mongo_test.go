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
	"github.com/jetchat/jetchat/projections/projectiontest"
	"github.com/jetchat/jetchat/projections/rooms"
	roomsmongo "github.com/jetchat/jetchat/projections/rooms/mongo"
	"github.com/jetchat/jetchat/projections/rooms/storetest"
)

// TestStore runs the contract against embedded FerretDB: one server, a
// database per subtest, and a new client for every open, as a restarted
// process would have.
func TestStore(t *testing.T) {
	uri := testrig.RunFerret(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) storetest.Open {
		dbName := fmt.Sprintf("rooms_test_%d", n.Add(1))
		return projectiontest.MustOpen(t, func(name string) (rooms.Store, error) {
			return roomsmongo.New(t.Context(), testrig.MongoDatabase(t, uri, dbName), name)
		})
	})
}

// TestCrashBeforeRoomsReplaysToSameState: a batch whose memberships were
// written but whose rooms and position were not (a crash between the writes)
// is delivered again and leaves the same state as one clean apply, member
// counts included.
func TestCrashBeforeRoomsReplaysToSameState(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := testrig.MongoDatabase(t, testrig.RunFerret(t), "rooms_crash")
	s, err := roomsmongo.New(ctx, db, "rooms_v1")
	if err != nil {
		t.Fatal(err)
	}
	at := func(seq uint64) time.Time { return time.Unix(1_700_000_000+int64(seq), int64(seq)).UTC() }
	ev := func(seq uint64, typ chat.EventType, author, user string, target uint64, text string) chat.Event {
		return chat.Event{ID: fmt.Sprint("e", seq), Type: typ, Room: "a", Author: author, User: user, Target: target, Text: text, Name: "A", Seq: seq, Time: at(seq)}
	}
	first := []chat.Event{
		ev(1, chat.RoomCreated, "ann", "", 0, ""),
		ev(2, chat.MemberJoined, "bob", "bob", 0, ""),
		ev(3, chat.MessageSent, "bob", "", 0, "hello"),
	}
	second := []chat.Event{
		ev(4, chat.MemberJoined, "cat", "cat", 0, ""),
		ev(5, chat.MemberLeft, "ann", "ann", 0, ""),
		ev(6, chat.MemberJoined, "dan", "dan", 0, ""),
		ev(7, chat.MessageEdited, "bob", "", 3, "hello!"),
		ev(8, chat.MessageSent, "cat", "", 0, "hi"),
		ev(9, chat.MessageDeleted, "cat", "", 8, ""),
		ev(10, chat.ReadMoved, "dan", "", 9, ""),
	}
	if err := s.Apply(ctx, first); err != nil {
		t.Fatal(err)
	}
	var roomAfterFirst bson.Raw
	if roomAfterFirst, err = db.Collection("rooms_v1_rooms").FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Raw(); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, second); err != nil {
		t.Fatal(err)
	}
	want, err := s.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want.Rooms[0].Members != 3 {
		t.Fatalf("clean apply: %d members, want 3 (bob, cat, dan)", want.Rooms[0].Members)
	}
	// The crash: the second batch's memberships are stored, its room and
	// position are not.
	if _, err := db.Collection("rooms_v1_rooms").ReplaceOne(ctx, bson.D{{Key: "_id", Value: "a"}}, roomAfterFirst); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("rooms_v1_position").UpdateOne(ctx, bson.D{{Key: "_id", Value: "position"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "position", Value: int64(3)}}}}); err != nil {
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
	if pos, err := s.Position(ctx); err != nil || pos != 10 {
		t.Fatalf("position %d (%v), want 10", pos, err)
	}
}
