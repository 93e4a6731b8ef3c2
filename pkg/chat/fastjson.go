package chat

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Events and frames are encoded and decoded by hand on the hot paths:
// encoding/json's reflection took a tenth of a node's CPU at 640,000
// deliveries a second (README, "Load tool", finding 11).
//
// The encoders write exactly the bytes encoding/json writes. The decoders
// take the common shape (known keys, each once; strings with the usual
// escapes; unsigned integers) and hand anything else to encoding/json, so
// both decode every input alike, errors included (FuzzDecodeBody,
// FuzzDecodeClientFrame).

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json escapes
// it: HTML-safe, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendField appends ,"key":"value" (or {"key":"value" first).
func appendField(dst []byte, key, value string) []byte {
	dst = append(dst, key...)
	return appendString(dst, value)
}

func appendUintField(dst []byte, key string, v uint64) []byte {
	return strconv.AppendUint(append(dst, key...), v, 10)
}

func appendIntField(dst []byte, key string, v int64) []byte {
	return strconv.AppendInt(append(dst, key...), v, 10)
}

func appendBoolField(dst []byte, key string, v bool) []byte {
	return strconv.AppendBool(append(dst, key...), v)
}

// appendJSON appends the event as json.Marshal encodes it.
func (e *Event) appendJSON(dst []byte) ([]byte, error) {
	dst = appendField(dst, `{"id":`, e.ID)
	dst = appendField(dst, `,"type":`, string(e.Type))
	dst = appendField(dst, `,"room":`, e.Room)
	dst = appendField(dst, `,"author":`, e.Author)
	dst = append(dst, `,"ts":"`...)
	ts, err := e.Time.AppendText(dst)
	if err != nil {
		return dst, errors.New("encode event: " + err.Error())
	}
	dst = append(ts, '"')
	if e.Seq != 0 {
		dst = appendUintField(dst, `,"seq":`, e.Seq)
	}
	dst = appendUintField(dst, `,"prev":`, e.Prev)
	if e.Text != "" {
		dst = appendField(dst, `,"text":`, e.Text)
	}
	if e.Target != 0 {
		dst = appendUintField(dst, `,"target":`, e.Target)
	}
	if e.Emoji != "" {
		dst = appendField(dst, `,"emoji":`, e.Emoji)
	}
	if e.User != "" {
		dst = appendField(dst, `,"user":`, e.User)
	}
	if e.Name != "" {
		dst = appendField(dst, `,"name":`, e.Name)
	}
	if e.Private {
		dst = append(dst, `,"private":true`...)
	}
	return append(dst, '}'), nil
}

// size is room for the event's JSON when nothing in it needs escaping.
func (e *Event) size() int {
	return 128 + len(e.ID) + len(e.Type) + len(e.Room) + len(e.Author) + len(e.Text) + len(e.Emoji) + len(e.User) + len(e.Name)
}

// AppendJSON appends the frame as json.Marshal encodes it.
func (f *ServerFrame) AppendJSON(dst []byte) ([]byte, error) {
	dst = appendField(dst, `{"type":`, f.Type)
	if f.Ref != "" {
		dst = appendField(dst, `,"ref":`, f.Ref)
	}
	if f.Room != "" {
		dst = appendField(dst, `,"room":`, f.Room)
	}
	if f.User != "" {
		dst = appendField(dst, `,"user":`, f.User)
	}
	if f.Node != "" {
		dst = appendField(dst, `,"node":`, f.Node)
	}
	if f.Protocol != 0 {
		dst = appendIntField(dst, `,"v":`, int64(f.Protocol))
	}
	if f.ID != "" {
		dst = appendField(dst, `,"id":`, f.ID)
	}
	if f.Seq != 0 {
		dst = appendUintField(dst, `,"seq":`, f.Seq)
	}
	if f.Dup {
		dst = append(dst, `,"dup":true`...)
	}
	if f.Head != 0 {
		dst = appendUintField(dst, `,"head":`, f.Head)
	}
	if f.Recovered != nil {
		dst = appendBoolField(dst, `,"recovered":`, *f.Recovered)
	}
	if f.Replayed != 0 {
		dst = appendIntField(dst, `,"replayed":`, int64(f.Replayed))
	}
	var err error
	if f.Online != nil {
		if dst, err = appendAny(dst, `,"online":`, f.Online); err != nil {
			return dst, err
		}
	}
	if f.Read != nil {
		dst = appendUintField(dst, `,"read":`, *f.Read)
	}
	if f.Unread != nil {
		dst = appendIntField(dst, `,"unread":`, int64(*f.Unread))
	}
	if f.Event != nil {
		if dst, err = f.Event.appendJSON(append(dst, `,"event":`...)); err != nil {
			return dst, err
		}
	}
	if f.Messages != nil {
		if dst, err = appendAny(dst, `,"messages":`, f.Messages); err != nil {
			return dst, err
		}
	}
	if f.Code != "" {
		dst = appendField(dst, `,"code":`, f.Code)
	}
	if f.Message != "" {
		dst = appendField(dst, `,"message":`, f.Message)
	}
	if f.RetryAfterMS != 0 {
		dst = appendIntField(dst, `,"retry_after_ms":`, f.RetryAfterMS)
	}
	return append(dst, '}'), nil
}

// appendAny appends a field whose value has no hand encoder (the rare
// frames: joined's online list, history pages).
func appendAny(dst []byte, key string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(append(dst, key...), b...), nil
}

// scanner reads the subset of JSON the fast decoders take. Every method
// reports false on anything outside it; the caller then falls back to
// encoding/json, which decides.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) byte(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// raw returns a string's bytes between its quotes, if it has no escape, no
// control character and only valid UTF-8: its value as it stands.
func (s *scanner) raw() ([]byte, bool) {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	ascii := true
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			if !ascii && !utf8.Valid(s.b[start:i]) {
				return nil, false
			}
			return s.b[start:i], true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// str reads a string value, unescaping \" \\ \/ \b \f \n \r \t and \uXXXX
// outside the surrogates.
func (s *scanner) str() (string, bool) {
	save := s.i
	if r, ok := s.raw(); ok {
		return string(r), true
	}
	s.i = save
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return "", false
	}
	out := make([]byte, 0, 64)
	start := s.i + 1
	for i := start; i < len(s.b); {
		c := s.b[i]
		switch {
		case c == '"':
			out = append(out, s.b[start:i]...)
			if !utf8.Valid(out) {
				return "", false
			}
			s.i = i + 1
			return string(out), true
		case c < 0x20:
			return "", false
		case c != '\\':
			i++
			continue
		}
		out = append(out, s.b[start:i]...)
		if i+1 >= len(s.b) {
			return "", false
		}
		switch e := s.b[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if i+6 > len(s.b) {
				return "", false
			}
			r, err := strconv.ParseUint(string(s.b[i+2:i+6]), 16, 16)
			if err != nil || r >= 0xD800 && r < 0xE000 {
				return "", false
			}
			out = utf8.AppendRune(out, rune(r))
			i += 6
			start = i
			continue
		default:
			return "", false
		}
		i += 2
		start = i
	}
	return "", false
}

// uint reads a non-negative integer without fraction or exponent that fits
// in 64 bits.
func (s *scanner) uint() (uint64, bool) {
	s.space()
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	digits := s.b[start:s.i]
	if len(digits) == 0 || len(digits) > 1 && digits[0] == '0' {
		return 0, false
	}
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	var n uint64
	for _, d := range digits {
		if n > (1<<64-1)/10 || n*10 > 1<<64-1-uint64(d-'0') {
			return 0, false
		}
		n = n*10 + uint64(d-'0')
	}
	return n, true
}

func (s *scanner) bool() (bool, bool) {
	s.space()
	switch rest := s.b[s.i:]; {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		s.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		s.i += 5
		return false, true
	}
	return false, false
}

// key reads the next key of an object and its colon: first after the
// opening brace, then after each value. It returns a nil key at the closing
// brace; ok is false on anything else.
func (s *scanner) key(first bool) (key []byte, ok bool) {
	if first {
		if !s.byte('{') {
			return nil, false
		}
		if s.byte('}') {
			return nil, true
		}
	} else if !s.byte(',') {
		return nil, s.byte('}')
	}
	if key, ok = s.raw(); !ok || !s.byte(':') {
		return nil, false
	}
	return key, true
}

// end reports whether only whitespace follows the object.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

// once records a key's bit; a key seen twice fails (encoding/json keeps
// the last, the fallback decides).
func once(seen *uint32, bit uint32) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// eventType returns t's constant for the known types, saving the copy.
func eventType(t []byte) EventType {
	for _, k := range knownTypes {
		if string(k) == string(t) {
			return k
		}
	}
	return EventType(t)
}

var knownTypes = []EventType{MessageSent, MessageEdited, MessageDeleted, ReactionAdded, ReactionRemove, MemberJoined, MemberLeft, RoomCreated, ReadMoved}

// fastEvent decodes a stored event body as json.Unmarshal would, or
// reports false for encoding/json to decide.
func fastEvent(data []byte) (e Event, ok bool) {
	s := scanner{b: data}
	var seen uint32
	for key, ok := s.key(true); key != nil || !ok; key, ok = s.key(false) {
		if !ok {
			return Event{}, false
		}
		var bit uint32
		switch string(key) {
		case "id":
			bit = 1 << 0
			e.ID, ok = s.str()
		case "type":
			bit = 1 << 1
			var r []byte
			if r, ok = s.raw(); ok {
				e.Type = eventType(r)
			}
		case "room":
			bit = 1 << 2
			e.Room, ok = s.str()
		case "author":
			bit = 1 << 3
			e.Author, ok = s.str()
		case "ts":
			// time.Time's UnmarshalJSON takes the string as it stands.
			bit = 1 << 4
			var r []byte
			if r, ok = s.raw(); ok {
				ok = e.Time.UnmarshalText(r) == nil
			}
		case "seq":
			bit = 1 << 5
			e.Seq, ok = s.uint()
		case "prev":
			bit = 1 << 6
			e.Prev, ok = s.uint()
		case "text":
			bit = 1 << 7
			e.Text, ok = s.str()
		case "target":
			bit = 1 << 8
			e.Target, ok = s.uint()
		case "emoji":
			bit = 1 << 9
			e.Emoji, ok = s.str()
		case "user":
			bit = 1 << 10
			e.User, ok = s.str()
		case "name":
			bit = 1 << 11
			e.Name, ok = s.str()
		case "private":
			bit = 1 << 12
			e.Private, ok = s.bool()
		}
		if !ok || bit == 0 || !once(&seen, bit) {
			return Event{}, false
		}
	}
	if !s.end() {
		return Event{}, false
	}
	return e, true
}

// frameTypes are the client frame types, whose decoding needs no copy.
var frameTypes = []string{FrameSend, FrameTyping, FrameRead, FrameReact, FrameUnreact, FrameJoin, FramePing, FrameHistory, FrameEdit, FrameDelete, FrameHello, FrameLeave, FrameUnsub, FrameCreate, FrameInvite}

// fastClientFrame decodes a client frame as DecodeClientFrame's
// json.Decoder would, or reports false for it to decide.
func fastClientFrame(data []byte) (f ClientFrame, ok bool) {
	s := scanner{b: data}
	var seen uint32
	for key, ok := s.key(true); key != nil || !ok; key, ok = s.key(false) {
		if !ok {
			return ClientFrame{}, false
		}
		var bit uint32
		switch string(key) {
		case "type":
			bit = 1 << 0
			var r []byte
			if r, ok = s.raw(); ok {
				f.Type = string(r)
				for _, t := range frameTypes {
					if t == string(r) {
						f.Type = t
						break
					}
				}
			}
		case "ref":
			bit = 1 << 1
			f.Ref, ok = s.str()
		case "token":
			bit = 1 << 2
			f.Token, ok = s.str()
		case "room":
			bit = 1 << 3
			f.Room, ok = s.str()
		case "since":
			bit = 1 << 4
			var n uint64
			n, ok = s.uint()
			f.Since = &n
		case "id":
			bit = 1 << 5
			f.ID, ok = s.str()
		case "text":
			bit = 1 << 6
			f.Text, ok = s.str()
		case "target":
			bit = 1 << 7
			f.Target, ok = s.uint()
		case "emoji":
			bit = 1 << 8
			f.Emoji, ok = s.str()
		case "user":
			bit = 1 << 9
			f.User, ok = s.str()
		case "name":
			bit = 1 << 10
			f.Name, ok = s.str()
		case "private":
			bit = 1 << 11
			f.Private, ok = s.bool()
		case "before":
			bit = 1 << 12
			f.Before, ok = s.uint()
		case "after":
			bit = 1 << 13
			f.After, ok = s.uint()
		case "limit":
			bit = 1 << 14
			var n uint64
			n, ok = s.uint()
			f.Limit = int(n)
			ok = ok && n <= 1<<31-1
		}
		if !ok || bit == 0 || !once(&seen, bit) {
			return ClientFrame{}, false
		}
	}
	if !s.end() {
		return ClientFrame{}, false
	}
	return f, true
}
