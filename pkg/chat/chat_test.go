package chat_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jetchat/jetchat/pkg/chat"
)

func TestValidateRoomID(t *testing.T) {
	for _, id := range []string{"general", "a", "room-1_x", strings.Repeat("z", 64)} {
		if err := chat.ValidateRoomID(id); err != nil {
			t.Errorf("ValidateRoomID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"", "General", "a.b", "a*", "a>", "a b", "é", "a/b", strings.Repeat("z", 65), "a\x00", "chat.room.>"} {
		if err := chat.ValidateRoomID(id); chat.ErrorCode(err) != chat.ErrBadRequest {
			t.Errorf("ValidateRoomID(%q) = %v, want bad_request", id, err)
		}
	}
}

func TestDecodeClientFrame(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		f, err := chat.DecodeClientFrame([]byte(`{"type":"join","room":"general","since":0,"ref":"7"}`))
		if err != nil || f.Type != "join" || f.Since == nil || *f.Since != 0 || f.Ref != "7" {
			t.Fatalf("got %+v, %v", f, err)
		}
	})
	for name, in := range map[string]string{
		"ErrMalformed":    `{"type":`,
		"ErrUnknownField": `{"type":"send","colour":"red"}`,
		"ErrNoType":       `{"room":"x"}`,
		"ErrTrailing":     `{"type":"ping"} {"type":"ping"}`,
		"ErrNotObject":    `[1,2]`,
		"ErrWrongType":    `{"type":"join","since":"yesterday"}`,
		"ErrNegative":     `{"type":"join","since":-1}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := chat.DecodeClientFrame([]byte(in)); chat.ErrorCode(err) != chat.ErrBadRequest {
				t.Fatalf("DecodeClientFrame(%s) = %v, want bad_request", in, err)
			}
		})
	}
}

func TestEventValidate(t *testing.T) {
	base := chat.Event{ID: "c1", Type: chat.MessageSent, Room: "r", Author: "alice", Text: "hi"}
	if err := base.Validate(); err != nil {
		t.Fatalf("valid event: %v", err)
	}
	bad := map[string]func(e *chat.Event){
		"EmptyText":   func(e *chat.Event) { e.Text = "" },
		"LongText":    func(e *chat.Event) { e.Text = strings.Repeat("x", chat.MaxTextBytes+1) },
		"BadUTF8":     func(e *chat.Event) { e.Text = "\xff" },
		"UnknownType": func(e *chat.Event) { e.Type = "message.exploded" },
		"BadRoom":     func(e *chat.Event) { e.Room = "a.b" },
		"NoID":        func(e *chat.Event) { e.ID = "" },
		"EditNoTarget": func(e *chat.Event) {
			e.Type = chat.MessageEdited
		},
	}
	for name, mutate := range bad {
		t.Run("Err"+name, func(t *testing.T) {
			e := base
			mutate(&e)
			if err := e.Validate(); err == nil {
				t.Fatalf("Validate accepted %+v", e)
			}
		})
	}
}

func TestBodyRoundTrip(t *testing.T) {
	e := chat.Event{ID: "c1", Type: chat.ReactionAdded, Room: "r", Author: "alice", Target: 3, Emoji: "👍", Seq: 9, Prev: 4}
	body, err := e.MarshalBody()
	if err != nil {
		t.Fatal(err)
	}
	got, err := chat.DecodeBody(body)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 0 || got.Prev != 0 || got.Emoji != "👍" || got.Target != 3 {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestSplitFrames(t *testing.T) {
	var got []string
	_ = chat.SplitFrames([]byte("{\"a\":1}\n{\"b\":2}\n\n{\"c\":\"x\\ny\"}"), func(f []byte) error {
		got = append(got, string(f))
		return nil
	})
	if len(got) != 3 || got[2] != `{"c":"x\ny"}` {
		t.Fatalf("SplitFrames = %q", got)
	}
}

// FuzzDecodeClientFrame: no input may panic the decoder, and every accepted
// frame has a type and re-validates its room id cleanly.
func FuzzDecodeClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","token":"x"}`, `{"type":"join","room":"general","since":12}`,
		`{"type":"send","room":"r","id":"1","text":"hi"}`, `{"type":"send","room":"a.b>","id":"1"}`,
		`{`, `null`, `{"type":""}`, "{\"type\":\"send\",\"text\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := chat.DecodeClientFrame(data)
		if err != nil {
			if chat.ErrorCode(err) != chat.ErrBadRequest {
				t.Fatalf("decoder error has code %q", chat.ErrorCode(err))
			}
			return
		}
		if fr.Type == "" {
			t.Fatal("accepted a frame without type")
		}
		_ = chat.ValidateRoomID(fr.Room)
	})
}

// FuzzValidateRoomID: whatever passes is safe as one NATS subject token.
func FuzzValidateRoomID(f *testing.F) {
	for _, s := range []string{"general", "a.b", "*", ">", "a b", "", "ÿ", "room-1_x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if chat.ValidateRoomID(id) != nil {
			return
		}
		if id == "" || len(id) > chat.MaxRoomIDBytes || !utf8.ValidString(id) ||
			strings.ContainsAny(id, ".*> \t\r\n\x00") || strings.ToLower(id) != id {
			t.Fatalf("accepted unsafe room id %q", id)
		}
	})
}
