package jetstream

import (
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

func TestDecodedSharesAndChecks(t *testing.T) {
	body := func(text string) []byte {
		b, err := chat.Event{ID: "m1", Type: chat.MessageSent, Room: "r-1", Author: "ann", Time: time.Unix(1, 0).UTC(), Text: text}.MarshalBody()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var d decoded
	a := body("hello")
	ev := d.decode(7, a, "r-1")
	if ev.Seq != 7 || ev.Text != "hello" || ev.Type != chat.MessageSent {
		t.Fatalf("decoded %+v", ev)
	}
	// A hit returns the same event; the cache owns no copy the caller
	// could change.
	ev.Text = "changed by the caller"
	if again := d.decode(7, a, "r-1"); again.Text != "hello" || again.Seq != 7 {
		t.Fatalf("hit returned %+v", again)
	}
	// The same seq with other bytes (a stream made again) is decoded anew.
	if other := d.decode(7, body("other"), "r-1"); other.Text != "other" {
		t.Fatalf("same seq, other bytes: %+v", other)
	}
	// The same bytes under another subject's room are checked again: the
	// body names r-1, so under r-2 it is invalid.
	if wrong := d.decode(7, body("other"), "r-2"); wrong.Type != chat.Invalid || wrong.Seq != 7 {
		t.Fatalf("body of r-1 read as r-2: %+v", wrong)
	}
	// A seq that shares the slot replaces it.
	if ev := d.decode(7+decodedSize, a, "r-1"); ev.Seq != 7+decodedSize || ev.Text != "hello" {
		t.Fatalf("slot reuse: %+v", ev)
	}
	if bad := d.decode(9, []byte("{not json"), "r-1"); bad.Type != chat.Invalid || bad.Seq != 9 {
		t.Fatalf("undecodable: %+v", bad)
	}
}
