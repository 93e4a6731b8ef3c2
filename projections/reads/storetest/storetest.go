// Package storetest is the contract suite every reads.Store must pass: the
// SQLite and MongoDB adapters run it from their tests, and so does the
// in-memory reference model.
//
// It is for tests only: no shipped binary may import it.
package storetest

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/projectiontest"
	"github.com/jetchat/jetchat/projections/reads"
)

// Open opens the named version of a store ("reads_v1") in the database that
// newDB gave the subtest. Opening a name again after its store was closed
// must reopen the same data, as a restarted process would.
type Open = func(name string) reads.Store

// Run runs the contract suite. newDB gives each subtest a fresh, empty
// database (a file, a database name) and returns how to open stores in it;
// Run closes every store it opens.
func Run(t *testing.T, newDB func(t *testing.T) Open) {
	v := projectiontest.Versions[reads.Store]{NewDB: newDB, First: "reads_v1"}
	open, fresh := v.Open, v.Fresh

	t.Run("MembersFromCreateAndJoinWithMarkerAtTheirEvent", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		c := l.created("a", "ann")
		l.sent("a", "ann", "before bob")
		l.sent("a", "cat", "by a non-member")
		j := l.joined("a", "ann", "bob") // an invite: User is the member
		apply(t, s, l.Take())
		markers(t, s, "ann", []string{"a"}, map[string]reads.Marker{"a": {Room: "a", User: "ann", Read: c.Seq + 1, Unread: 1}})
		markers(t, s, "bob", []string{"a"}, map[string]reads.Marker{"a": {Room: "a", User: "bob", Read: j.Seq}})
		markers(t, s, "cat", []string{"a"}, map[string]reads.Marker{})
		all(t, s, "dan", nil)
		m := l.sent("a", "cat", "after bob joined")
		apply(t, s, l.Take())
		all(t, s, "bob", []reads.Marker{{Room: "a", User: "bob", Read: j.Seq, Unread: 1}})
		all(t, s, "ann", []reads.Marker{{Room: "a", User: "ann", Read: c.Seq + 1, Unread: 2}})
		equalSnap(t, dump(t, s), reads.Snapshot{
			Markers: []reads.Marker{{Room: "a", User: "ann", Read: c.Seq + 1, Unread: 2}, {Room: "a", User: "bob", Read: j.Seq, Unread: 1}},
			Messages: []reads.Message{
				{Room: "a", Seq: c.Seq + 1, Author: "ann"}, {Room: "a", Seq: c.Seq + 2, Author: "cat"}, {Room: "a", Seq: m.Seq, Author: "cat"},
			},
		})
	})

	t.Run("JoinedAgainMovesMarkerToTheJoin", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		l.created("a", "ann")
		j := l.joined("a", "bob", "bob")
		l.sent("a", "ann", "x")
		l.sent("a", "ann", "y")
		apply(t, s, l.Take())
		marker(t, s, "bob", "a", j.Seq, 2)
		again := l.joined("a", "ann", "bob")
		apply(t, s, l.Take())
		marker(t, s, "bob", "a", again.Seq, 0)
	})

	t.Run("ReadMovedNeverBackAndOnlyForMembers", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		l.created("a", "ann")
		var sent []chat.Event
		for i := range 6 {
			sent = append(sent, l.sent("a", "bob", fmt.Sprint("m", i)))
		}
		apply(t, s, l.Take())
		marker(t, s, "ann", "a", 1, 6)
		l.read("a", "ann", sent[3].Seq)
		apply(t, s, l.Take())
		marker(t, s, "ann", "a", sent[3].Seq, 2)
		l.read("a", "ann", sent[1].Seq) // backwards: ignored
		apply(t, s, l.Take())
		marker(t, s, "ann", "a", sent[3].Seq, 2)
		l.read("a", "bob", sent[5].Seq) // bob is no member: ignored
		apply(t, s, l.Take())
		markers(t, s, "bob", []string{"a"}, map[string]reads.Marker{})
		// A target beyond the event itself is read only up to the event.
		r := l.read("a", "ann", 1_000_000)
		apply(t, s, l.Take())
		marker(t, s, "ann", "a", r.Seq, 0)
		l.sent("a", "bob", "new")
		apply(t, s, l.Take())
		marker(t, s, "ann", "a", r.Seq, 1)
	})

	t.Run("OwnMessagesAreRead", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		l.created("a", "ann")
		l.joined("a", "bob", "bob")
		l.sent("a", "bob", "1")
		l.sent("a", "bob", "2")
		m := l.sent("a", "ann", "mine: I read what came before")
		l.sent("a", "ann", "mine again")
		apply(t, s, l.Take())
		marker(t, s, "ann", "a", m.Seq+1, 0)
		marker(t, s, "bob", "a", m.Seq-1, 2)
	})

	t.Run("DeletedMessagesAreNotUnread", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		l.created("a", "ann")
		l.joined("a", "bob", "bob")
		m1 := l.sent("a", "bob", "1")
		m2 := l.sent("a", "bob", "2")
		m3 := l.sent("a", "bob", "3")
		apply(t, s, l.Take())
		marker(t, s, "ann", "a", 1, 3)
		l.del("a", "bob", m2.Seq)
		l.del("a", "ann", m3.Seq) // not ann's: ignored
		l.del("a", "bob", 999)    // no such message
		apply(t, s, l.Take())
		marker(t, s, "ann", "a", 1, 2)
		l.del("a", "bob", m2.Seq) // twice
		l.del("a", "bob", m1.Seq)
		apply(t, s, l.Take())
		marker(t, s, "ann", "a", 1, 1)
		equalMessages(t, dump(t, s).Messages, []reads.Message{{Room: "a", Seq: m3.Seq, Author: "bob"}})
	})

	t.Run("LeftEndsMarkerAndRejoinStartsAtJoin", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		l.created("a", "ann")
		l.created("b", "bob")
		l.joined("b", "ann", "ann")
		l.sent("a", "bob", "1")
		apply(t, s, l.Take())
		if got := len(all(t, s, "ann", nil, true)); got != 2 {
			t.Fatalf("ann has %d markers, want 2", got)
		}
		l.left("a", "ann", "ann")
		l.left("a", "ann", "ann")
		l.sent("a", "bob", "2")
		l.read("a", "ann", l.Seq()) // no longer a member: ignored
		apply(t, s, l.Take())
		markers(t, s, "ann", []string{"a", "b", "c"}, map[string]reads.Marker{"b": {Room: "b", User: "ann", Read: 3}})
		j := l.joined("a", "ann", "ann")
		l.sent("a", "bob", "3")
		apply(t, s, l.Take())
		all(t, s, "ann", []reads.Marker{{Room: "a", User: "ann", Read: j.Seq, Unread: 1}, {Room: "b", User: "ann", Read: 3}})
	})

	t.Run("UnreadCappedAtMaxUnread", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		c := l.created("big", "ann")
		for i := range reads.MaxUnread + 5 {
			l.sent("big", "bob", fmt.Sprint(i))
		}
		apply(t, s, l.Take())
		marker(t, s, "ann", "big", c.Seq, reads.MaxUnread)
		l.read("big", "ann", c.Seq+10)
		apply(t, s, l.Take())
		marker(t, s, "ann", "big", c.Seq+10, reads.MaxUnread-5)
	})

	t.Run("LargeBatchesCountEveryMessage", func(t *testing.T) {
		// Batches past the adapters' multi-row statements (64 rows), with
		// sizes that are not powers of two.
		s := fresh(t)
		var l eventLog
		c := l.created("big", "ann")
		apply(t, s, l.Take())
		want := 0
		for _, n := range []int{1, 63, 65, 300} {
			for i := range n {
				l.sent("big", "bob", fmt.Sprint(n, "-", i))
			}
			apply(t, s, l.Take())
			want += n
			marker(t, s, "ann", "big", c.Seq, want)
		}
	})

	t.Run("InvalidRoomIDsAndEventTypesOnlyAdvancePosition", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		l.created("a", "ann")
		apply(t, s, l.Take())
		before := dump(t, s)
		for _, room := range []string{"A", "a.b", "a b", "a*", "a>", "", strings.Repeat("x", 65)} {
			l.Add(chat.Event{Type: chat.RoomCreated, Room: room, Author: "ann", Name: "bad"})
			l.sent(room, "bob", "x")
			l.Add(chat.Event{Type: chat.MemberJoined, Room: room, Author: "bob", User: "bob"})
		}
		l.Add(chat.Event{Type: chat.Invalid, Room: "a"})
		l.Add(chat.Event{Type: "bogus.type", Room: "a", Author: "bob", Text: "x"})
		l.sent("a", "bob", "")                                                           // no text
		l.Add(chat.Event{Type: chat.MemberJoined, Room: "a", Author: "bob"})             // no user
		l.Add(chat.Event{Type: chat.ReadMoved, Room: "a", Author: "ann"})                // no target
		l.Add(chat.Event{Type: chat.MemberLeft, Room: "a", Author: "ann", User: "an n"}) // bad user id
		all0 := l.Take()
		apply(t, s, all0)
		position(t, s, all0[len(all0)-1].Seq)
		equalSnap(t, dump(t, s), before)
		apply(t, s, nil)
		position(t, s, all0[len(all0)-1].Seq)
	})

	var scripted eventLog
	script(&scripted)
	projectiontest.Idempotence(t, projectiontest.Case[reads.Store, reads.Snapshot]{
		New:       v.New,
		Reference: func() reads.Store { return reads.NewMemory() },
		Dump:      dump,
		Equal:     equalSnap,
		Events:    scripted.Take(),
	})

	t.Run("PositionAndDataPersistAcrossReopen", func(t *testing.T) {
		t.Parallel()
		o := newDB(t)
		s := o("reads_v1")
		var l eventLog
		script(&l)
		every := l.Take()
		apply(t, s, every)
		before := dump(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, o, "reads_v1")
		position(t, s, every[len(every)-1].Seq)
		equalSnap(t, dump(t, s), before)
		apply(t, s, every) // redelivered after the restart
		equalSnap(t, dump(t, s), before)
		r := l.read("a", "bob", l.Seq())
		apply(t, s, l.Take())
		marker(t, s, "bob", "a", r.Seq-1, 0)
	})

	t.Run("VersionsIndependentAndDropRemovesOne", func(t *testing.T) {
		t.Parallel()
		o := newDB(t)
		v1, v2 := open(t, o, "reads_v1"), open(t, o, "reads_v2")
		var l eventLog
		l.created("a", "ann")
		l.sent("a", "bob", "x")
		every := l.Take()
		apply(t, v1, every)
		apply(t, v2, every[:1])
		marker(t, v1, "ann", "a", 1, 1)
		marker(t, v2, "ann", "a", 1, 0)
		position(t, v1, 2)
		position(t, v2, 1)
		want2 := dump(t, v2)

		if err := v1.Drop(context.Background()); err != nil {
			t.Fatalf("drop: %v", err)
		}
		equalSnap(t, dump(t, v2), want2)
		position(t, v2, 1)
		// A dropped version reopens empty, at position 0, and can be rebuilt.
		_ = v1.Close()
		v1 = open(t, o, "reads_v1")
		equalSnap(t, dump(t, v1), reads.Snapshot{})
		position(t, v1, 0)
		apply(t, v1, every)
		marker(t, v1, "ann", "a", 1, 1)
	})
}

// script appends a small log with every rule in play over three rooms.
func script(l *eventLog) {
	l.created("a", "ann")
	l.sent("a", "ann", "hi")
	l.joined("a", "ann", "bob")
	b1 := l.sent("a", "bob", "hello")
	l.created("b", "bob")
	l.sent("b", "cat", "not a member")
	l.joined("b", "cat", "cat")
	l.Add(chat.Event{Type: chat.Invalid, Room: "a"})
	c1 := l.sent("b", "cat", "now a member")
	l.read("a", "ann", b1.Seq)
	l.read("a", "ann", 1) // backwards
	l.sent("a", "bob", "more")
	l.del("b", "bob", c1.Seq) // not bob's
	l.del("a", "bob", b1.Seq)
	l.joined("a", "cat", "cat")
	l.sent("a", "cat", "cat here")
	l.left("a", "ann", "ann")
	l.read("a", "ann", l.Seq()) // no longer a member
	l.sent("A", "ann", "bad room")
	l.joined("a", "ann", "ann")
	l.read("b", "bob", 1_000_000)
	l.sent("b", "cat", "after bob read")
	l.Add(chat.Event{Type: chat.ReactionAdded, Room: "a", Author: "bob", Target: b1.Seq, Emoji: "👍"})
	l.Add(chat.Event{Type: chat.MessageEdited, Room: "b", Author: "cat", Target: c1.Seq, Text: "edited"})
	l.sent("c", "dan", "a room nobody created")
	l.joined("c", "dan", "dan")
	l.sent("c", "eve", "to dan")
}

// eventLog builds the suite's events on a projectiontest.Log.
type eventLog struct{ projectiontest.Log }

func (l *eventLog) created(room, author string) chat.Event {
	return l.Add(chat.Event{Type: chat.RoomCreated, Room: room, Author: author, Name: room})
}

func (l *eventLog) joined(room, author, user string) chat.Event {
	return l.Add(chat.Event{Type: chat.MemberJoined, Room: room, Author: author, User: user})
}

func (l *eventLog) left(room, author, user string) chat.Event {
	return l.Add(chat.Event{Type: chat.MemberLeft, Room: room, Author: author, User: user})
}

// sent adds a message.sent with the ID "e<seq>", as every other event gets.
func (l *eventLog) sent(room, author, text string) chat.Event {
	return l.Add(chat.Event{Type: chat.MessageSent, Room: room, Author: author, Text: text, ID: fmt.Sprintf("e%d", l.Seq()+1)})
}

func (l *eventLog) del(room, author string, target uint64) chat.Event {
	return l.Add(chat.Event{Type: chat.MessageDeleted, Room: room, Author: author, Target: target})
}

func (l *eventLog) read(room, author string, target uint64) chat.Event {
	return l.Add(chat.Event{Type: chat.ReadMoved, Room: room, Author: author, Target: target})
}

// apply and position are projectiontest's, shared by every read model's suite.
var (
	apply    = projectiontest.Apply
	position = projectiontest.Position
)

func markers(t *testing.T, s reads.Store, user string, rooms []string, want map[string]reads.Marker) {
	t.Helper()
	got, err := s.Markers(context.Background(), user, rooms)
	if err != nil {
		t.Fatalf("markers of %s in %v: %v", user, rooms, err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("markers of %s in %v:\n got %+v\nwant %+v", user, rooms, got, want)
	}
}

// marker checks user's marker in room, through Markers and through All.
func marker(t *testing.T, s reads.Store, user, room string, read uint64, unread int) {
	t.Helper()
	want := reads.Marker{Room: room, User: user, Read: read, Unread: unread}
	markers(t, s, user, []string{room}, map[string]reads.Marker{room: want})
	for _, m := range all(t, s, user, nil, true) {
		if m.Room == room {
			if m != want {
				t.Fatalf("All of %s: %+v, want %+v", user, m, want)
			}
			return
		}
	}
	t.Fatalf("All of %s lacks room %s", user, room)
}

// all returns user's markers, and unless noCheck is given checks them
// against want.
func all(t *testing.T, s reads.Store, user string, want []reads.Marker, noCheck ...bool) []reads.Marker {
	t.Helper()
	got, err := s.All(context.Background(), user)
	if err != nil {
		t.Fatalf("all markers of %s: %v", user, err)
	}
	if len(noCheck) == 0 && !(len(got) == 0 && len(want) == 0) && !reflect.DeepEqual(got, want) {
		t.Fatalf("all markers of %s:\n got %+v\nwant %+v", user, got, want)
	}
	return got
}

func dump(t *testing.T, s reads.Store) reads.Snapshot {
	t.Helper()
	snap, err := s.Dump(context.Background())
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return snap
}

func equalMessages(t *testing.T, got, want []reads.Message) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("messages differ:\n got %+v\nwant %+v", got, want)
	}
}

func equalSnap(t *testing.T, got, want reads.Snapshot) {
	t.Helper()
	if !(len(got.Markers) == 0 && len(want.Markers) == 0) && !reflect.DeepEqual(got.Markers, want.Markers) {
		t.Fatalf("markers differ:\n got %+v\nwant %+v", got.Markers, want.Markers)
	}
	equalMessages(t, got.Messages, want.Messages)
}
