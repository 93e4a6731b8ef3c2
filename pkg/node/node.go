// Package node is one chatd node's application logic: sessions, access
// control, actions turned into events, and per-room hubs that deliver each
// room's events exactly once and in order, repairing any gap from the log.
//
// It speaks the domain (pkg/chat) and reaches the event log and the room
// directory through the small interfaces below; it knows nothing of NATS,
// HTTP or WebSocket, and must never block a hub on one slow connection.
package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/history"
)

// Log is the event log as the node uses it.
type Log interface {
	Append(ctx context.Context, ev chat.Event, expectNew bool) (seq uint64, dup bool, err error)
	AppendAsync(ev chat.Event) (wait func(ctx context.Context) (seq uint64, dup bool, err error), err error)
	Head(ctx context.Context, room string) (uint64, error)
	Heads(ctx context.Context, rooms []string) (map[string]uint64, error) // rooms without events are absent
	Get(ctx context.Context, room string, seq uint64) (chat.Event, error)
	Recoverable(ctx context.Context, room string, since uint64) (bool, error)
	Replay(ctx context.Context, room string, after, upto uint64, fn func(chat.Event) error) error
	Subscribe(room string, onEvent func(chat.Event), onSignal func(chat.Signal)) (stop func(), err error)
	Signal(room string, sig chat.Signal) error
}

// Directory is the room directory: rooms and memberships.
type Directory interface {
	CreateRoom(ctx context.Context, r chat.Room) error
	Room(ctx context.Context, id string) (chat.Room, error)
	Rooms(ctx context.Context) ([]chat.Room, error)
	AddMember(ctx context.Context, room string, m chat.Member) error
	RemoveMember(ctx context.Context, room, user string) error
	IsMember(ctx context.Context, room, user string) (bool, error)
	Members(ctx context.Context, room string) ([]chat.Member, error)
}

// History reads the message history projection.
type History interface {
	Messages(ctx context.Context, room string, p history.Page) ([]history.Message, error)
}

// Config holds a node's limits. Zero values take the defaults.
type Config struct {
	ID                string
	MaxRoomsPerConn   int           // default 100
	MaxConnsPerUser   int           // default 32
	SendRate          float64       // actions per second per connection; default 50
	SendBurst         int           // default 100
	TailCheckInterval time.Duration // how often idle rooms are checked for a lost last event; default 2s
	ReplayWindow      int           // events per room kept in memory to replay resuming clients from; default 128, -1 none
	ReplayMemory      int64         // bytes of frames all rooms keep for that together; default 128 MiB, -1 no cap
	History           History       // nil: history is unavailable
	Presence          Presence      // nil: no presence
	PresenceExpiry    time.Duration // entries not refreshed within it expire; default 30s
	Limiter           Limiter       // per-user send rate across nodes; nil: per connection only
	Recent            Recent        // the recent projection, for a fast first join; nil: history only
	Reads             Reads         // read markers and unread counts; nil: none
	RoomList          RoomList      // room list with counts and previews; nil: from the directory
}

func (c *Config) defaults() {
	if c.ID == "" {
		c.ID = "node-" + randomID()[:8]
	}
	if c.MaxRoomsPerConn == 0 {
		c.MaxRoomsPerConn = 100
	}
	if c.MaxConnsPerUser == 0 {
		c.MaxConnsPerUser = 32
	}
	if c.SendRate == 0 {
		c.SendRate = 50
	}
	if c.SendBurst == 0 {
		c.SendBurst = 100
	}
	if c.PresenceExpiry == 0 {
		c.PresenceExpiry = 30 * time.Second
	}
	if c.ReplayWindow == 0 {
		c.ReplayWindow = defaultReplayWindow
	}
	if c.ReplayMemory == 0 {
		c.ReplayMemory = defaultReplayMemory
	}
	if c.TailCheckInterval == 0 {
		c.TailCheckInterval = 2 * time.Second
	}
}

// Stats are the node's counters, read by the metrics endpoint.
type Stats struct {
	Sessions       atomic.Int64
	Rooms          atomic.Int64 // hubs: rooms with local clients
	Delivered      atomic.Int64 // event frames queued to clients (live)
	Replayed       atomic.Int64 // event frames queued to clients (replay)
	ReplayedMemory atomic.Int64 // of those, from the hubs' recent frames
	ReplayBytes    atomic.Int64 // bytes of frames the hubs keep for replays
	Appended       atomic.Int64
	Duplicates     atomic.Int64 // appends that hit the dedup window
	GapsRepaired   atomic.Int64 // live-path gaps filled from the log
	TailRepairs    atomic.Int64 // lost last events found by the tail check
	InvalidEvents  atomic.Int64 // undecodable events passed as placeholders
	SlowClosed     atomic.Int64
	RateLimited    atomic.Int64
	ClientErrors   atomic.Int64 // error frames sent
	InternalErrors atomic.Int64
}

// Node is one chatd node.
type Node struct {
	cfg    Config
	log    Log
	dir    Directory
	logger *slog.Logger
	Stats  Stats

	mu       sync.Mutex
	hubs     map[string]*hub
	sessions map[*Session]struct{}
	perUser  map[string]int
	closed   bool

	connSeq atomic.Uint64 // numbers sessions for presence entries

	stop         chan struct{}
	done         chan struct{}
	presenceDone chan struct{}
}

// New returns a running node. Close stops it.
func New(cfg Config, log Log, dir Directory, logger *slog.Logger) *Node {
	cfg.defaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		cfg: cfg, log: log, dir: dir, logger: logger,
		hubs:     make(map[string]*hub),
		sessions: make(map[*Session]struct{}),
		perUser:  make(map[string]int),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),

		presenceDone: make(chan struct{}),
	}
	go n.tailChecks()
	go n.presenceLoop()
	return n
}

// ID names the node (in welcome frames and metrics).
func (n *Node) ID() string { return n.cfg.ID }

// Config returns the node's effective configuration.
func (n *Node) Config() Config { return n.cfg }

// CheckRooms checks every room with local clients for events the live path
// lost; call it after the log connection reconnects.
func (n *Node) CheckRooms() {
	n.checkTails(n.hubList(), 0)
}

// checkTails asks the log, all at once, for the heads of the rooms that
// brought no event within minIdle (their tail is not in flight), and fetches
// the events the live path lost at their ends.
func (n *Node) checkTails(hs []*hub, minIdle time.Duration) {
	var idle []*hub
	var rooms []string
	for _, h := range hs {
		if h.idle(minIdle) {
			idle = append(idle, h)
			rooms = append(rooms, h.room)
		}
	}
	if len(rooms) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	heads, err := n.log.Heads(ctx, rooms)
	if err != nil {
		n.logger.Warn("tail check", "rooms", len(rooms), "err", err)
		return
	}
	for _, h := range idle {
		h.repairTail(heads[h.room])
	}
}

// hubList snapshots the node's hubs.
func (n *Node) hubList() []*hub {
	n.mu.Lock()
	defer n.mu.Unlock()
	hs := make([]*hub, 0, len(n.hubs))
	for _, h := range n.hubs {
		hs = append(hs, h)
	}
	return hs
}

func (n *Node) tailChecks() {
	defer close(n.done)
	t := time.NewTicker(n.cfg.TailCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			hs := n.hubList()
			n.checkTails(hs, n.cfg.TailCheckInterval/2)
			n.capReplays(hs)
		}
	}
}

// replayShare is what one room's recent frames may hold while all rooms'
// together hold more than ReplayMemory: an equal share.
func (n *Node) replayShare() int {
	return int(n.cfg.ReplayMemory / max(n.Stats.Rooms.Load(), 1))
}

// capReplays trims every room's recent frames to its share while they hold
// more than ReplayMemory together. A room trims itself when it delivers; this
// catches the rooms that went quiet holding more than their share.
func (n *Node) capReplays(hs []*hub) {
	if n.cfg.ReplayMemory < 0 || n.Stats.ReplayBytes.Load() <= n.cfg.ReplayMemory {
		return
	}
	share := n.replayShare()
	for _, h := range hs {
		h.mu.Lock()
		n.Stats.ReplayBytes.Add(int64(h.recent.trim(share)))
		h.mu.Unlock()
	}
}

// Shutdown closes every session with code (chat.CloseShutdown tells clients
// to reconnect elsewhere) and stops the node. New sessions are refused.
func (n *Node) Shutdown(code int, reason string) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	ss := make([]*Session, 0, len(n.sessions))
	for s := range n.sessions {
		ss = append(ss, s)
	}
	n.mu.Unlock()
	for _, s := range ss {
		s.conn.Close(code, reason)
	}
	close(n.stop)
	<-n.done
	<-n.presenceDone
}

// acquireHub returns the room's hub, creating and starting it if needed, with
// one more reference held.
func (n *Node) acquireHub(room string) (*hub, error) {
	n.mu.Lock()
	h := n.hubs[room]
	if h == nil {
		h = newHub(n, room)
		n.hubs[room] = h
		n.Stats.Rooms.Add(1)
	}
	h.refs++
	n.mu.Unlock()
	if err := h.start(); err != nil {
		n.releaseHub(h)
		return nil, err
	}
	return h, nil
}

func (n *Node) releaseHub(h *hub) {
	n.mu.Lock()
	h.refs--
	last := h.refs == 0
	if last {
		delete(n.hubs, h.room)
		n.Stats.Rooms.Add(-1)
	}
	n.mu.Unlock()
	if last {
		h.close()
	}
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
