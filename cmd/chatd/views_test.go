package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

// onlineOf reads a joined frame's presence list.
func onlineOf(t *testing.T, f chat.ServerFrame) []string {
	t.Helper()
	var out []string
	list, _ := f.Online.([]any)
	for _, u := range list {
		out = append(out, u.(string))
	}
	slices.Sort(out)
	return out
}

func TestPresence(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", "")
	alice := helloRaw(t, n, "alice")
	alice.send(`{"type":"create","ref":"c","room":"lobby","id":"c"}`)
	alice.until(chat.FrameAck)
	alice.send(`{"type":"join","ref":"j","room":"lobby"}`)
	if got := onlineOf(t, alice.until(chat.FrameJoined)); !slices.Equal(got, []string{"alice"}) {
		t.Fatalf("alice's joined.online = %v, want [alice]", got)
	}

	bob := helloRaw(t, n, "bob")
	bob.send(`{"type":"join","ref":"j","room":"lobby"}`)
	if got := onlineOf(t, bob.until(chat.FrameJoined)); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("bob's joined.online = %v, want [alice bob]", got)
	}
	if f := alice.until(chat.FramePresence); f.User != "bob" || f.Online != true {
		t.Fatalf("alice got %+v, want bob online", f)
	}
	var rest struct {
		Room   string
		Online []string
	}
	if err := json.Unmarshal([]byte(getJSON(t, n, "/api/v1/rooms/lobby/presence", "carol")), &rest); err != nil || !slices.Equal(rest.Online, []string{"alice", "bob"}) {
		t.Fatalf("GET presence = %+v (%v), want alice and bob", rest, err)
	}

	// A second connection of bob's does not announce him again; closing it
	// does not take him offline; closing the last one does.
	bob2 := helloRaw(t, n, "bob")
	bob2.send(`{"type":"join","ref":"j","room":"lobby"}`)
	bob2.until(chat.FrameJoined)
	_ = bob2.ws.CloseNow()
	_ = bob.ws.CloseNow()
	if f := alice.until(chat.FramePresence); f.User != "bob" || f.Online != false {
		t.Fatalf("alice got %+v, want bob offline", f)
	}
	// Exactly one offline, and no second online: the next presence frame
	// is carol's.
	carol := helloRaw(t, n, "carol")
	carol.send(`{"type":"join","ref":"j","room":"lobby"}`)
	carol.until(chat.FrameJoined)
	if f := alice.until(chat.FramePresence); f.User != "carol" || f.Online != true {
		t.Fatalf("alice got %+v, want carol online (and nothing more of bob)", f)
	}
	if got := getStatus(t, n, "/api/v1/rooms/nosuch/presence", "alice"); got != 404 {
		t.Fatalf("presence of an unknown room: %d, want 404", got)
	}
}

func TestReadMarkersAndRoomList(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", "")
	alice := helloRaw(t, n, "alice")
	alice.send(`{"type":"create","ref":"c","room":"team","id":"c","name":"The team"}`)
	alice.until(chat.FrameAck)
	alice.send(`{"type":"create","ref":"c2","room":"secret","id":"c2","private":true}`)
	alice.until(chat.FrameAck)
	alice.send(`{"type":"join","ref":"j","room":"team"}`)
	alice.until(chat.FrameJoined)
	bob := helloRaw(t, n, "bob")
	bob.send(`{"type":"join","ref":"j","room":"team"}`)
	bob.until(chat.FrameJoined)
	var seqs []uint64
	for i := range 5 {
		alice.send(fmt.Sprintf(`{"type":"send","ref":"s","room":"team","id":"m%d","text":"message %d"}`, i, i))
		seqs = append(seqs, alice.until(chat.FrameAck).Seq)
	}
	bob.send(fmt.Sprintf(`{"type":"read","ref":"r","room":"team","id":"r1","target":%d}`, seqs[1]))
	bob.until(chat.FrameAck)

	type item struct {
		ID      string
		Name    string
		Members int
		Member  bool
		Last    *struct {
			Seq    uint64
			Author string
			Text   string
		}
		Read   *uint64
		Unread *int
	}
	var list struct{ Rooms []item }
	deadline := time.Now().Add(10 * time.Second)
	for {
		list.Rooms = nil
		body := getJSON(t, n, "/api/v1/rooms", "bob")
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatalf("GET rooms: %s: %v", body, err)
		}
		if len(list.Rooms) == 1 && list.Rooms[0].Unread != nil && *list.Rooms[0].Unread == 3 && list.Rooms[0].Last != nil && list.Rooms[0].Last.Seq == seqs[4] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's room list never showed team with 3 unread and the last message: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := list.Rooms[0]
	if r.ID != "team" || r.Name != "The team" || r.Members != 2 || !r.Member || r.Last.Author != "alice" || r.Last.Text != "message 4" || *r.Read != seqs[1] {
		t.Fatalf("bob's view of team: %+v", r)
	}

	// The join answer carries the marker and the count.
	bob2 := helloRaw(t, n, "bob")
	bob2.send(`{"type":"join","ref":"j","room":"team"}`)
	j := bob2.until(chat.FrameJoined)
	if j.Read == nil || *j.Read != seqs[1] || j.Unread == nil || *j.Unread != 3 {
		t.Fatalf("joined read/unread = %v/%v, want %d/3", j.Read, j.Unread, seqs[1])
	}
	// Alice sees her private room too, and nothing unread (her own messages).
	list.Rooms = nil
	_ = json.Unmarshal([]byte(getJSON(t, n, "/api/v1/rooms", "alice")), &list)
	ids := []string{}
	for _, r := range list.Rooms {
		ids = append(ids, r.ID)
		if r.ID == "team" && (r.Unread == nil || *r.Unread != 0) {
			t.Fatalf("alice's unread in team = %v, want 0", r.Unread)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"secret", "team"}) {
		t.Fatalf("alice's rooms = %v", ids)
	}
}
