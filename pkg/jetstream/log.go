package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of what the log owns in NATS.
const (
	StreamName    = "CHAT"
	RoomPrefix    = "chat.room."   // stored events: chat.room.<room>
	LivePrefix    = "chat.live."   // republished events: chat.live.<room>
	SignalPrefix  = "chat.signal." // ephemeral (typing, presence), core NATS only
	DirectoryName = "CHAT_ROOMS"
)

// Config sizes the stream. Zero values keep every event.
type Config struct {
	Replicas   int           // 1 embedded, 3 in a cluster
	Duplicates time.Duration // dedup window for Nats-Msg-Id; default 10m
	MaxAge     time.Duration
	MaxBytes   int64
}

// Log is the event log and room directory on one NATS connection.
type Log struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	kv     jetstream.KeyValue
	gets   batchGets // replays and other batched direct gets
	dec    decoded   // events decoded lately, shared by the live feeds and the projections'
}

// Open creates or updates the CHAT stream and the room directory, idempotently.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Log, error) {
	// Every pipelined append gets an answer: its ack, or an error after the
	// timeout (no stream leader, NATS gone).
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second), jetstream.WithPublishAsyncMaxPending(16384))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Duplicates == 0 {
		cfg.Duplicates = 10 * time.Minute
	}
	sc := jetstream.StreamConfig{
		Name:        StreamName,
		Description: "jetchat event log: one subject per room",
		Subjects:    []string{RoomPrefix + "*"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Duplicates:  cfg.Duplicates,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    orUnlimited(cfg.MaxBytes),
		MaxMsgs:     -1,
		AllowDirect: true,
		RePublish: &jetstream.RePublish{
			Source:      RoomPrefix + ">",
			Destination: LivePrefix + ">",
		},
	}
	stream, err := ensureStream(ctx, js, sc)
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", StreamName, err)
	}
	kvc := jetstream.KeyValueConfig{
		Bucket:      DirectoryName,
		Description: "jetchat room directory (derived from the CHAT stream)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}
	kv, err := retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		kv, err := js.CreateKeyValue(ctx, kvc)
		if errors.Is(err, jetstream.ErrBucketExists) {
			return js.UpdateKeyValue(ctx, kvc)
		}
		return kv, err
	})
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", DirectoryName, err)
	}
	return &Log{nc: nc, js: js, stream: stream, kv: kv, gets: batchGets{nc: nc}}, nil
}

// ensureStream creates the stream, or updates it if it exists. Several nodes
// starting at once on a new cluster all try: a create with an identical
// config succeeds for each, where concurrent create-or-update calls of an R3
// stream were seen to time out.
func ensureStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) (jetstream.Stream, error) {
	return retry(ctx, func(ctx context.Context) (jetstream.Stream, error) {
		s, err := js.CreateStream(ctx, sc)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return js.UpdateStream(ctx, sc)
		}
		return s, err
	})
}

// retry runs fn with a short deadline per attempt until it succeeds or ctx
// ends: a JetStream cluster electing its leaders answers slowly at first.
func retry[T any](ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := fn(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return v, err
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 {
			return v, err // a configuration the server refuses: retrying will not help
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func orUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// Subject returns the subject a room's events are stored on. The room id must
// have been validated; Subject panics otherwise, as a caller bug.
func Subject(room string) string {
	if err := chat.ValidateRoomID(room); err != nil {
		panic("jetstream: unvalidated room id reached a subject")
	}
	return RoomPrefix + room
}

// Append stores ev and returns its position. The event's (room, author, id)
// is its idempotency key (Nats-Msg-Id): dup reports that it was stored before
// within the dedup window, and seq is then the original's. With expectNew the
// append succeeds only on a room without events (room creation), else
// chat.ErrRoomExists.
func (l *Log) Append(ctx context.Context, ev chat.Event, expectNew bool) (seq uint64, dup bool, err error) {
	if err := chat.ValidateRoomID(ev.Room); err != nil {
		return 0, false, err
	}
	body, err := ev.MarshalBody()
	if err != nil {
		return 0, false, fmt.Errorf("encode event: %w", err)
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(MsgID(ev.Room, ev.Author, ev.ID))}
	if expectNew {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(0))
	}
	ack, err := l.js.Publish(ctx, Subject(ev.Room), body, opts...)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return 0, false, chat.ErrRoomExists
		}
		return 0, false, fmt.Errorf("append event: %w: %w", chat.ErrLogDown, err)
	}
	return ack.Sequence, ack.Duplicate, nil
}

// AppendAsync publishes ev without waiting for JetStream: wait returns the
// outcome (as Append's) once it answers. Events appended by one goroutine
// are stored in call order (one NATS connection, processed in order), so a
// connection can keep several sends in flight without reordering them.
func (l *Log) AppendAsync(ev chat.Event) (wait func(ctx context.Context) (seq uint64, dup bool, err error), err error) {
	if err := chat.ValidateRoomID(ev.Room); err != nil {
		return nil, err
	}
	body, err := ev.MarshalBody()
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	f, err := l.js.PublishAsync(Subject(ev.Room), body, jetstream.WithMsgID(MsgID(ev.Room, ev.Author, ev.ID)))
	if err != nil {
		return nil, fmt.Errorf("append event: %w: %w", chat.ErrLogDown, err)
	}
	return func(ctx context.Context) (uint64, bool, error) {
		select {
		case ack := <-f.Ok():
			return ack.Sequence, ack.Duplicate, nil
		case err := <-f.Err():
			return 0, false, fmt.Errorf("append event: %w: %w", chat.ErrLogDown, err)
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
	}, nil
}

// MsgID builds the dedup key of an event: the author's id, scoped to the room
// and the author so that no user can collide with another's.
func MsgID(room, author, id string) string {
	return room + "/" + strconv.Itoa(len(author)) + "/" + author + "/" + id
}

// Head returns the position of the room's last event, 0 if it has none.
func (l *Log) Head(ctx context.Context, room string) (uint64, error) {
	m, err := l.stream.GetLastMsgForSubject(ctx, Subject(room))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("room head: %w: %w", chat.ErrLogDown, err)
	}
	return m.Sequence, nil
}

// headsBatch is how many rooms one batched direct get asks about: the
// server answers a multi-last request for at most 1,024 subjects.
const headsBatch = 1024

// Heads returns the position of each room's last event; a room without
// events is absent. One batched direct get (multi-last) asks about up to
// 1,024 rooms: the nodes' tail checks ask about every idle room with
// clients each interval, and a request per room was as many requests.
func (l *Log) Heads(ctx context.Context, rooms []string) (map[string]uint64, error) {
	for _, room := range rooms {
		if err := chat.ValidateRoomID(room); err != nil {
			return nil, err
		}
	}
	heads := make(map[string]uint64, len(rooms))
	for len(rooms) > 0 {
		k := min(len(rooms), headsBatch)
		if err := l.heads(ctx, rooms[:k], heads); err != nil {
			return nil, fmt.Errorf("room heads: %w: %w", chat.ErrLogDown, err)
		}
		rooms = rooms[k:]
	}
	return heads, nil
}

func (l *Log) heads(ctx context.Context, rooms []string, into map[string]uint64) error {
	subjects := make([]string, len(rooms))
	for i, room := range rooms {
		subjects[i] = Subject(room)
	}
	call, reply, end, err := l.gets.open(len(rooms))
	if err != nil {
		return err
	}
	defer end()
	req, _ := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
	}{subjects})
	if err := l.nc.PublishRequest("$JS.API.DIRECT.GET."+StreamName, reply, req); err != nil {
		return err
	}
	var sent uint64 // seq of the last answer, which the next one names
	for {
		m, err := call.next(ctx, 10*time.Second)
		if err != nil {
			return err
		}
		switch m.Header.Get("Status") {
		case "404":
			return nil // none of the rooms has an event
		case "204":
			return checkBatchChain(m, sent) // end of the answers
		case "":
		default:
			return fmt.Errorf("direct get answered %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		subject := m.Header.Get(jetstream.SubjectHeader)
		if err != nil || !strings.HasPrefix(subject, RoomPrefix) {
			return fmt.Errorf("direct get: an answer for %q at %q", subject, m.Header.Get(jetstream.SequenceHeader))
		}
		if err := checkBatchChain(m, sent); err != nil {
			return err
		}
		sent = seq
		into[subject[len(RoomPrefix):]] = seq
	}
}

// Get returns the event at seq if it belongs to room.
func (l *Log) Get(ctx context.Context, room string, seq uint64) (chat.Event, error) {
	subject, data, err := l.getMsg(ctx, seq)
	if err != nil {
		return chat.Event{}, err
	}
	if subject != Subject(room) {
		return chat.Event{}, chat.Errorf(chat.ErrNotFound, "no event %d in room %s", seq, room)
	}
	ev, err := chat.DecodeBody(data)
	if err != nil {
		return chat.Event{}, chat.Errorf(chat.ErrNotFound, "event %d cannot be decoded", seq)
	}
	ev.Seq = seq
	return ev, nil
}

// getMsg reads the message at seq. Direct gets may be answered by a replica
// that has not applied seq yet, so "not found" is asked again of the stream
// leader before it is believed.
func (l *Log) getMsg(ctx context.Context, seq uint64) (subject string, data []byte, err error) {
	m, err := l.stream.GetMsg(ctx, seq)
	if err == nil {
		return m.Subject, m.Data, nil
	}
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", nil, fmt.Errorf("get event: %w: %w", chat.ErrLogDown, err)
	}
	req, _ := json.Marshal(map[string]uint64{"seq": seq})
	resp, err := l.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+StreamName, req)
	if err != nil {
		return "", nil, fmt.Errorf("get event: %w: %w", chat.ErrLogDown, err)
	}
	var out struct {
		Message *struct {
			Subject string `json:"subject"`
			Data    []byte `json:"data"`
		} `json:"message"`
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &out); err != nil {
		return "", nil, fmt.Errorf("get event: %w", err)
	}
	if out.Message == nil {
		if out.Error != nil && out.Error.Code == 404 {
			return "", nil, chat.Errorf(chat.ErrNotFound, "no event %d", seq)
		}
		return "", nil, fmt.Errorf("get event: %w: leader answered %s", chat.ErrLogDown, resp.Data)
	}
	return out.Message.Subject, out.Message.Data, nil
}

// Recoverable reports whether the log still holds everything after since in
// the room: the event at since (or, for 0, the room's first event, which is
// always room.created) has not been removed by the stream's limits.
func (l *Log) Recoverable(ctx context.Context, room string, since uint64) (bool, error) {
	if since > 0 {
		_, err := l.Get(ctx, room, since)
		if chat.ErrorCode(err) == chat.ErrNotFound {
			return false, nil
		}
		return err == nil, err
	}
	m, err := l.stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(Subject(room)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true, nil // the room has no event at all yet
	}
	if err != nil {
		return false, fmt.Errorf("first event: %w: %w", chat.ErrLogDown, err)
	}
	ev, err := chat.DecodeBody(m.Data)
	return err == nil && ev.Type == chat.RoomCreated, nil
}

const replayBatch = 512

// lastSeqHeader names the previous seq: of the subject, on a republished
// event; of the batch, on a batched direct get's answer.
const lastSeqHeader = "Nats-Last-Sequence"

type directGetRequest struct {
	Seq     uint64 `json:"seq"`
	NextFor string `json:"next_by_subj"`
	Batch   int    `json:"batch"`
}

// lastBefore returns the seq of room's last event before seq, 0 if none.
func (l *Log) lastBefore(ctx context.Context, room string, seq uint64) (uint64, error) {
	if seq <= 1 {
		return 0, nil
	}
	req, _ := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
		UpToSeq   uint64   `json:"up_to_seq"`
		Batch     int      `json:"batch"`
	}{[]string{Subject(room)}, seq - 1, 1})
	call, reply, end, err := l.gets.open(1)
	if err != nil {
		return 0, err
	}
	defer end()
	if err := l.nc.PublishRequest("$JS.API.DIRECT.GET."+StreamName, reply, req); err != nil {
		return 0, err
	}
	var last uint64
	for {
		m, err := call.next(ctx, 5*time.Second)
		if err != nil {
			return 0, fmt.Errorf("last event of %s before %d: %w", room, seq, err)
		}
		switch m.Header.Get("Status") {
		case "404":
			return 0, nil
		case "204":
			if err := checkBatchChain(m, last); err != nil {
				return 0, fmt.Errorf("last event of %s before %d: %w", room, seq, err)
			}
			return last, nil
		case "":
			if s, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64); err == nil {
				last = s
			}
		default:
			return 0, fmt.Errorf("last event of %s before %d: direct get answered %s %s", room, seq, m.Header.Get("Status"), m.Header.Get("Description"))
		}
	}
}

// Replay calls fn for each of the room's events with after < seq <= upto, in
// order, with Seq and Prev set. The caller has checked with Recoverable that
// the event at after is still held, so the first event's Prev is after.
// Undecodable events are passed as chat.Invalid to keep the chain whole.
func (l *Log) Replay(ctx context.Context, room string, after, upto uint64, fn func(chat.Event) error) error {
	if upto <= after {
		return nil
	}
	subj := Subject(room)
	call, reply, end, err := l.gets.open(replayBatch)
	if err != nil {
		return fmt.Errorf("replay: %w: %w", chat.ErrLogDown, err)
	}
	defer end()
	api := "$JS.API.DIRECT.GET." + StreamName
	prev, next := after, after+1
	for next <= upto {
		// The room holds at most upto-next+1 events up to upto: a batch
		// need not ask for more.
		n := int(min(replayBatch, upto-next+1))
		req, _ := json.Marshal(directGetRequest{Seq: next, NextFor: subj, Batch: n})
		if err := l.nc.PublishRequest(api, reply, req); err != nil {
			return fmt.Errorf("replay: %w: %w", chat.ErrLogDown, err)
		}
		got := 0
		var sent uint64 // seq of this batch's last answer, which the next one names
	batch:
		for {
			m, err := call.next(ctx, 10*time.Second)
			if err != nil {
				return fmt.Errorf("replay: %w: %w", chat.ErrLogDown, err)
			}
			switch m.Header.Get("Status") {
			case "404":
				return nil // nothing more in the room
			case "204":
				if err := checkBatchChain(m, sent); err != nil {
					return fmt.Errorf("replay: %w: %w", chat.ErrLogDown, err)
				}
				break batch // end of this batch
			case "":
			default:
				return fmt.Errorf("replay: direct get answered %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
			}
			seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			if err != nil {
				return fmt.Errorf("replay: bad sequence header: %w", err)
			}
			if err := checkBatchChain(m, sent); err != nil {
				return fmt.Errorf("replay: %w: %w", chat.ErrLogDown, err)
			}
			sent = seq
			got++
			if seq > upto {
				// Drain the rest of the batch before returning.
				next = upto + 1
				continue
			}
			ev := DecodeStored(m.Data, room)
			ev.Seq, ev.Prev = seq, prev
			if err := fn(ev); err != nil {
				return err
			}
			prev, next = seq, seq+1
		}
		if got == 0 {
			return nil
		}
	}
	return nil
}

// checkBatchChain fails a batched get (a replay, the rooms' heads) that lost
// an answer on the way: each answer of a batched direct get, and its
// end-of-batch status, names the seq of the answer before it in the batch (0
// for the first). Servers that do not send the header are trusted.
func checkBatchChain(m *nats.Msg, sent uint64) error {
	h := m.Header.Get(lastSeqHeader)
	if h == "" {
		return nil
	}
	if last, err := strconv.ParseUint(h, 10, 64); err != nil || last != sent {
		return fmt.Errorf("an answer of the batch was lost (it follows %s, the last received was %d)", h, sent)
	}
	return nil
}

// DecodeStored decodes a stored body, or returns the chat.Invalid placeholder
// for a body that is not a valid event of room.
func DecodeStored(data []byte, room string) chat.Event {
	ev, err := chat.DecodeBody(data)
	if err != nil || ev.Room != room || chat.ValidateRoomID(room) != nil {
		return chat.Event{Type: chat.Invalid, Room: room}
	}
	return ev
}

// Subscribe starts the room's live feed (republished events, with seq and
// prev from the Nats-Sequence and Nats-Last-Sequence headers) and its typing
// feed. Handlers run on the subscription's goroutine, one message at a time.
func (l *Log) Subscribe(room string, onEvent func(chat.Event), onSignal func(chat.Signal)) (func(), error) {
	subj := Subject(room)
	live, err := l.nc.Subscribe(LivePrefix+room, func(m *nats.Msg) {
		seq, err1 := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		prev, err2 := strconv.ParseUint(m.Header.Get(lastSeqHeader), 10, 64)
		if err1 != nil || err2 != nil || m.Header.Get(jetstream.SubjectHeader) != subj {
			return // not a republished event of this room: ignore
		}
		ev := l.dec.decode(seq, m.Data, room)
		ev.Prev = prev
		onEvent(ev)
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe live %s: %w", room, err)
	}
	_ = live.SetPendingLimits(1<<20, 256<<20)
	signals, err := l.nc.Subscribe(SignalPrefix+room, func(m *nats.Msg) {
		kind, user, ok := strings.Cut(string(m.Data), " ")
		if !ok || chat.ValidateUserID(user) != nil {
			return
		}
		switch kind {
		case chat.SignalTyping, chat.SignalOnline, chat.SignalOffline:
			onSignal(chat.Signal{Kind: kind, User: user})
		}
	})
	if err != nil {
		_ = live.Unsubscribe()
		return nil, fmt.Errorf("subscribe signals %s: %w", room, err)
	}
	return func() {
		_ = live.Unsubscribe()
		_ = signals.Unsubscribe()
	}, nil
}

// Signal tells every node with clients in room that a user is typing, came
// online or went offline (core NATS, at most once, never stored).
func (l *Log) Signal(room string, sig chat.Signal) error {
	return l.nc.Publish(SignalPrefix+room, []byte(sig.Kind+" "+sig.User))
}

// Attach opens the existing CHAT stream and room directory without changing
// their configuration: for tools (the projector) that must not fight the
// nodes over replicas or limits.
func Attach(ctx context.Context, nc *nats.Conn) (*Log, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	stream, err := js.Stream(ctx, StreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s (has a chatd node started?): %w", StreamName, err)
	}
	kv, err := js.KeyValue(ctx, DirectoryName)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", DirectoryName, err)
	}
	return &Log{nc: nc, js: js, stream: stream, kv: kv, gets: batchGets{nc: nc}}, nil
}
