package chat

import (
	"testing"
	"time"
)

// The fast decoders must take the shapes the hot paths see; falling back to
// encoding/json is correct but slow, and nothing else would notice.
func TestFastDecodersTakeTheCommonShapes(t *testing.T) {
	e := Event{ID: "p0-12", Type: MessageSent, Room: "general", Author: "alice", Time: time.Now().UTC(), Text: `hi <you> & "them"` + "\n\u00e9 👍"}
	body, err := e.MarshalBody()
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := fastEvent(body); !ok || got != e { // UTC: one *time.Location
		t.Fatalf("fastEvent(%s) = %+v, %v; want %+v", body, got, ok, e)
	}
	for _, in := range []string{
		`{"type":"send","room":"general","id":"p0-1","text":"1764224038123456789 0 12345"}`,
		` {"type": "send", "room": "general", "id": "0b6c-11", "text": "line\nnext \"quoted\" \u00e9", "ref": "9"}` + "\n",
		`{"type":"join","room":"general","since":42}`,
		`{"type":"react","room":"general","id":"x","target":7,"emoji":"👍"}`,
	} {
		if _, ok := fastClientFrame([]byte(in)); !ok {
			t.Errorf("fastClientFrame(%s) fell back to encoding/json", in)
		}
	}
}
