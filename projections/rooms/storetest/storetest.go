// Package storetest is the contract suite every rooms.Store must pass: the
// SQLite and MongoDB adapters run it from their tests, and so does the
// in-memory reference model.
//
// It is for tests only: no shipped binary may import it.
package storetest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/projectiontest"
	"github.com/jetchat/jetchat/projections/rooms"
)

// Open opens the named version of a store ("rooms_v1") in the database that
// newDB gave the subtest. Opening a name again after its store was closed
// must reopen the same data, as a restarted process would.
type Open = func(name string) rooms.Store

// Run runs the contract suite. newDB gives each subtest a fresh, empty
// database (a file, a database name) and returns how to open stores in it;
// Run closes every store it opens.
func Run(t *testing.T, newDB func(t *testing.T) Open) {
	v := projectiontest.Versions[rooms.Store]{NewDB: newDB, First: "rooms_v1"}
	open, fresh := v.Open, v.Fresh

	t.Run("RoomCreatedMakesRoomWithCreatorAsMember", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		pub := l.created("a", "ann", "Room A", false)
		// A room.created without a name (the node always names one) is named
		// after its id.
		priv := l.Add(chat.Event{Type: chat.RoomCreated, Room: "b", Author: "bob", Private: true})
		apply(t, s, l.Take())
		wantA := rooms.Room{ID: "a", Name: "Room A", Creator: "ann", Created: pub.Time, Members: 1, LastActivity: pub.Time, Head: pub.Seq}
		wantB := rooms.Room{ID: "b", Name: "b", Private: true, Creator: "bob", Created: priv.Time, Members: 1, LastActivity: priv.Time, Head: priv.Seq}
		equalRoom(t, get(t, s, "a"), wantA)
		equalRoom(t, get(t, s, "b"), wantB)
		member(t, s, "a", "ann", true)
		member(t, s, "a", "bob", false)
		member(t, s, "b", "bob", true)
		equalSnap(t, dump(t, s), rooms.Snapshot{
			Rooms:   []rooms.Room{wantA, wantB},
			Members: []rooms.Member{{Room: "a", User: "ann"}, {Room: "b", User: "bob"}},
		})
	})

	t.Run("UnknownRoomIsAbsent", func(t *testing.T) {
		s := fresh(t)
		if _, ok, err := s.Get(context.Background(), "nowhere"); err != nil || ok {
			t.Fatalf("get of an unknown room: ok %v, err %v", ok, err)
		}
		member(t, s, "nowhere", "ann", false)
		equalRooms(t, list(t, s, "ann", 0), nil)
	})

	t.Run("EventsOfRoomWithoutRoomCreatedIgnored", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		l.joined("a", "ann", "ann")
		l.sent("a", "ann", "before the room exists")
		l.read("a", "ann", 2)
		apply(t, s, l.Take())
		position(t, s, 3)
		equalSnap(t, dump(t, s), rooms.Snapshot{})
		c := l.created("a", "ann", "A", false)
		apply(t, s, l.Take())
		equalRoom(t, get(t, s, "a"), rooms.Room{ID: "a", Name: "A", Creator: "ann", Created: c.Time, Members: 1, LastActivity: c.Time, Head: c.Seq})
	})

	t.Run("SecondRoomCreatedOnlyCountsAsEvent", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		c := l.created("a", "ann", "A", false)
		l.left("a", "ann", "ann")
		again := l.created("a", "bob", "Taken", true)
		apply(t, s, l.Take())
		equalRoom(t, get(t, s, "a"), rooms.Room{ID: "a", Name: "A", Creator: "ann", Created: c.Time, Members: 0, LastActivity: again.Time, Head: again.Seq})
		member(t, s, "a", "bob", false)
		member(t, s, "a", "ann", false)
	})

	t.Run("MembersCountedAsSet", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		l.created("a", "ann", "A", false)
		l.joined("a", "bob", "bob")
		l.joined("a", "bob", "bob") // twice: once in the set
		apply(t, s, l.Take())
		l.joined("a", "cat", "cat")
		l.left("a", "dan", "dan") // never joined: nothing
		l.joined("a", "eve", "eve")
		l.left("a", "eve", "eve")
		apply(t, s, l.Take())
		r := get(t, s, "a")
		if r.Members != 3 {
			t.Fatalf("members %d, want 3 (ann, bob, cat)", r.Members)
		}
		for user, want := range map[string]bool{"ann": true, "bob": true, "cat": true, "dan": false, "eve": false} {
			member(t, s, "a", user, want)
		}
		l.left("a", "ann", "ann")
		l.left("a", "ann", "ann")
		apply(t, s, l.Take())
		if r := get(t, s, "a"); r.Members != 2 {
			t.Fatalf("members %d after ann left, want 2", r.Members)
		}
		equalMembers(t, dump(t, s).Members, []rooms.Member{{Room: "a", User: "bob"}, {Room: "a", User: "cat"}})
	})

	t.Run("HeadAndLastActivity", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		l.created("a", "ann", "A", false)
		l.created("b", "bob", "B", false)
		m := l.sent("a", "ann", "hi")
		l.sent("b", "bob", "other room")
		r := l.react("a", "bob", m.Seq, "👍")
		apply(t, s, l.Take())
		got := get(t, s, "a")
		if got.Head != r.Seq || !got.LastActivity.Equal(r.Time) {
			t.Fatalf("after a reaction: head %d activity %v, want %d %v", got.Head, got.LastActivity, r.Seq, r.Time)
		}
		rd := l.read("a", "bob", m.Seq) // moves the head, not the activity
		apply(t, s, l.Take())
		got = get(t, s, "a")
		if got.Head != rd.Seq || !got.LastActivity.Equal(r.Time) {
			t.Fatalf("after read.moved: head %d activity %v, want %d %v", got.Head, got.LastActivity, rd.Seq, r.Time)
		}
		ed := l.edit("a", "ann", 999, "unknown target") // still an event of the room
		apply(t, s, l.Take())
		got = get(t, s, "a")
		if got.Head != ed.Seq || !got.LastActivity.Equal(ed.Time) {
			t.Fatalf("after an edit of nothing: head %d activity %v, want %d %v", got.Head, got.LastActivity, ed.Seq, ed.Time)
		}
	})

	t.Run("PreviewIsLastMessageSent", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		l.created("a", "ann", "A", false)
		apply(t, s, l.Take())
		equalPreview(t, get(t, s, "a").Last, nil)
		m1 := l.sent("a", "ann", "first")
		apply(t, s, l.Take())
		equalPreview(t, get(t, s, "a").Last, preview(m1))
		m2 := l.sent("a", "bob", "second")
		l.edit("a", "ann", m1.Seq, "first, edited") // not the last: no effect
		l.del("a", "ann", m1.Seq)
		apply(t, s, l.Take())
		equalPreview(t, get(t, s, "a").Last, preview(m2))
		l.edit("a", "ann", m2.Seq, "not ann's")
		l.del("a", "ann", m2.Seq)
		apply(t, s, l.Take())
		equalPreview(t, get(t, s, "a").Last, preview(m2))
		l.edit("a", "bob", m2.Seq, "second, edited")
		apply(t, s, l.Take())
		want := preview(m2)
		want.Text = "second, edited"
		equalPreview(t, get(t, s, "a").Last, want)
		l.del("a", "bob", m2.Seq)
		l.edit("a", "bob", m2.Seq, "after delete") // ignored
		apply(t, s, l.Take())
		want.Text, want.Deleted = "", true
		equalPreview(t, get(t, s, "a").Last, want)
		m3 := l.sent("a", "cat", "third")
		apply(t, s, l.Take())
		equalPreview(t, get(t, s, "a").Last, preview(m3))
	})

	t.Run("PreviewCutAt140Runes", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		l.created("a", "ann", "A", false)
		exact := strings.Repeat("é", rooms.PreviewRunes)
		m := l.sent("a", "ann", exact)
		apply(t, s, l.Take())
		equalPreview(t, get(t, s, "a").Last, &rooms.Preview{Seq: m.Seq, Author: "ann", Text: exact, Time: m.Time})
		long := strings.Repeat("ü", 100) + strings.Repeat("字", 100)
		m = l.sent("a", "ann", long)
		apply(t, s, l.Take())
		want := strings.Repeat("ü", 100) + strings.Repeat("字", rooms.PreviewRunes-101) + "…"
		equalPreview(t, get(t, s, "a").Last, &rooms.Preview{Seq: m.Seq, Author: "ann", Text: want, Time: m.Time})
		l.edit("a", "ann", m.Seq, strings.Repeat("x", 300))
		apply(t, s, l.Take())
		want = strings.Repeat("x", rooms.PreviewRunes-1) + "…"
		equalPreview(t, get(t, s, "a").Last, &rooms.Preview{Seq: m.Seq, Author: "ann", Text: want, Time: m.Time})
	})

	t.Run("ListShowsPublicRoomsAndOwnPrivateOnes", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		l.created("pub1", "ann", "P1", false)
		l.created("priv-ann", "ann", "Ann's", true)
		l.created("priv-bob", "bob", "Bob's", true)
		l.created("pub2", "bob", "P2", false)
		l.joined("priv-bob", "bob", "cat") // an invite
		apply(t, s, l.Take())
		ids := func(user string) []string { return roomIDs(list(t, s, user, 0)) }
		equalIDs(t, "ann", ids("ann"), []string{"pub2", "priv-ann", "pub1"})
		equalIDs(t, "bob", ids("bob"), []string{"priv-bob", "pub2", "pub1"})
		equalIDs(t, "cat", ids("cat"), []string{"priv-bob", "pub2", "pub1"})
		equalIDs(t, "dan", ids("dan"), []string{"pub2", "pub1"})
		// Activity reorders; leaving a private room hides it; joining a public
		// one changes nothing for visibility.
		l.left("priv-bob", "cat", "cat")
		l.joined("pub2", "dan", "dan")
		l.sent("pub1", "ann", "bump")
		apply(t, s, l.Take())
		equalIDs(t, "cat", ids("cat"), []string{"pub1", "pub2"})
		equalIDs(t, "bob", ids("bob"), []string{"pub1", "pub2", "priv-bob"})
		equalIDs(t, "dan", ids("dan"), []string{"pub1", "pub2"})
		// The rooms listed are whole.
		got := list(t, s, "ann", 0)
		for _, r := range got {
			equalRoom(t, r, get(t, s, r.ID))
		}
	})

	t.Run("ListTiesByIDAndLimit", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		at := projectiontest.Epoch.Add(time.Hour)
		for _, id := range []string{"c", "a", "d", "b"} {
			l.Add(chat.Event{Type: chat.RoomCreated, Room: id, Author: "ann", Name: id, Time: at})
		}
		l.Add(chat.Event{Type: chat.RoomCreated, Room: "e", Author: "ann", Name: "e", Time: at.Add(-time.Nanosecond)})
		l.Add(chat.Event{Type: chat.RoomCreated, Room: "f", Author: "ann", Name: "f", Time: at.Add(time.Nanosecond)})
		apply(t, s, l.Take())
		equalIDs(t, "all", roomIDs(list(t, s, "bob", 0)), []string{"f", "a", "b", "c", "d", "e"})
		equalIDs(t, "limit 3", roomIDs(list(t, s, "bob", 3)), []string{"f", "a", "b"})
		equalIDs(t, "limit 1", roomIDs(list(t, s, "ann", 1)), []string{"f"})
	})

	t.Run("ListLimitDefaultsTo100AndCapsAt500", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		n := rooms.MaxLimit + 3
		for i := range n {
			l.created(fmt.Sprintf("r%03d", i), "ann", "R", i%2 == 1)
		}
		apply(t, s, l.Take())
		for _, c := range []struct {
			user  string
			limit int
			want  int
		}{
			{"ann", 0, rooms.DefaultLimit},
			{"ann", -1, rooms.DefaultLimit},
			{"ann", 7, 7},
			{"ann", 10000, rooms.MaxLimit},
			{"bob", 10000, (n + 1) / 2},
		} {
			got := list(t, s, c.user, c.limit)
			if len(got) != c.want {
				t.Errorf("list %s limit %d: %d rooms, want %d", c.user, c.limit, len(got), c.want)
				continue
			}
			if got[0].ID != fmt.Sprintf("r%03d", n-1) && c.user == "ann" {
				t.Errorf("list %s limit %d: first %s, want the newest", c.user, c.limit, got[0].ID)
			}
			if !slices.IsSortedFunc(got, rooms.CompareList) {
				t.Errorf("list %s limit %d: not newest first", c.user, c.limit)
			}
		}
	})

	t.Run("InvalidRoomIDsAndEventTypesOnlyAdvancePosition", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		c := l.created("a", "ann", "A", false)
		apply(t, s, l.Take())
		before := dump(t, s)
		for _, room := range []string{"A", "a.b", "a b", "a*", "a>", "", strings.Repeat("x", 65), "é"} {
			l.Add(chat.Event{Type: chat.RoomCreated, Room: room, Author: "ann", Name: "bad"})
			l.sent(room, "ann", "x")
		}
		l.Add(chat.Event{Type: chat.Invalid, Room: "a"})
		l.Add(chat.Event{Type: "bogus.type", Room: "a", Author: "ann", Text: "x"})
		l.sent("a", "ann", "")                                                              // no text
		l.Add(chat.Event{Type: chat.MemberJoined, Room: "a", Author: "ann"})                // no user
		l.Add(chat.Event{Type: chat.MessageDeleted, Room: "a", Author: "ann"})              // no target
		l.Add(chat.Event{Type: chat.MemberJoined, Room: "a", Author: "ann", User: "b o b"}) // bad user id
		all := l.Take()
		apply(t, s, all)
		position(t, s, all[len(all)-1].Seq)
		equalSnap(t, dump(t, s), before)
		if r := get(t, s, "a"); r.Head != c.Seq {
			t.Fatalf("head %d, want %d: an invalid event reached the room", r.Head, c.Seq)
		}
		apply(t, s, nil)
		position(t, s, all[len(all)-1].Seq)
	})

	var scripted eventLog
	script(&scripted)
	projectiontest.Idempotence(t, projectiontest.Case[rooms.Store, rooms.Snapshot]{
		New:       v.New,
		Reference: func() rooms.Store { return rooms.NewMemory() },
		Dump:      dump,
		Equal:     equalSnap,
		Events:    scripted.Take(),
	})

	t.Run("PositionAndDataPersistAcrossReopen", func(t *testing.T) {
		t.Parallel()
		o := newDB(t)
		s := o("rooms_v1")
		var l eventLog
		script(&l)
		all := l.Take()
		apply(t, s, all)
		before := dump(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, o, "rooms_v1")
		position(t, s, all[len(all)-1].Seq)
		equalSnap(t, dump(t, s), before)
		apply(t, s, all) // redelivered after the restart
		equalSnap(t, dump(t, s), before)
		m := l.sent("a", "ann", "after restart")
		apply(t, s, l.Take())
		if got := get(t, s, "a"); got.Last == nil || got.Last.Seq != m.Seq || got.Head != m.Seq {
			t.Fatalf("after restart: %+v, want last and head %d", got, m.Seq)
		}
	})

	t.Run("VersionsIndependentAndDropRemovesOne", func(t *testing.T) {
		t.Parallel()
		o := newDB(t)
		v1, v2 := open(t, o, "rooms_v1"), open(t, o, "rooms_v2")
		var l eventLog
		l.created("a", "ann", "A", false)
		l.joined("a", "bob", "bob")
		all := l.Take()
		apply(t, v1, all)
		apply(t, v2, all[:1])
		if get(t, v1, "a").Members != 2 || get(t, v2, "a").Members != 1 {
			t.Fatalf("versions share data: v1 %+v, v2 %+v", get(t, v1, "a"), get(t, v2, "a"))
		}
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
		v1 = open(t, o, "rooms_v1")
		equalSnap(t, dump(t, v1), rooms.Snapshot{})
		position(t, v1, 0)
		apply(t, v1, all)
		if get(t, v1, "a").Members != 2 {
			t.Fatalf("rebuilt after drop: %+v", get(t, v1, "a"))
		}
	})
}

// script appends a small log with every rule in play over four rooms.
func script(l *eventLog) {
	l.sent("a", "ann", "before the room")
	l.created("a", "ann", "Room A", false)
	l.created("p", "bob", "Private", true)
	a1 := l.sent("a", "ann", "first")
	l.joined("a", "bob", "bob")
	l.joined("p", "bob", "cat")
	p1 := l.sent("p", "bob", strings.Repeat("long ", 40))
	l.Add(chat.Event{Type: chat.Invalid, Room: "a"})
	l.edit("a", "ann", a1.Seq, "first, edited")
	l.read("a", "bob", a1.Seq)
	l.joined("a", "cat", "cat")
	l.joined("a", "cat", "cat")
	l.left("p", "cat", "cat")
	l.created("c", "cat", "C", false)
	l.react("a", "bob", a1.Seq, "👍")
	a2 := l.sent("a", "bob", "second")
	l.sent("A", "ann", "bad room")
	l.del("a", "ann", a2.Seq) // not ann's
	l.del("a", "bob", a2.Seq)
	l.edit("a", "bob", a2.Seq, "after delete")
	l.edit("p", "bob", p1.Seq, "short now")
	l.left("a", "ann", "ann")
	l.joined("p", "bob", "dan")
	l.created("a", "eve", "again", true)
	c1 := l.sent("c", "cat", "in c")
	l.read("c", "cat", c1.Seq)
	l.joined("z", "zed", "zed") // no such room
	l.left("c", "cat", "cat")
	l.joined("c", "ann", "ann")
}

// eventLog builds the suite's events on a projectiontest.Log.
type eventLog struct{ projectiontest.Log }

func (l *eventLog) created(room, author, name string, private bool) chat.Event {
	return l.Add(chat.Event{Type: chat.RoomCreated, Room: room, Author: author, Name: name, Private: private})
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

func (l *eventLog) edit(room, author string, target uint64, text string) chat.Event {
	return l.Add(chat.Event{Type: chat.MessageEdited, Room: room, Author: author, Target: target, Text: text})
}

func (l *eventLog) del(room, author string, target uint64) chat.Event {
	return l.Add(chat.Event{Type: chat.MessageDeleted, Room: room, Author: author, Target: target})
}

func (l *eventLog) react(room, author string, target uint64, emoji string) chat.Event {
	return l.Add(chat.Event{Type: chat.ReactionAdded, Room: room, Author: author, Target: target, Emoji: emoji})
}

func (l *eventLog) read(room, author string, target uint64) chat.Event {
	return l.Add(chat.Event{Type: chat.ReadMoved, Room: room, Author: author, Target: target})
}

// preview is the preview a message.sent event makes (short texts only).
func preview(e chat.Event) *rooms.Preview {
	return &rooms.Preview{Seq: e.Seq, Author: e.Author, Text: e.Text, Time: e.Time}
}

// apply and position are projectiontest's, shared by every read model's suite.
var (
	apply    = projectiontest.Apply
	position = projectiontest.Position
)

func get(t *testing.T, s rooms.Store, id string) rooms.Room {
	t.Helper()
	r, ok, err := s.Get(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("get %s: ok %v, err %v", id, ok, err)
	}
	return r
}

func list(t *testing.T, s rooms.Store, user string, limit int) []rooms.Room {
	t.Helper()
	rs, err := s.List(context.Background(), user, limit)
	if err != nil {
		t.Fatalf("list %s %d: %v", user, limit, err)
	}
	return rs
}

func member(t *testing.T, s rooms.Store, room, user string, want bool) {
	t.Helper()
	got, err := s.IsMember(context.Background(), room, user)
	if err != nil || got != want {
		t.Fatalf("is %s a member of %s: %v (%v), want %v", user, room, got, err, want)
	}
}

func dump(t *testing.T, s rooms.Store) rooms.Snapshot {
	t.Helper()
	snap, err := s.Dump(context.Background())
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return snap
}

func roomIDs(rs []rooms.Room) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	return ids
}

func equalIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: rooms %v, want %v", what, got, want)
	}
}

// equalRoom compares rooms exactly: times to the nanosecond, in UTC.
func equalRoom(t *testing.T, got, want rooms.Room) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("room differs:\n got %s\nwant %s", showRoom(got), showRoom(want))
	}
}

func equalPreview(t *testing.T, got, want *rooms.Preview) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("preview differs:\n got %+v\nwant %+v", got, want)
	}
}

func equalRooms(t *testing.T, got, want []rooms.Room) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rooms differ:\n got %s\nwant %s", showRooms(got), showRooms(want))
	}
}

func equalMembers(t *testing.T, got, want []rooms.Member) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("members differ:\n got %v\nwant %v", got, want)
	}
}

func equalSnap(t *testing.T, got, want rooms.Snapshot) {
	t.Helper()
	equalRooms(t, got.Rooms, want.Rooms)
	equalMembers(t, got.Members, want.Members)
}

func showRoom(r rooms.Room) string {
	s := fmt.Sprintf("%+v", r)
	if r.Last != nil {
		s += fmt.Sprintf(" last=%+v", *r.Last)
	}
	return s
}

func showRooms(rs []rooms.Room) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString("\n  " + showRoom(r))
	}
	return b.String()
}
