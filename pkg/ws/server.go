// Package ws is jetchat's transport: the WebSocket protocol at /ws and the
// REST API at /api/v1, served with echo and coder/websocket.
//
// It decodes, authenticates and enforces transport limits, then hands frames
// to the node; it holds no chat state of its own and never lets a client's
// bytes crash the process or reach the log unvalidated.
package ws

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/jetchat/jetchat/pkg/auth"
	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/pkg/node"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures the transport. Zero values take the defaults.
type Config struct {
	Dev            bool     // serve POST /api/v1/dev/login
	AllowedOrigins []string // host patterns allowed to open /ws from a browser, e.g. "localhost:*"
	QueueSize      int      // frames queued per connection before it is closed as slow; default 1024
	WriteTimeout   time.Duration
	// WriteDelay is the least time between two writes to one connection:
	// frames that arrive meanwhile go out together in the next write. While
	// writes keep carrying several frames it doubles, up to MaxWriteDelay;
	// writes of one frame bring it back. A quiet connection writes at once;
	// a busy one trades a little latency for far fewer write calls.
	// Negative: the defaults.
	WriteDelay    time.Duration
	MaxWriteDelay time.Duration
	// AckDelay is how long after a connection's last write an ack may wait
	// while more of its sends are in flight, so that a fast sender's acks
	// share writes. An ack with none after it, or the first after a quiet
	// spell, goes out at once. 0: every ack at once. Negative: the default.
	AckDelay     time.Duration
	PingInterval time.Duration
	HelloTimeout time.Duration
	DevTokenTTL  time.Duration
	Ready        func(ctx context.Context) error // readiness of the node's dependencies
	Collectors   []prometheus.Collector          // more metrics for /metrics (the projector's)
	Static       http.Handler                    // served for every other GET (the web client); nil: none
}

func (c *Config) defaults() {
	if c.QueueSize == 0 {
		c.QueueSize = 1024
	}
	if c.WriteDelay < 0 {
		c.WriteDelay = DefaultWriteDelay
	}
	if c.MaxWriteDelay < 0 {
		c.MaxWriteDelay = DefaultMaxWriteDelay
	}
	c.MaxWriteDelay = max(c.MaxWriteDelay, c.WriteDelay)
	if c.AckDelay < 0 {
		c.AckDelay = DefaultAckDelay
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.PingInterval == 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.HelloTimeout == 0 {
		c.HelloTimeout = 10 * time.Second
	}
	if c.DevTokenTTL == 0 {
		c.DevTokenTTL = 24 * time.Hour
	}
}

// Server serves one node over HTTP.
type Server struct {
	cfg       Config
	node      *node.Node
	tokens    *auth.Tokens
	logger    *slog.Logger
	echo      *echo.Echo
	idler     *idler   // nil: readers of idle connections stay in the library
	pacers    []*pacer // write busy connections' batches between their writers' runs, one per core
	nextPacer atomic.Uint32
	writes    atomic.Int64 // WebSocket data messages written (by writers, senders and pacers)
}

// New returns the HTTP handler of a node.
func New(cfg Config, n *node.Node, tokens *auth.Tokens, logger *slog.Logger) *Server {
	cfg.defaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, node: n, tokens: tokens, logger: logger, idler: newIdler()}
	for range runtime.GOMAXPROCS(0) {
		s.pacers = append(s.pacers, newPacer())
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.httpError
	e.Use(middleware.Recover())
	e.Use(middleware.BodyLimit("64K"))

	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", s.ready)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}), newCollector(n, func() int64 { return s.idler.idle() }, s.writes.Load))
	reg.MustRegister(cfg.Collectors...)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	e.GET("/ws", s.serveWS)

	api := e.Group("/api/v1")
	if cfg.Dev {
		api.POST("/dev/login", s.devLogin)
	}
	// Authentication is per route, not per group: a group middleware would
	// answer 401 for paths that do not exist.
	api.GET("/rooms", s.listRooms, s.authenticate)
	api.POST("/rooms", s.createRoom, s.authenticate)
	api.GET("/rooms/:room", s.roomInfo, s.authenticate)
	api.GET("/rooms/:room/members", s.members, s.authenticate)
	api.GET("/rooms/:room/messages", s.messages, s.authenticate)
	api.GET("/rooms/:room/presence", s.presence, s.authenticate)
	api.POST("/rooms/:room/members", s.invite, s.authenticate)
	if cfg.Static != nil {
		// Any method, so that a POST to a path nobody serves (dev login
		// outside dev mode) is a 404, not a 405.
		static := echo.WrapHandler(cfg.Static)
		e.Any("/*", func(c echo.Context) error {
			if m := c.Request().Method; m != http.MethodGet && m != http.MethodHead {
				return echo.ErrNotFound
			}
			return static(c)
		})
	}
	s.echo = e
	return s
}

// Close releases what the server holds beyond its connections (the idler's
// epoll set, the pacers' goroutines). Call it after the node has closed its
// sessions.
func (s *Server) Close() {
	s.idler.close()
	for _, p := range s.pacers {
		p.close()
	}
}

// Echo exposes the router so other packages (the web client) can mount routes.
func (s *Server) Echo() *echo.Echo { return s.echo }

// The write delays' defaults. Measured (cmd/chatbench fanout, 10 rooms of
// 100, 400 messages/s each, 2 cores shared with the load tool): writing each
// frame at once spent a third of the CPU in write calls; a fixed 5 ms delay
// gave p99 350-580 ms, a fixed 50 ms delay p99 115-180 ms.
const (
	DefaultWriteDelay    = 2 * time.Millisecond
	DefaultMaxWriteDelay = 50 * time.Millisecond
	DefaultAckDelay      = 3 * time.Millisecond
)

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

func (s *Server) ready(c echo.Context) error {
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			return c.String(http.StatusServiceUnavailable, "not ready\n")
		}
	}
	return c.String(http.StatusOK, "ready\n")
}

// serveWS upgrades the request and runs the connection in a goroutine of its
// own: the handler's goroutine returns, and with it the stack that serving
// the HTTP request grew (a long-lived reader would keep it).
func (s *Server) serveWS(c echo.Context) error {
	h := &hijacker{ResponseWriter: c.Response()}
	ws, err := websocket.Accept(h, c.Request(), &websocket.AcceptOptions{
		OriginPatterns: s.cfg.AllowedOrigins,
	})
	if err != nil {
		return nil // Accept has answered (403 for a foreign Origin, 426 for a plain GET)
	}
	h.adopt()
	r := &reader{s: s, ws: ws, in: h.in, out: h.out, raw: h.raw}
	go r.run()
	return nil
}

// reader reads one connection's frames and serves them. While the
// connection is idle it has no goroutine: once no byte is pending, serve
// parks the reader in the server's idler and returns, and the idler starts
// serve again when the socket has bytes (or is closed). An idle connection
// thus costs no stack at all, where a goroutine blocked in the library
// would keep the one that reading and serving frames grew. A busy connection
// (busyFrames in a second) keeps its reader instead.
type reader struct {
	s    *Server
	ws   *websocket.Conn
	cn   *conn
	sess *node.Session
	in   *inbound
	out  *outbound       // the library's writer writes to it
	raw  syscall.RawConn // the socket, for the idler; nil: the reader never parks

	// Frames served in the second that began at secStart: a reader that
	// serves busyFrames in one goes on reading instead of parking.
	secStart  time.Time
	secFrames int

	// Guarded by the idler's lock.
	idleID     uint64 // the idler's name for it
	registered bool   // the socket is in the idler's epoll set
	closedHere bool   // the writer closed the connection: never park again
}

func (r *reader) run() {
	r.ws.SetReadLimit(chat.MaxFrameBytes)
	r.cn = newConn(r.ws, r.out, r.s.cfg.QueueSize, r.s.cfg.WriteTimeout, r.s.cfg.PingInterval, chat.CloseNoPong)
	r.cn.writeDelay, r.cn.maxWriteDelay, r.cn.ackDelay = r.s.cfg.WriteDelay, r.s.cfg.MaxWriteDelay, r.s.cfg.AckDelay
	r.cn.writes = &r.s.writes
	r.cn.pacer = r.s.pacers[int(r.s.nextPacer.Add(1))%len(r.s.pacers)]
	if r.s.idler != nil {
		r.cn.onClosed = func() { r.s.idler.wake(r) }
	}
	r.cn.start()
	sess, ok := r.s.hello(r.cn, r.in)
	if !ok {
		r.cn.Close(int(websocket.StatusNormalClosure), "")
		return
	}
	r.sess = sess
	if !r.park() {
		r.serve()
	}
}

// serve reads and serves frames until no byte is waiting, then parks the
// reader, or until the connection ends.
func (r *reader) serve() {
	ctx := context.Background()
	for {
		typ, data, err := r.ws.Read(ctx)
		if err != nil {
			// Closed by the peer, the writer, or over the read limit (1009).
			r.sess.Close()
			r.cn.Close(int(websocket.StatusNormalClosure), "")
			return
		}
		now := time.Now()
		switch {
		case r.in.isMarker(typ, data):
			// a ping or pong went by
		case typ != websocket.MessageText:
			r.sess.Reject(chat.Errorf(chat.ErrBadRequest, "binary frames are not supported: send JSON text"))
		default:
			r.count(now)
			f, err := chat.DecodeClientFrame(data)
			if err != nil {
				r.sess.Reject(err)
				break
			}
			if !r.s.handle(ctx, r.sess, r.cn, f) {
				r.sess.Close()
				return
			}
		}
		if !r.busy(now) && r.park() {
			return
		}
	}
}

// busyFrames is how many frames in a second make a connection busy: its
// reader then waits for the next frame in the library rather than parking.
// Parking after every frame cost a busy sender an epoll update, a wake-up
// through the idler and a new goroutine whose stack grew again, per frame:
// 5% of a node's CPU with ten senders at 640 messages a second. The reader
// of a connection that falls quiet keeps its goroutine until its next frame
// or pong (within the ping interval), then parks.
const busyFrames = 16

// count counts a frame served at now.
func (r *reader) count(now time.Time) {
	if now.Sub(r.secStart) >= time.Second {
		r.secStart, r.secFrames = now, 0
	}
	r.secFrames++
}

// busy reports whether the connection sent busyFrames in the second that
// has not ended at now.
func (r *reader) busy(now time.Time) bool {
	return r.secFrames >= busyFrames && now.Sub(r.secStart) < time.Second
}

// park hands the reader to the idler if no byte is pending; false if it
// keeps reading.
func (r *reader) park() bool {
	return r.raw != nil && !r.in.pending.Load() && r.s.idler.park(r)
}

// handle serves one frame. A panic is a bug: it is logged, the connection is
// closed with a reconnect code, and the node keeps serving everyone else.
func (s *Server) handle(ctx context.Context, sess *node.Session, cn *conn, f chat.ClientFrame) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("panic serving a frame", "type", f.Type, "room", f.Room, "user", sess.User(), "panic", r)
			cn.Close(chat.CloseServerError, "internal error: reconnect")
			ok = false
		}
	}()
	sess.Handle(ctx, f)
	return true
}

// hello reads the first frame, which must authenticate the connection.
func (s *Server) hello(cn *conn, in *inbound) (*node.Session, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HelloTimeout)
	defer cancel()
	typ, data, err := cn.ws.Read(ctx)
	for err == nil && in.isMarker(typ, data) { // a ping or pong before the hello
		typ, data, err = cn.ws.Read(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			cn.Close(chat.CloseHelloTimeout, "no hello in time")
		}
		return nil, false
	}
	fail := func(f chat.ClientFrame, err error, code int) (*node.Session, bool) {
		frame := mustJSON(chat.ServerFrame{Type: chat.FrameError, Ref: f.Ref, Code: chat.ErrorCode(err), Message: chat.ErrorMessage(err)})
		cn.Send(frame)
		cn.Close(code, chat.ErrorMessage(err))
		return nil, false
	}
	if typ != websocket.MessageText {
		return fail(chat.ClientFrame{}, chat.Errorf(chat.ErrBadRequest, "first frame must be a JSON hello"), chat.CloseProtocol)
	}
	f, err := chat.DecodeClientFrame(data)
	if err == nil && f.Type != chat.FrameHello {
		err = chat.Errorf(chat.ErrBadRequest, "first frame must be hello, not %q", truncate(f.Type, 32))
	}
	if err != nil {
		return fail(f, err, chat.CloseProtocol)
	}
	user, err := s.tokens.Verify(f.Token)
	if err != nil {
		return fail(f, err, chat.CloseUnauthorized)
	}
	sess, err := s.node.Open(user, cn)
	if err != nil {
		code := chat.CloseTooManyConns
		if chat.ErrorCode(err) == chat.ErrUnavailable {
			code = chat.CloseShutdown
		}
		return fail(f, err, code)
	}
	cn.Send(mustJSON(chat.ServerFrame{Type: chat.FrameWelcome, Ref: f.Ref, User: user, Node: s.node.ID(), Protocol: chat.ProtocolVersion}))
	return sess, true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// bearer extracts the token of an Authorization: Bearer header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// httpError writes every error as {"code","message"} with a status that
// matches the code. Internal errors are logged once, here.
func (s *Server) httpError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code := chat.ErrBadRequest
		switch he.Code {
		case http.StatusNotFound, http.StatusMethodNotAllowed:
			code = chat.ErrNotFound
		case http.StatusRequestEntityTooLarge:
			code = chat.ErrTooLarge
		case http.StatusUnauthorized:
			code = chat.ErrUnauthorized
		}
		msg, _ := he.Message.(string)
		if msg == "" {
			msg = http.StatusText(he.Code)
		}
		_ = c.JSON(he.Code, map[string]string{"code": code, "message": msg})
		return
	}
	code := chat.ErrorCode(err)
	if code == chat.ErrInternal {
		s.logger.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
	}
	_ = c.JSON(httpStatus(code), map[string]string{"code": code, "message": chat.ErrorMessage(err)})
}

func httpStatus(code string) int {
	switch code {
	case chat.ErrBadRequest, chat.ErrUnknownFrame, chat.ErrNotJoined:
		return http.StatusBadRequest
	case chat.ErrUnauthorized:
		return http.StatusUnauthorized
	case chat.ErrForbidden:
		return http.StatusForbidden
	case chat.ErrNotFound:
		return http.StatusNotFound
	case chat.ErrConflict:
		return http.StatusConflict
	case chat.ErrTooLarge:
		return http.StatusRequestEntityTooLarge
	case chat.ErrRateLimited, chat.ErrLimit:
		return http.StatusTooManyRequests
	case chat.ErrUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
