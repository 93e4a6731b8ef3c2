package chat_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
)

// The hand encoders and decoders must agree with encoding/json byte for byte
// and value for value. These references are the code they replaced.

func refMarshalBody(e chat.Event) ([]byte, error) {
	e.Seq, e.Prev = 0, 0
	return json.Marshal(e)
}

func refEventFrame(e chat.Event) ([]byte, error) {
	body, err := json.Marshal(&e)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(`{"type":"event","event":`), body...), '}'), nil
}

func refDecodeBody(data []byte) (chat.Event, error) {
	var e chat.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return chat.Event{}, fmt.Errorf("decode event: %w", err)
	}
	e.Seq, e.Prev = 0, 0
	if err := e.Validate(); err != nil {
		return chat.Event{}, err
	}
	return e, nil
}

func refDecodeClientFrame(data []byte) (chat.ClientFrame, error) {
	var f chat.ClientFrame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return chat.ClientFrame{}, errors.New("malformed")
	}
	if dec.More() {
		return chat.ClientFrame{}, errors.New("trailing")
	}
	if f.Type == "" {
		return chat.ClientFrame{}, errors.New("no type")
	}
	return f, nil
}

// awkward strings: everything encoding/json escapes or replaces.
var awkward = []string{
	"", "plain", "<b>&amp;</b>", "quote\" back\\slash /", "nl\ncr\rtab\tbs\bff\f",
	"\x00\x01\x1f\x7f", "é ü 日本 👍", "\u2028\u2029", "bad \xff utf8 \xc3", "\xed\xa0\x80",
	"mixed <\u2028\xfe\"\\>",
}

func TestEventEncodingMatchesEncodingJSON(t *testing.T) {
	times := []time.Time{
		{}, time.Unix(0, 1).UTC(), time.Date(2026, 11, 27, 6, 13, 58, 123456789, time.UTC),
		time.Date(2026, 11, 27, 6, 13, 58, 120000000, time.FixedZone("x", 3600+1800)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return awkward[rng.IntN(len(awkward))] }
	num := func() uint64 {
		switch rng.IntN(3) {
		case 0:
			return 0
		case 1:
			return math.MaxUint64
		}
		return rng.Uint64N(1000)
	}
	for i := range 3000 {
		e := chat.Event{ID: pick(), Type: chat.EventType(pick()), Room: pick(), Author: pick(), Time: times[i%len(times)],
			Seq: num(), Prev: num(), Text: pick(), Target: num(), Emoji: pick(), User: pick(), Name: pick(), Private: rng.IntN(2) == 0}
		checkEventEncoding(t, e)
	}
}

func checkEventEncoding(t *testing.T, e chat.Event) {
	t.Helper()
	want, wantErr := refMarshalBody(e)
	got, err := e.MarshalBody()
	if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) && err == nil {
		t.Fatalf("MarshalBody(%+v)\n got %s, %v\nwant %s, %v", e, got, err, want, wantErr)
	}
	want, wantErr = refEventFrame(e)
	got, err = chat.AppendEventFrame([]byte("prefix"), &e)
	if (err != nil) != (wantErr != nil) || err == nil && !bytes.Equal(got, append([]byte("prefix"), want...)) || err != nil && string(got) != "prefix" {
		t.Fatalf("AppendEventFrame(%+v)\n got %s, %v\nwant %s, %v", e, got, err, want, wantErr)
	}
}

func FuzzEventEncoding(f *testing.F) {
	f.Add("c1", "message.sent", "general", "alice", int64(1764224038123456789), uint64(7), uint64(6), "hi <you> \"x\"\n", uint64(0), "👍", "", "", false)
	f.Add("\xff", "\u2028", "\x00", "&", int64(-62135596801), uint64(0), uint64(0), "", uint64(math.MaxUint64), "", "bob", "Room", true)
	f.Fuzz(func(t *testing.T, id, typ, room, author string, ns int64, seq, prev uint64, text string, target uint64, emoji, user, name string, private bool) {
		checkEventEncoding(t, chat.Event{ID: id, Type: chat.EventType(typ), Room: room, Author: author, Time: time.Unix(0, ns).UTC(),
			Seq: seq, Prev: prev, Text: text, Target: target, Emoji: emoji, User: user, Name: name, Private: private})
	})
}

func TestServerFrameEncodingMatchesEncodingJSON(t *testing.T) {
	yes, no, read, unread := true, false, uint64(12), 3
	ev := &chat.Event{ID: "c1", Type: chat.MessageSent, Room: "r", Author: "a<b>", Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Seq: 9, Prev: 8, Text: "x\u2028y"}
	frames := []chat.ServerFrame{
		{},
		{Type: chat.FrameWelcome, User: "alice", Node: "n-1", Protocol: 1},
		{Type: chat.FrameAck, Ref: "r&1", Room: "general", ID: "id\"1", Seq: math.MaxUint64},
		{Type: chat.FrameAck, Room: "general", ID: "id", Seq: 4, Dup: true},
		{Type: chat.FrameJoined, Ref: "1", Room: "r", Head: 10, Recovered: &yes, Replayed: 3, Online: []string{"a", "<b>"}, Read: &read, Unread: &unread},
		{Type: chat.FrameJoined, Room: "r", Recovered: &no, Online: []string{}, Messages: []map[string]any{{"seq": 1, "text": "<hi>"}}},
		{Type: chat.FramePresence, Room: "r", User: "bob", Online: false},
		{Type: chat.FramePresence, Room: "r", User: "bob", Online: true},
		{Type: chat.FrameEvent, Event: ev},
		{Type: chat.FrameEvent, Event: &chat.Event{}},
		{Type: chat.FrameError, Ref: "2", Room: "r", ID: "x", Code: "rate_limited", Message: "slow down \xff", RetryAfterMS: -5},
		{Type: chat.FrameHistory, Ref: "3", Room: "r", Messages: []int{}},
		{Type: chat.FrameError, Messages: func() {}},
		{Type: chat.FrameEvent, Event: &chat.Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, s := range awkward {
		frames = append(frames, chat.ServerFrame{Type: s, Ref: s, Room: s, User: s, Node: s, ID: s, Code: s, Message: s})
	}
	for _, f := range frames {
		want, wantErr := json.Marshal(f)
		got, err := f.AppendJSON(nil)
		if (err != nil) != (wantErr != nil) || err == nil && !bytes.Equal(got, want) {
			t.Errorf("AppendJSON(%+v)\n got %s, %v\nwant %s, %v", f, got, err, want, wantErr)
		}
	}
}

// bodies and frames the decoders must treat exactly as encoding/json does.
var decodeSeeds = []string{
	`{"id":"c1","type":"message.sent","room":"general","author":"alice","ts":"2026-11-27T06:13:58.123456789Z","prev":0,"text":"hi"}`,
	`{"id":"c1","type":"message.sent","room":"general","author":"alice","ts":"2026-11-27T06:13:58Z","prev":0,"text":"\u003cb\u003e \"q\" \\ \/ \n\r\t\b\f \u00e9 \u2028 \ud83d\ude00 \ud800"}`,
	` { "id" : "c1" , "type":"reaction.added","room":"r","author":"a","ts":"2026-11-27T06:13:58+01:30","target":3,"emoji":"👍" } `,
	`{"id":"c1","type":"room.created","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","name":"R","private":true,"seq":5,"prev":4}`,
	`{"id":"c1","type":"member.joined","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","user":"b","private":false}`,
	`{"ID":"c1","type":"message.sent","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","text":"x"}`,
	`{"id":"c1","id":"c2","type":"message.sent","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","text":"x"}`,
	`{"id":"c1","type":"message.deleted","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","target":01}`,
	`{"id":"c1","type":"message.deleted","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","target":1e2}`,
	`{"id":"c1","type":"message.deleted","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","target":1.0}`,
	`{"id":"c1","type":"message.deleted","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","target":-1}`,
	`{"id":"c1","type":"message.deleted","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","target":18446744073709551615}`,
	`{"id":"c1","type":"message.deleted","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","target":18446744073709551616}`,
	`{"id":"c1","type":"message.sent","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","text":null}`,
	`{"id":"c1","type":"message.sent","room":"r","author":"a","ts":null,"text":"x"}`,
	`{"id":"c1","type":"message.sent","room":"r","author":"a","ts":"2026-11-27t06:13:58z","text":"x"}`,
	`{"id":"c1","type":"message.sent","room":"r","author":"a","ts":"2026-11-27T06:13:58\u005a","text":"x"}`,
	`{"id":"c1","type":"message.sent","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","text":"x","extra":[1,{"a":2}]}`,
	"{\"id\":\"c1\",\"type\":\"message.sent\",\"room\":\"r\",\"author\":\"a\",\"ts\":\"2026-11-27T06:13:58Z\",\"text\":\"bad \xff\"}",
	"{\"id\":\"c1\",\"type\":\"message.sent\",\"room\":\"r\",\"author\":\"a\",\"ts\":\"2026-11-27T06:13:58Z\",\"text\":\"raw\nnl\"}",
	`{"id":"c1","type":"message.sent","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","text":"x"} x`,
	`{"id":"c1","type":"message.sent","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","text":"x"}{}`,
	`{"id":"c1","type":"message.sent","room":"r","author":"a","ts":"2026-11-27T06:13:58Z","text":"x",}`,
	`{"id":"c1","private":True}`, `{}`, `{ }`, `[]`, `null`, `"x"`, ``, `{"id"}`, `{"id":"\u12"}`, `{"id":"\x"}`, `{"id":"x`,
	`{"type":"send","room":"general","id":"p0-1","text":"1764224038123456789 0 12345"}`,
	`{"type":"join","room":"general","since":0,"ref":"7"}`, `{"type":"join","room":"general","since":null}`,
	`{"type":"history","room":"r","before":10,"after":2,"limit":50}`, `{"type":"history","room":"r","limit":-1}`,
	`{"type":"history","room":"r","limit":9223372036854775807}`, `{"type":"history","room":"r","limit":9223372036854775808}`,
	`{"type":"create","room":"r","id":"1","name":"R","private":true,"token":"t","user":"u","emoji":"e","target":1}`,
	`{"type":"ping"} {"type":"ping"}`, `{"type":"ping"} }`, `{"type":"ping"} ]`, `{"type":"send","colour":"red"}`, `{"TYPE":"ping"}`,
}

// sameEvent compares events whose times may carry distinct but equal zones
// (each parse of an offset makes its own *time.Location).
func sameEvent(a, b chat.Event) bool {
	if !a.Time.Equal(b.Time) || a.Time.String() != b.Time.String() {
		return false
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b
}

func FuzzDecodeBody(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantErr := refDecodeBody(data)
		got, err := chat.DecodeBody(data)
		if (err != nil) != (wantErr != nil) || err != nil && err.Error() != wantErr.Error() || !sameEvent(got, want) {
			t.Fatalf("DecodeBody(%q)\n got %+v, %v\nwant %+v, %v", data, got, err, want, wantErr)
		}
	})
}

// FuzzDecodeClientFrameMatchesEncodingJSON compares the decoder with
// encoding/json's; FuzzDecodeClientFrame (chat_test.go) checks what it accepts.
func FuzzDecodeClientFrameMatchesEncodingJSON(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantErr := refDecodeClientFrame(data)
		got, err := chat.DecodeClientFrame(data)
		same := (err != nil) == (wantErr != nil) && got.Since == nil == (want.Since == nil)
		if same && got.Since != nil {
			same = *got.Since == *want.Since
		}
		got.Since, want.Since = nil, nil
		if !same || got != want {
			t.Fatalf("DecodeClientFrame(%q)\n got %+v, %v\nwant %+v, %v", data, got, err, want, wantErr)
		}
	})
}

// BenchmarkCodec compares the hand codecs with encoding/json (the refs) on the
// hot paths' shapes: go test -run XXX -bench Codec ./pkg/chat
func BenchmarkCodec(b *testing.B) {
	e := chat.Event{ID: "0b6c2f64-1d2e-4c1f-9a57-3c1e0f2b7d11", Type: chat.MessageSent, Room: "general", Author: "alice",
		Time: time.Date(2026, 11, 27, 6, 13, 58, 123456789, time.UTC), Seq: 123456, Prev: 123455, Text: "1764224038123456789 0 12345"}
	body, _ := e.MarshalBody()
	send := []byte(`{"type":"send","room":"general","id":"0b6c2f64-1d2e-4c1f-9a57-3c1e0f2b7d11","text":"1764224038123456789 0 12345"}`)
	ack := chat.ServerFrame{Type: chat.FrameAck, Room: "general", ID: e.ID, Seq: e.Seq}
	cases := []struct {
		name      string
		fast, ref func() error
	}{
		{"MarshalBody", func() error { _, err := e.MarshalBody(); return err }, func() error { _, err := refMarshalBody(e); return err }},
		{"EventFrame", func() error { _, err := chat.AppendEventFrame(make([]byte, 0, 256), &e); return err }, func() error { _, err := refEventFrame(e); return err }},
		{"AckFrame", func() error { _, err := ack.AppendJSON(make([]byte, 0, 128)); return err }, func() error { _, err := json.Marshal(ack); return err }},
		{"DecodeBody", func() error { _, err := chat.DecodeBody(body); return err }, func() error { _, err := refDecodeBody(body); return err }},
		{"DecodeSend", func() error { _, err := chat.DecodeClientFrame(send); return err }, func() error { _, err := refDecodeClientFrame(send); return err }},
	}
	for _, c := range cases {
		for _, v := range []struct {
			name string
			fn   func() error
		}{{"hand", c.fast}, {"encoding_json", c.ref}} {
			b.Run(c.name+"/"+v.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := v.fn(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
