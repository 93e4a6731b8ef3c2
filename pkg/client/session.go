package client

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/coder/websocket"

	"github.com/jetchat/jetchat/pkg/chat"
)

// connect dials, says hello and waits for welcome. A rejected hello is
// returned as the server's *chat.Error.
func (c *Client) connect(ctx context.Context) (*websocket.Conn, string, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	token := c.opts.Token
	if c.opts.TokenFunc != nil {
		t, err := c.opts.TokenFunc(ctx)
		if err != nil {
			return nil, "", fmt.Errorf("client: get token: %w", err)
		}
		token = t
	}
	conn, _, err := websocket.Dial(ctx, c.opts.URL, &websocket.DialOptions{
		HTTPClient: c.opts.HTTPClient,
		HTTPHeader: c.opts.Header,
	})
	if err != nil {
		return nil, "", fmt.Errorf("client: %w", err)
	}
	conn.SetReadLimit(readLimit)
	hello := chat.ClientFrame{Type: chat.FrameHello, Ref: strconv.FormatUint(c.refs.Add(1), 10), Token: token}
	if err := writeFrame(ctx, conn, hello); err != nil {
		_ = conn.CloseNow()
		return nil, "", fmt.Errorf("client: %w", err)
	}
	for {
		typ, msg, err := conn.Read(ctx)
		if err != nil {
			_ = conn.CloseNow()
			return nil, "", fmt.Errorf("client: hello: %w", err)
		}
		if typ != websocket.MessageText {
			continue
		}
		var reply *chat.ServerFrame
		_ = chat.SplitFrames(msg, func(b []byte) error {
			var f chat.ServerFrame
			if reply == nil && json.Unmarshal(b, &f) == nil && (f.Type == chat.FrameWelcome || f.Type == chat.FrameError) {
				reply = &f
			}
			return nil
		})
		switch {
		case reply == nil:
			continue
		case reply.Type == chat.FrameError:
			_ = conn.CloseNow()
			return nil, "", &chat.Error{Code: reply.Code, Message: reply.Message}
		}
		return conn, reply.User, nil
	}
}

// run reads the connection and, when it breaks, reconnects and resumes, until
// Close or a close code that forbids reconnecting.
func (c *Client) run(conn *websocket.Conn) {
	defer c.wg.Done()
	var err error
	for {
		err = c.read(conn)
		c.mu.Lock()
		c.conn = nil
		closing := c.closed
		c.mu.Unlock()
		if closing { // Close owns the connection and closes it cleanly
			err = ErrClosed
			break
		}
		_ = conn.CloseNow()
		if !reconnectable(err) {
			err = fmt.Errorf("client: connection closed: %w", err)
			break
		}
		c.log.Info("connection lost; reconnecting", "err", err)
		if conn, err = c.reconnect(); err != nil {
			break
		}
	}
	c.stop(err)
}

// stop fails the client for good: waiters return err, Events is closed.
func (c *Client) stop(err error) {
	c.mu.Lock()
	c.closed, c.err, c.conn = true, err, nil
	c.mu.Unlock()
	c.cancel()
	if !errors.Is(err, ErrClosed) {
		c.log.Error("client stopped", "err", err)
	}
	c.report(err)
	close(c.events)
	close(c.done)
}

// reconnect dials with backoff until a connection is up and resumed.
func (c *Client) reconnect() (*websocket.Conn, error) {
	for attempt := 0; ; attempt++ {
		t := time.NewTimer(backoff(c.opts.MinBackoff, c.opts.MaxBackoff, attempt))
		select {
		case <-t.C:
		case <-c.quit:
			t.Stop()
			return nil, ErrClosed
		}
		conn, user, err := c.connect(c.ctx)
		switch {
		case err == nil:
			if !c.resume(conn, user) {
				return nil, ErrClosed
			}
			return conn, nil
		case c.ctx.Err() != nil:
			return nil, ErrClosed
		case !retryable(err):
			return nil, fmt.Errorf("client: reconnect: %w", err)
		}
		c.log.Warn("reconnect failed", "attempt", attempt+1, "err", err)
	}
}

// resume publishes a new connection, then rejoins every room from its
// position and resends every unacknowledged action, in their original order,
// before any other frame may be written on it.
func (c *Client) resume(conn *websocket.Conn, user string) bool {
	c.wmu.Lock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wmu.Unlock()
		_ = conn.CloseNow()
		return false
	}
	c.conn, c.user = conn, user
	c.gen++
	c.reconnects++
	frames := make([]chat.ClientFrame, 0, len(c.rooms)+len(c.pending))
	leaving := make(map[string]bool)
	for _, req := range c.pending {
		if req.frame.Type == chat.FrameLeave {
			leaving[req.frame.Room] = true
		}
	}
	for name, r := range c.rooms {
		r.repairing, r.needsRepair = false, false
		if leaving[name] {
			continue // rejoining would make us a member again before the leave
		}
		frames = append(frames, c.joinFrameLocked(name, r))
	}
	reqs := make([]*request, 0, len(c.pending))
	for ref, req := range c.pending {
		if req.frame.Type == chat.FrameUnsub { // the room is not rejoined: done
			delete(c.pending, ref)
			req.done <- chat.ServerFrame{Type: chat.FrameLeft, Ref: ref, Room: req.frame.Room}
			continue
		}
		reqs = append(reqs, req)
	}
	slices.SortFunc(reqs, func(a, b *request) int { return cmp.Compare(a.n, b.n) })
	for _, req := range reqs {
		frames = append(frames, req.frame)
	}
	c.wg.Add(1)
	c.mu.Unlock()
	// Written aside, so the read loop drains replies while they go out.
	go func() {
		defer c.wg.Done()
		defer c.wmu.Unlock()
		if err := c.write(conn, frames...); err != nil {
			c.log.Debug("resume write failed", "err", err)
		}
	}()
	return true
}

// read handles the connection's frames until it fails.
func (c *Client) read(conn *websocket.Conn) error {
	for {
		typ, msg, err := conn.Read(c.ctx)
		if err != nil {
			return err
		}
		if typ != websocket.MessageText {
			continue
		}
		if err := chat.SplitFrames(msg, func(b []byte) error { return c.handle(conn, b) }); err != nil {
			return err
		}
	}
}

func (c *Client) handle(conn *websocket.Conn, b []byte) error {
	var f chat.ServerFrame
	if err := json.Unmarshal(b, &f); err != nil {
		c.log.Warn("undecodable frame", "err", err)
		return nil
	}
	switch f.Type {
	case chat.FrameEvent:
		if f.Event != nil {
			return c.event(conn, f.Event)
		}
	case chat.FrameJoined:
		c.joined(conn, f)
	case chat.FrameError:
		if !c.joinFailed(f) {
			c.reply(f)
		}
	case chat.FrameAck, chat.FrameLeft:
		c.reply(f)
	case chat.FrameTyping:
		select {
		case c.typings <- f:
		default:
		}
	}
	return nil
}

// event checks an event against its room's chain and delivers it, or drops
// it and, on a gap, re-joins the room from its position.
func (c *Client) event(conn *websocket.Conn, e *chat.Event) error {
	c.mu.Lock()
	r := c.rooms[e.Room]
	if r == nil {
		c.mu.Unlock()
		return nil
	}
	last := r.pos
	v := r.check(e)
	var repair []chat.ClientFrame
	if v == gap {
		if r.joinRef == "" {
			repair = c.repairLocked(e.Room, r)
		} else { // one join at a time: repair once the one in flight is answered
			r.repairing, r.needsRepair = true, true
		}
	}
	c.mu.Unlock()
	switch v {
	case deliver:
		select {
		case c.events <- *e:
		case <-c.quit:
			return ErrClosed
		}
	case duplicate, gap:
		err := &ChainError{Room: e.Room, Last: last, Seq: e.Seq, Prev: e.Prev}
		c.log.Warn("broken chain", "err", err)
		c.report(err)
	}
	if repair != nil {
		c.send(conn, repair...)
	}
	return nil
}

// joined applies the answer to a room's join in flight and wakes its Join
// calls. Answers to joins no longer in flight are stale and ignored.
func (c *Client) joined(conn *websocket.Conn, f chat.ServerFrame) {
	c.mu.Lock()
	r := c.rooms[f.Room]
	if r == nil || f.Ref != r.joinRef {
		c.mu.Unlock()
		return
	}
	since := r.pos
	reset := r.joined(f.Head, f.Recovered == nil || *f.Recovered)
	var repair []chat.ClientFrame
	if r.needsRepair {
		r.needsRepair = false
		repair = c.repairLocked(f.Room, r)
	}
	waiters := r.waiters
	r.waiters = nil
	c.mu.Unlock()
	for _, w := range waiters {
		w <- f
	}
	if reset {
		c.report(&NotRecoveredError{Room: f.Room, Since: since, Head: f.Head})
	}
	if repair != nil {
		c.send(conn, repair...)
	}
}

// joinFailed handles an error answering a room's join in flight: retryable
// ones are retried after a delay; final ones drop the room and fail its Join
// calls. It reports whether f was such an error.
func (c *Client) joinFailed(f chat.ServerFrame) bool {
	c.mu.Lock()
	r := c.rooms[f.Room]
	if r == nil || f.Ref == "" || f.Ref != r.joinRef {
		c.mu.Unlock()
		return false
	}
	r.joinRef = ""
	if f.Code == chat.ErrUnavailable || f.Code == chat.ErrRateLimited {
		delay := time.Duration(f.RetryAfterMS) * time.Millisecond
		if delay <= 0 {
			delay = backoff(c.opts.MinBackoff, c.opts.MaxBackoff, r.failures)
		}
		r.failures++
		name, gen := f.Room, c.gen
		time.AfterFunc(delay, func() { c.retryJoin(name, r, gen) })
		c.mu.Unlock()
		return true
	}
	delete(c.rooms, f.Room)
	waiters, lost := r.waiters, r.subscribed
	r.waiters = nil
	c.mu.Unlock()
	for _, w := range waiters {
		w <- f
	}
	if lost { // a rejoin failed: nobody else hears of the room's loss
		c.report(fmt.Errorf("client: rejoin %s: %w", f.Room, &chat.Error{Code: f.Code, Message: f.Message}))
	}
	return true
}

// retryJoin sends a room's join again after a retryable error, unless the
// connection or the room changed meanwhile.
func (c *Client) retryJoin(name string, r *room, gen uint64) {
	c.mu.Lock()
	conn := c.conn
	if c.closed || conn == nil || c.gen != gen || c.rooms[name] != r || r.joinRef != "" {
		c.mu.Unlock()
		return
	}
	f := c.joinFrameLocked(name, r)
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()
	c.send(conn, f)
}

// reply hands an ack, left or error to the request it answers.
func (c *Client) reply(f chat.ServerFrame) {
	c.mu.Lock()
	req := c.pending[f.Ref]
	if req == nil {
		c.mu.Unlock()
		if f.Type == chat.FrameError {
			c.log.Warn("server error", "ref", f.Ref, "room", f.Room, "code", f.Code, "message", f.Message)
		}
		return
	}
	delete(c.pending, f.Ref)
	if req.frame.Type == chat.FrameLeave && f.Type != chat.FrameError {
		c.forgetLocked(req.frame.Room)
	}
	c.mu.Unlock()
	req.done <- f
}

// reconnectable reports whether a connection that failed with err may be
// redialed: transport failures and close codes 4000-4499 may.
func reconnectable(err error) bool {
	code := websocket.CloseStatus(err)
	return code == -1 || chat.CloseReconnects(int(code))
}

// retryable reports whether a failed (re)connect is worth another attempt.
func retryable(err error) bool {
	var ce *chat.Error
	if errors.As(err, &ce) {
		return ce.Code == chat.ErrUnavailable || ce.Code == chat.ErrRateLimited || ce.Code == chat.ErrInternal
	}
	return reconnectable(err)
}
