// Package storetest is the contract suite every history.Store must pass: the
// SQLite and MongoDB adapters run it from their tests, and so does the
// in-memory reference model.
//
// It is for tests only: no shipped binary may import it.
package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/history"
	"github.com/jetchat/jetchat/projections/projectiontest"
)

// Open opens the named version of a store ("history_v1") in the database that
// newDB gave the subtest. Opening a name again after its store was closed
// must reopen the same data, as a restarted process would.
type Open = func(name string) history.Store

// Run runs the contract suite. newDB gives each subtest a fresh, empty
// database (a file, a database name) and returns how to open stores in it;
// Run closes every store it opens.
func Run(t *testing.T, newDB func(t *testing.T) Open) {
	v := projectiontest.Versions[history.Store]{NewDB: newDB, First: "history_v1"}
	open, fresh := v.Open, v.Fresh

	t.Run("SentMessagesAscendingBySeqPerRoom", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		a1 := l.sent("a", "ann", "m1", "hello")
		b1 := l.sent("b", "bob", "m1", "other room")
		a2 := l.sent("a", "bob", "m1", "hi ann")
		apply(t, s, l.Take())
		want := []history.Message{msg(a1), msg(a2)}
		equal(t, messages(t, s, "a", history.Page{}), want)
		equal(t, dump(t, s), []history.Message{msg(a1), msg(a2), msg(b1)})
	})

	t.Run("EmptyRoomHasNoMessages", func(t *testing.T) {
		s := fresh(t)
		equal(t, messages(t, s, "nobody-here", history.Page{}), nil)
		var l eventLog
		l.sent("a", "ann", "m1", "x")
		apply(t, s, l.Take())
		equal(t, messages(t, s, "b", history.Page{}), nil)
		equal(t, messages(t, s, "a", history.Page{Before: 1}), nil)
		equal(t, messages(t, s, "a", history.Page{After: 1}), nil)
	})

	t.Run("PagesBeforeAfterAndLatest", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		var want []history.Message // room a: seqs 1,3,5,...,19 interleaved with room b
		for i := range 10 {
			want = append(want, msg(l.sent("a", "ann", fmt.Sprintf("a%d", i), fmt.Sprintf("a %d", i))))
			l.sent("b", "bob", fmt.Sprintf("b%d", i), fmt.Sprintf("b %d", i))
		}
		apply(t, s, l.Take())
		seqs := func(ms []history.Message) []uint64 {
			var out []uint64
			for _, m := range ms {
				out = append(out, m.Seq)
			}
			return out
		}
		for _, c := range []struct {
			name string
			p    history.Page
			want []uint64
		}{
			{"Latest", history.Page{Limit: 3}, []uint64{15, 17, 19}},
			{"LatestAll", history.Page{}, seqs(want)},
			{"BeforeNearest", history.Page{Before: 9, Limit: 3}, []uint64{3, 5, 7}},
			{"BeforeOtherRoomsSeq", history.Page{Before: 8, Limit: 2}, []uint64{5, 7}},
			{"BeforeShort", history.Page{Before: 5, Limit: 10}, []uint64{1, 3}},
			{"BeforeFirst", history.Page{Before: 1, Limit: 10}, nil},
			{"AfterNearest", history.Page{After: 9, Limit: 3}, []uint64{11, 13, 15}},
			{"AfterOtherRoomsSeq", history.Page{After: 10, Limit: 2}, []uint64{11, 13}},
			{"AfterShort", history.Page{After: 15, Limit: 10}, []uint64{17, 19}},
			{"AfterLast", history.Page{After: 19}, nil},
		} {
			got := messages(t, s, "a", c.p)
			if !slices.Equal(seqs(got), c.want) {
				t.Errorf("%s: %+v gave seqs %v, want %v", c.name, c.p, seqs(got), c.want)
			}
		}
		// Paging back from the latest page walks the whole room once.
		var walked []history.Message
		for p := (history.Page{Limit: 4}); ; {
			page := messages(t, s, "a", p)
			if len(page) == 0 {
				break
			}
			walked = append(page, walked...)
			p.Before = page[0].Seq
		}
		equal(t, walked, want)
	})

	t.Run("LimitDefaultsTo50AndCapsAt200", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		for i := range history.MaxLimit + 5 {
			l.sent("a", "ann", fmt.Sprintf("m%d", i), "x")
		}
		apply(t, s, l.Take())
		n := uint64(history.MaxLimit + 5)
		for _, c := range []struct {
			p          history.Page
			len        int
			first, end uint64
		}{
			{history.Page{}, history.DefaultLimit, n - 49, n},
			{history.Page{Limit: -1}, history.DefaultLimit, n - 49, n},
			{history.Page{Limit: 1000}, history.MaxLimit, 6, n},
			{history.Page{After: 1, Limit: 1000}, history.MaxLimit, 2, 201},
			{history.Page{Before: n, Limit: 1000}, history.MaxLimit, 5, n - 1},
		} {
			got := messages(t, s, "a", c.p)
			if len(got) != c.len || got[0].Seq != c.first || got[len(got)-1].Seq != c.end {
				t.Errorf("%+v: got %d messages %d..%d, want %d %d..%d", c.p, len(got), got[0].Seq, got[len(got)-1].Seq, c.len, c.first, c.end)
			}
		}
	})

	t.Run("ErrBadRequestForBeforeAndAfter", func(t *testing.T) {
		s := fresh(t)
		_, err := s.Messages(context.Background(), "a", history.Page{Before: 5, After: 1})
		if chat.ErrorCode(err) != chat.ErrBadRequest {
			t.Fatalf("got %v, want a %s error", err, chat.ErrBadRequest)
		}
	})

	t.Run("EditByAuthorSetsTextAndEditedAt", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		m := l.sent("a", "ann", "m1", "helo")
		apply(t, s, l.Take())
		ed := l.edit("a", "ann", m.Seq, "hello")
		apply(t, s, l.Take())
		want := msg(m)
		want.Text, want.Edited, want.EditedAt = "hello", true, ed.Time
		equal(t, messages(t, s, "a", history.Page{}), []history.Message{want})
	})

	t.Run("EditByOtherUserIgnored", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		m := l.sent("a", "ann", "m1", "mine")
		l.edit("a", "bob", m.Seq, "yours")
		apply(t, s, l.Take())
		equal(t, messages(t, s, "a", history.Page{}), []history.Message{msg(m)})
	})

	t.Run("DeleteByAuthorLeavesTombstone", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		m := l.sent("a", "ann", "m1", "oops")
		l.react("a", "bob", m.Seq, "👍")
		keep := l.sent("a", "bob", "m1", "kept")
		apply(t, s, l.Take())
		l.del("a", "ann", m.Seq)
		apply(t, s, l.Take())
		want := msg(m)
		want.Text, want.Deleted = "", true
		equal(t, messages(t, s, "a", history.Page{}), []history.Message{want, msg(keep)})
	})

	t.Run("DeleteByOtherUserIgnored", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		m := l.sent("a", "ann", "m1", "mine")
		l.del("a", "bob", m.Seq)
		apply(t, s, l.Take())
		equal(t, messages(t, s, "a", history.Page{}), []history.Message{msg(m)})
	})

	t.Run("EditOrReactionAfterDeleteIgnored", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		m := l.sent("a", "ann", "m1", "gone")
		l.del("a", "ann", m.Seq)
		apply(t, s, l.Take())
		l.edit("a", "ann", m.Seq, "back")
		l.react("a", "bob", m.Seq, "👍")
		apply(t, s, l.Take())
		want := msg(m)
		want.Text, want.Deleted = "", true
		equal(t, messages(t, s, "a", history.Page{}), []history.Message{want})
	})

	t.Run("EventsForUnknownTargetIgnored", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		m := l.sent("a", "ann", "m1", "x")
		l.edit("a", "ann", 999, "y")
		l.react("b", "ann", m.Seq, "👍") // same seq, other room
		l.del("b", "ann", m.Seq)
		apply(t, s, l.Take())
		equal(t, dump(t, s), []history.Message{msg(m)})
		position(t, s, 4)
	})

	t.Run("ReactionsAreSetsPerEmojiAndUser", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		m := l.sent("a", "ann", "m1", "x")
		l.react("a", "bob", m.Seq, "👍")
		l.react("a", "bob", m.Seq, "👍") // twice: once in the set
		l.react("a", "ann", m.Seq, "👍")
		apply(t, s, l.Take())
		l.react("a", "cat", m.Seq, "🎉")
		l.react("a", "bob", m.Seq, "🎉")
		l.react("a", "dan", m.Seq, "❤")
		l.unreact("a", "dan", m.Seq, "❤") // last user: the emoji goes
		l.unreact("a", "eve", m.Seq, "👍") // never added: nothing
		l.unreact("a", "ann", m.Seq, "👍")
		apply(t, s, l.Take())
		want := msg(m)
		want.Reactions = []history.Reaction{{Emoji: "👍", Users: []string{"bob"}}, {Emoji: "🎉", Users: []string{"bob", "cat"}}}
		slices.SortFunc(want.Reactions, func(a, b history.Reaction) int { return strings.Compare(a.Emoji, b.Emoji) })
		equal(t, messages(t, s, "a", history.Page{}), []history.Message{want})
	})

	t.Run("DuplicateSendIdIgnored", func(t *testing.T) {
		s := fresh(t)
		var l eventLog
		m := l.sent("a", "ann", "m1", "once")
		l.sent("a", "ann", "m1", "once") // retry within the batch
		other := l.sent("a", "bob", "m1", "same id, other author")
		apply(t, s, l.Take())
		dup := l.sent("a", "ann", "m1", "once") // retry after the dedup window
		l.edit("a", "ann", dup.Seq, "edit of the ignored copy")
		apply(t, s, l.Take())
		equal(t, dump(t, s), []history.Message{msg(m), msg(other)})
		position(t, s, 5)
	})

	var scripted eventLog
	script(&scripted)
	projectiontest.Idempotence(t, projectiontest.Case[history.Store, []history.Message]{
		New:       v.New,
		Reference: func() history.Store { return history.NewMemory() },
		Dump:      dump,
		Equal:     equal,
		Events:    scripted.Take(),
	})

	t.Run("LargeBatchesMatchTheReference", func(t *testing.T) {
		// Batches past the adapters' multi-row statements (64 rows), with
		// sizes that are not powers of two: the same messages as the
		// reference model.
		s, ref := fresh(t), history.NewMemory()
		var l eventLog
		bigScript(&l)
		all := l.Take()
		for _, n := range []int{1, 3, 64, 65, 127, 200, len(all)} {
			batch := all[:min(n, len(all))]
			all = all[len(batch):]
			apply(t, s, batch)
			if err := ref.Apply(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
		}
		want := dump(t, ref)
		if len(want) < 200 {
			t.Fatalf("the script made %d messages, want at least 200", len(want))
		}
		equal(t, dump(t, s), want)
	})

	t.Run("IgnoredAndInvalidEventsAdvancePosition", func(t *testing.T) {
		s := fresh(t)
		position(t, s, 0)
		var l eventLog
		l.Add(chat.Event{Type: chat.RoomCreated, Room: "a", Author: "ann", Name: "A"})
		l.Add(chat.Event{Type: chat.MemberJoined, Room: "a", Author: "ann", User: "ann"})
		apply(t, s, l.Take())
		position(t, s, 2)
		l.Add(chat.Event{Type: chat.Invalid, Room: "a"})
		apply(t, s, l.Take())
		position(t, s, 3)
		l.Add(chat.Event{Type: "bogus.type", Room: "a", Author: "ann", Text: "x"})
		l.Add(chat.Event{Type: chat.MessageSent, Room: "a", Author: "ann"}) // no id, no text
		apply(t, s, l.Take())
		position(t, s, 5)
		equal(t, dump(t, s), nil)
		apply(t, s, nil)
		position(t, s, 5)
	})

	t.Run("PositionAndDataPersistAcrossReopen", func(t *testing.T) {
		t.Parallel()
		o := newDB(t)
		s := o("history_v1")
		var l eventLog
		script(&l)
		all := l.Take()
		apply(t, s, all)
		before := dump(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, o, "history_v1")
		position(t, s, all[len(all)-1].Seq)
		equal(t, dump(t, s), before)
		apply(t, s, all) // redelivered after the restart
		equal(t, dump(t, s), before)
		m := l.sent("a", "ann", "after-restart", "x")
		apply(t, s, l.Take())
		want := append(slices.Clone(before), msg(m))
		slices.SortFunc(want, history.Compare)
		equal(t, dump(t, s), want)
	})

	t.Run("VersionsIndependentAndDropRemovesOne", func(t *testing.T) {
		t.Parallel()
		o := newDB(t)
		v1, v2 := open(t, o, "history_v1"), open(t, o, "history_v2")
		var l eventLog
		m1 := l.sent("a", "ann", "m1", "one")
		m2 := l.sent("a", "ann", "m2", "two")
		all := l.Take()
		apply(t, v1, all)
		apply(t, v2, all[:1])
		equal(t, dump(t, v1), []history.Message{msg(m1), msg(m2)})
		equal(t, dump(t, v2), []history.Message{msg(m1)})
		position(t, v1, 2)
		position(t, v2, 1)

		if err := v1.Drop(context.Background()); err != nil {
			t.Fatalf("drop: %v", err)
		}
		equal(t, dump(t, v2), []history.Message{msg(m1)})
		position(t, v2, 1)
		// A dropped version reopens empty, at position 0, and can be rebuilt.
		_ = v1.Close()
		v1 = open(t, o, "history_v1")
		equal(t, dump(t, v1), nil)
		position(t, v1, 0)
		apply(t, v1, all)
		equal(t, dump(t, v1), []history.Message{msg(m1), msg(m2)})
	})
}

// script appends a small history with every rule in play over three rooms.
func script(l *eventLog) {
	a1 := l.sent("a", "ann", "a1", "first")
	b1 := l.sent("b", "bob", "b1", "in b")
	a2 := l.sent("a", "bob", "a2", "second")
	l.react("a", "bob", a1.Seq, "👍")
	l.edit("a", "ann", a1.Seq, "first, edited")
	l.Add(chat.Event{Type: chat.MemberJoined, Room: "c", Author: "cat", User: "cat"})
	l.sent("a", "ann", "a1", "first") // retried send
	l.react("a", "ann", a1.Seq, "👍")
	l.react("b", "ann", b1.Seq, "🎉")
	l.edit("a", "ann", a2.Seq, "not ann's")
	l.del("b", "bob", b1.Seq)
	l.edit("b", "bob", b1.Seq, "after delete")
	l.Add(chat.Event{Type: chat.Invalid, Room: "a"})
	c1 := l.sent("c", "cat", "c1", "in c")
	l.unreact("a", "bob", a1.Seq, "👍")
	l.react("c", "ann", c1.Seq, "❤")
	l.edit("a", "ann", a1.Seq, "first, edited twice")
	l.react("a", "cat", a2.Seq, "❤")
	l.del("a", "bob", a2.Seq)
	l.sent("a", "cat", "a3", "third")
	l.unreact("c", "ann", c1.Seq, "❤")
	l.react("c", "ann", c1.Seq, "❤")
}

// bigScript appends about 600 events over three rooms: sends (some retried),
// then edits, deletes and reactions of earlier messages, mixed.
func bigScript(l *eventLog) {
	rng := rand.New(rand.NewPCG(7, 11))
	rooms, users := []string{"a", "b", "c"}, []string{"ann", "bob", "cat"}
	var sent []chat.Event
	for i := range 600 {
		room, user := rooms[rng.IntN(3)], users[rng.IntN(3)]
		if i < 250 || rng.IntN(3) == 0 {
			id := fmt.Sprintf("m%d", i)
			if len(sent) > 0 && rng.IntN(10) == 0 { // a retried send
				e := sent[rng.IntN(len(sent))]
				room, user, id = e.Room, e.Author, e.ID
			}
			sent = append(sent, l.sent(room, user, id, fmt.Sprintf("text %d", i)))
			continue
		}
		e := sent[rng.IntN(len(sent))]
		switch rng.IntN(4) {
		case 0:
			l.edit(e.Room, e.Author, e.Seq, fmt.Sprintf("edit %d", i))
		case 1:
			l.react(e.Room, user, e.Seq, []string{"👍", "🎉"}[rng.IntN(2)])
		case 2:
			l.unreact(e.Room, user, e.Seq, "👍")
		default:
			if rng.IntN(4) == 0 {
				l.del(e.Room, e.Author, e.Seq)
			}
		}
	}
}

// eventLog builds the suite's events on a projectiontest.Log.
type eventLog struct{ projectiontest.Log }

func (l *eventLog) sent(room, author, id, text string) chat.Event {
	return l.Add(chat.Event{Type: chat.MessageSent, Room: room, Author: author, ID: id, Text: text})
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

func (l *eventLog) unreact(room, author string, target uint64, emoji string) chat.Event {
	return l.Add(chat.Event{Type: chat.ReactionRemove, Room: room, Author: author, Target: target, Emoji: emoji})
}

// msg is the state a message.sent event creates.
func msg(e chat.Event) history.Message {
	return history.Message{Room: e.Room, Seq: e.Seq, ID: e.ID, Author: e.Author, Time: e.Time, Text: e.Text}
}

// apply and position are projectiontest's, shared by every read model's suite.
var (
	apply    = projectiontest.Apply
	position = projectiontest.Position
)

func messages(t *testing.T, s history.Store, room string, p history.Page) []history.Message {
	t.Helper()
	ms, err := s.Messages(context.Background(), room, p)
	if err != nil {
		t.Fatalf("messages %s %+v: %v", room, p, err)
	}
	return ms
}

func dump(t *testing.T, s history.Store) []history.Message {
	t.Helper()
	ms, err := s.Dump(context.Background())
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return ms
}

// equal compares messages exactly: times to the nanosecond, in UTC, and nil
// for no reactions.
func equal(t *testing.T, got, want []history.Message) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("messages differ:\n got %s\nwant %s", show(got), show(want))
	}
}

func show(ms []history.Message) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "\n  %+v", m)
	}
	return b.String()
}
