// Package client is jetchat's Go client. It keeps one WebSocket session to a
// jetchat server alive across network cuts and server restarts: it reconnects
// with backoff, resumes every joined room from the last event it delivered,
// checks each room's seq/prev chain and resends unacknowledged actions under
// their idempotency ids.
//
// It must never deliver an event twice or out of order within a room, and it
// speaks only the protocol of package chat: it imports no server package.
package client

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/jetchat/jetchat/pkg/chat"
)

// ErrClosed is returned by calls on a client that Close has stopped, and
// reported on Errors when Close stops it.
var ErrClosed = errors.New("client: closed")

const (
	readLimit    = 16 << 20 // server messages may batch many events
	dialTimeout  = 10 * time.Second
	writeTimeout = 10 * time.Second
	errorBuffer  = 64
	typingBuffer = 64
)

// Options configure a Client. URL and one of Token or TokenFunc are required.
type Options struct {
	URL       string                                    // ws:// or wss:// URL of the server's /ws
	Token     string                                    // JWT sent in hello
	TokenFunc func(ctx context.Context) (string, error) // if set, called before each (re)connect instead of using Token
	Header    http.Header                               // extra handshake headers (e.g. Origin)

	HTTPClient *http.Client  // optional, for the handshake
	Logger     *slog.Logger  // default: discard
	MinBackoff time.Duration // first reconnect delay bound; default 100ms
	MaxBackoff time.Duration // default 5s
	// EventBuffer is the capacity of the Events channel; default 1024.
	EventBuffer int
}

// Ack is the server's acknowledgement of an action: it is stored as event Seq.
type Ack struct {
	Room string
	ID   string
	Seq  uint64
	Dup  bool // the id had been stored before; Seq is the original's
}

// Joined is the server's answer to a join.
type Joined struct {
	Room      string
	Head      uint64 // the room's position when it went live
	Recovered bool   // false: since was older than the log keeps; the position was reset to Head
	Replayed  int    // events replayed after since
}

// JoinOption configures Join.
type JoinOption func(*joinOptions)

type joinOptions struct{ since *uint64 }

// Since makes Join replay every event after seq (0: from the room's start)
// before going live. Without it the room is joined live at its head.
func Since(seq uint64) JoinOption {
	return func(o *joinOptions) { o.since = &seq }
}

// request is an action or unsubscribe awaiting its reply. Guarded by Client.mu.
type request struct {
	frame chat.ClientFrame
	n     uint64                // ref as a number: resends go out in the original order
	done  chan chat.ServerFrame // buffered 1: the reply, delivered once
}

// Client is a resumable session with a jetchat server. It is safe for
// concurrent use.
type Client struct {
	opts Options
	log  *slog.Logger

	ctx       context.Context // cancelled by Close: bounds dials, reads and writes
	cancel    context.CancelFunc
	quit      chan struct{} // closed by Close
	done      chan struct{} // closed once the client has stopped; err is set then
	closeOnce sync.Once
	wg        sync.WaitGroup

	events  chan chat.Event
	typings chan chat.ServerFrame
	errs    chan error

	refs atomic.Uint64

	// wmu orders writes: a new connection's joins and resends go out before
	// any frame sent after it was published.
	wmu sync.Mutex

	mu         sync.Mutex
	conn       *websocket.Conn // nil while reconnecting
	gen        uint64          // counts connections
	user       string
	rooms      map[string]*room
	pending    map[string]*request // by ref
	reconnects int
	closed     bool  // Close was called or the client failed terminally
	err        error // why the client stopped; read it only after done is closed
}

// Dial connects and authenticates. The first connection must succeed: a
// rejected token is returned as a *chat.Error (code unauthorized). After that
// the client reconnects on its own until Close or a terminal close code.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if opts.URL == "" {
		return nil, errors.New("client: no URL")
	}
	c := newClient(opts)
	conn, user, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.conn, c.user, c.gen = conn, user, 1
	c.wg.Add(1)
	go c.run(conn)
	return c, nil
}

// newClient returns a client with opts' defaults filled in, not connected.
func newClient(opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 1024
	}
	c := &Client{
		opts:    opts,
		log:     opts.Logger,
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		events:  make(chan chat.Event, opts.EventBuffer),
		typings: make(chan chat.ServerFrame, typingBuffer),
		errs:    make(chan error, errorBuffer),
		rooms:   make(map[string]*room),
		pending: make(map[string]*request),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// User is the user the server authenticated.
func (c *Client) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// Events delivers every event of the joined rooms exactly once, in order
// within each room. Delivery blocks the connection: read it promptly (a
// reader too slow for the server is disconnected and resumed). It is closed
// when the client stops.
func (c *Client) Events() <-chan chat.Event { return c.events }

// Typings delivers other users' typing frames; they are dropped if the
// channel is full.
func (c *Client) Typings() <-chan chat.ServerFrame { return c.typings }

// Errors reports what callers cannot see otherwise: *ChainError,
// *NotRecoveredError, rooms lost on rejoin, and the terminal error. Reports
// are dropped if the channel (capacity 64) is full.
func (c *Client) Errors() <-chan error { return c.errs }

// Position is the seq of the last event delivered in room (or its head, if
// nothing was delivered since it was joined live); 0 if room is not joined.
func (c *Client) Position(room string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.rooms[room]; r != nil {
		return r.pos
	}
	return 0
}

// Reconnects is how many times the client has reconnected.
func (c *Client) Reconnects() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reconnects
}

// Join subscribes to room and waits for the server's joined. With Since, the
// events after that position are delivered on Events before the live ones.
// Read Events meanwhile: the replay comes before joined. Joining a room that
// is already joined keeps its position and ignores Since.
// A Join whose ctx ends may still take effect; Unsubscribe undoes it.
// Joined rooms are rejoined on every reconnect.
func (c *Client) Join(ctx context.Context, name string, opts ...JoinOption) (Joined, error) {
	if err := chat.ValidateRoomID(name); err != nil {
		return Joined{}, err
	}
	var o joinOptions
	for _, opt := range opts {
		opt(&o)
	}
	w := make(chan chat.ServerFrame, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Joined{}, c.stoppedErr()
	}
	r := c.rooms[name]
	if r == nil {
		r = newRoom(o.since)
		c.rooms[name] = r
	}
	r.waiters = append(r.waiters, w)
	conn := c.conn
	var f chat.ClientFrame
	if conn != nil && r.joinRef == "" { // else the join in flight, or the rejoin after reconnecting, answers
		f = c.joinFrameLocked(name, r)
	}
	c.mu.Unlock()
	if f.Type != "" {
		c.send(conn, f)
	}

	select {
	case res := <-w:
		if res.Type == chat.FrameError {
			return Joined{}, &chat.Error{Code: res.Code, Message: res.Message}
		}
		return Joined{Room: name, Head: res.Head, Recovered: res.Recovered == nil || *res.Recovered, Replayed: res.Replayed}, nil
	case <-ctx.Done():
		c.mu.Lock()
		if r := c.rooms[name]; r != nil {
			if i := slices.Index(r.waiters, w); i >= 0 {
				r.waiters = slices.Delete(r.waiters, i, i+1)
			}
		}
		c.mu.Unlock()
		return Joined{}, ctx.Err()
	case <-c.done:
		return Joined{}, c.err
	}
}

// Unsubscribe stops receiving room's events; the room's membership stays.
func (c *Client) Unsubscribe(ctx context.Context, name string) error {
	_, err := c.roundTrip(ctx, chat.ClientFrame{Type: chat.FrameUnsub, Room: name})
	var ce *chat.Error
	if errors.As(err, &ce) && ce.Code == chat.ErrNotJoined {
		return nil // not subscribed is what was asked for
	}
	return err
}

// Send posts text to room under a random idempotency id.
func (c *Client) Send(ctx context.Context, room, text string) (Ack, error) {
	return c.Do(ctx, chat.ClientFrame{Type: chat.FrameSend, Room: room, Text: text})
}

// SendID posts text to room under id: sending the same id again stores
// nothing new and returns the original's seq.
func (c *Client) SendID(ctx context.Context, room, id, text string) (Ack, error) {
	return c.Do(ctx, chat.ClientFrame{Type: chat.FrameSend, Room: room, ID: id, Text: text})
}

// Do performs any action frame (send, edit, delete, react, unreact, read,
// create, invite, leave) and waits for its ack. An empty ID is filled with a
// random one. Retryable errors (unavailable, rate_limited) and lost
// connections are retried with the same id until ctx ends; final errors are
// returned as *chat.Error. The room must be joined first, except for create.
func (c *Client) Do(ctx context.Context, f chat.ClientFrame) (Ack, error) {
	switch f.Type {
	case chat.FrameSend, chat.FrameEdit, chat.FrameDelete, chat.FrameReact, chat.FrameUnreact,
		chat.FrameRead, chat.FrameCreate, chat.FrameInvite, chat.FrameLeave:
	default:
		return Ack{}, chat.Errorf(chat.ErrBadRequest, "%q is not an action", f.Type)
	}
	if f.ID == "" {
		f.ID = rand.Text()
	} else if err := chat.ValidateClientID(f.ID); err != nil {
		return Ack{}, err
	}
	res, err := c.roundTrip(ctx, f)
	if err != nil {
		return Ack{}, err
	}
	return Ack{Room: f.Room, ID: f.ID, Seq: res.Seq, Dup: res.Dup}, nil
}

// Typing tells room's other subscribers that the user is typing. It is
// ephemeral: while reconnecting it is dropped.
func (c *Client) Typing(ctx context.Context, room string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	conn, closed := c.conn, c.closed
	c.mu.Unlock()
	if closed {
		return c.stoppedErr()
	}
	if conn == nil {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.write(conn, chat.ClientFrame{Type: chat.FrameTyping, Room: room})
}

// Drop closes the current connection abruptly, as a network cut would; the
// client reconnects and resumes. It is a hook for tests and benchmarks.
func (c *Client) Drop() {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		_ = conn.CloseNow()
	}
}

// Close closes the connection (status 1000), fails every call still waiting
// with ErrClosed, closes Events and waits for the client's goroutines.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		conn := c.conn
		c.mu.Unlock()
		if conn != nil {
			_ = conn.Close(websocket.StatusNormalClosure, "")
		}
		close(c.quit)
		c.cancel()
	})
	c.wg.Wait()
	return nil
}

// roundTrip sends an action or unsubscribe and waits for its reply, retrying
// retryable errors under the same id and ref.
func (c *Client) roundTrip(ctx context.Context, f chat.ClientFrame) (chat.ServerFrame, error) {
	n := c.refs.Add(1)
	f.Ref = strconv.FormatUint(n, 10)
	if b, err := json.Marshal(f); err != nil {
		return chat.ServerFrame{}, fmt.Errorf("encode %s: %w", f.Type, err)
	} else if len(b) > chat.MaxFrameBytes {
		return chat.ServerFrame{}, chat.Errorf(chat.ErrTooLarge, "frame is over %d bytes", chat.MaxFrameBytes)
	}
	for attempt := 0; ; attempt++ {
		req := &request{frame: f, n: n, done: make(chan chat.ServerFrame, 1)}
		if err := c.start(req); err != nil {
			return chat.ServerFrame{}, err
		}
		var res chat.ServerFrame
		select {
		case res = <-req.done:
		case <-ctx.Done():
			c.mu.Lock()
			if c.pending[f.Ref] == req {
				delete(c.pending, f.Ref)
			}
			c.mu.Unlock()
			return chat.ServerFrame{}, ctx.Err()
		case <-c.done:
			return chat.ServerFrame{}, c.err
		}
		if res.Type != chat.FrameError {
			return res, nil
		}
		delay, ok := c.retryDelay(res, f.Room, attempt)
		if !ok {
			return res, &chat.Error{Code: res.Code, Message: res.Message}
		}
		c.log.Debug("retrying", "type", f.Type, "room", f.Room, "id", f.ID, "code", res.Code, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return chat.ServerFrame{}, ctx.Err()
		case <-c.done:
			t.Stop()
			return chat.ServerFrame{}, c.err
		}
	}
}

// start registers req and, if connected, sends it. While reconnecting it is
// sent once the new connection is up.
func (c *Client) start(req *request) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.stoppedErr()
	}
	if req.frame.Type == chat.FrameUnsub {
		c.forgetLocked(req.frame.Room)
	}
	c.pending[req.frame.Ref] = req
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		c.send(conn, req.frame)
	}
	return nil
}

// retryDelay says whether an error reply is worth retrying, and after how long.
func (c *Client) retryDelay(f chat.ServerFrame, room string, attempt int) (time.Duration, bool) {
	switch f.Code {
	case chat.ErrUnavailable, chat.ErrRateLimited:
		if f.RetryAfterMS > 0 {
			return time.Duration(f.RetryAfterMS) * time.Millisecond, true
		}
	case chat.ErrNotJoined:
		// The room is being (re)joined on this connection: wait for it.
		c.mu.Lock()
		_, joining := c.rooms[room]
		c.mu.Unlock()
		if !joining {
			return 0, false
		}
	default:
		return 0, false
	}
	return backoff(c.opts.MinBackoff, c.opts.MaxBackoff, attempt), true
}

// stoppedErr is the error for calls made after the client stopped.
// Call it with mu held or after done is closed.
func (c *Client) stoppedErr() error {
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// joinFrameLocked builds the join frame for r and marks it in flight.
func (c *Client) joinFrameLocked(name string, r *room) chat.ClientFrame {
	ref := strconv.FormatUint(c.refs.Add(1), 10)
	r.joinRef = ref
	return chat.ClientFrame{Type: chat.FrameJoin, Ref: ref, Room: name, Since: r.since()}
}

// repairLocked starts re-joining r from its position after a gap: unsubscribe
// and join again with since, so the server replays what was missed.
func (c *Client) repairLocked(name string, r *room) []chat.ClientFrame {
	r.repairing = true
	unsub := chat.ClientFrame{Type: chat.FrameUnsub, Ref: strconv.FormatUint(c.refs.Add(1), 10), Room: name}
	return []chat.ClientFrame{unsub, c.joinFrameLocked(name, r)}
}

// forgetLocked stops tracking a room; Join calls waiting for it fail.
func (c *Client) forgetLocked(name string) {
	r := c.rooms[name]
	if r == nil {
		return
	}
	delete(c.rooms, name)
	for _, w := range r.waiters {
		w <- chat.ServerFrame{Type: chat.FrameError, Room: name, Code: chat.ErrNotJoined, Message: "unsubscribed while joining"}
	}
}

// report sends err on Errors unless the channel is full.
func (c *Client) report(err error) {
	select {
	case c.errs <- err:
	default:
		c.log.Warn("error dropped: Errors is full", "err", err)
	}
}

// send writes f, ignoring failures: a broken connection is noticed by the
// read loop, and whatever is pending is resent after reconnecting.
func (c *Client) send(conn *websocket.Conn, frames ...chat.ClientFrame) {
	if conn == nil {
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.write(conn, frames...); err != nil {
		c.log.Debug("write failed", "err", err)
	}
}

// write writes frames, one per message. Call it with wmu held.
func (c *Client) write(conn *websocket.Conn, frames ...chat.ClientFrame) error {
	for _, f := range frames {
		if err := writeFrame(c.ctx, conn, f); err != nil {
			return err
		}
	}
	return nil
}

func writeFrame(ctx context.Context, conn *websocket.Conn, f chat.ClientFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode %s: %w", f.Type, err)
	}
	// The write's own deadline: a cancelled write closes the connection, so
	// callers' contexts never reach it.
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("write %s: %w", f.Type, err)
	}
	return nil
}
