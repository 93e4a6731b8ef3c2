package ws

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// idler holds the readers of idle connections: no goroutine each, but the
// connection's socket in an epoll set of the server's, armed for one event
// (EPOLLONESHOT). One goroutine waits on that set, through the Go poller
// (the epoll descriptor is itself pollable), and starts a reader's serve
// when its socket becomes readable, hangs up or fails.
//
// The Go runtime keeps the socket in its own epoll set as well; the two do
// not interfere. A closed socket leaves the set by itself, without an event,
// so a connection closed from this side wakes its reader with wake.
type idler struct {
	epfd int
	file *os.File // epfd, for the Go poller
	raw  syscall.RawConn

	mu     sync.Mutex
	parked map[uint64]*reader
	nextID uint64
	closed bool
	count  atomic.Int64
}

func newIdler() *idler {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil
	}
	f := os.NewFile(uintptr(fd), "epoll")
	raw, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil
	}
	p := &idler{epfd: fd, file: f, raw: raw, parked: make(map[uint64]*reader)}
	go p.loop()
	return p
}

// park puts r's connection in the set and reports whether the reader may
// return: true once the set (or a wake that came meanwhile) owns it; false
// if the reader must go on reading in the library.
func (p *idler) park(r *reader) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	if p.closed || r.closedHere {
		p.mu.Unlock()
		return false // a closed connection: the reader's Read reports it
	}
	if r.idleID == 0 {
		p.nextID++
		r.idleID = p.nextID
	}
	p.parked[r.idleID] = r
	p.count.Add(1)
	op := syscall.EPOLL_CTL_MOD
	if !r.registered {
		// Set before the socket is armed: once it is, its event may
		// start serve (and park again) on another goroutine.
		op, r.registered = syscall.EPOLL_CTL_ADD, true
	}
	p.mu.Unlock()
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(r.idleID)), Pad: int32(uint32(r.idleID >> 32)),
	}
	var err error
	cerr := r.raw.Control(func(fd uintptr) {
		err = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err == nil && cerr == nil {
		return true
	}
	// Not armed. Unless a wake took the reader meanwhile (and serves
	// it), it goes on reading.
	return p.take(r.idleID, r) == nil
}

// take removes the parked reader r (or, r nil, whichever has id) and
// returns it; nil if none is parked under id.
func (p *idler) take(id uint64, r *reader) *reader {
	p.mu.Lock()
	defer p.mu.Unlock()
	got := p.parked[id]
	if got == nil || (r != nil && got != r) {
		return nil
	}
	delete(p.parked, id)
	p.count.Add(-1)
	return got
}

// wake serves r now if it is parked, and keeps it from parking again: its
// connection was closed here, and a closed socket leaves the epoll set
// without an event.
func (p *idler) wake(r *reader) {
	if p == nil {
		return
	}
	p.mu.Lock()
	r.closedHere = true
	parked := r.idleID != 0 && p.parked[r.idleID] == r
	if parked {
		delete(p.parked, r.idleID)
		p.count.Add(-1)
	}
	p.mu.Unlock()
	if parked {
		go r.serve()
	}
}

func (p *idler) loop() {
	events := make([]syscall.EpollEvent, 128)
	for {
		var n int
		var werr error
		err := p.raw.Read(func(fd uintptr) bool {
			n, werr = syscall.EpollWait(int(fd), events, 0)
			if werr == syscall.EINTR {
				n, werr = 0, nil
			}
			return n > 0 || werr != nil
		})
		if err != nil || werr != nil {
			return // closed
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if r := p.take(id, nil); r != nil {
				go r.serve()
			}
		}
	}
}

// close stops the loop; nothing parks afterwards. Parked readers stay until
// their connections close.
func (p *idler) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.file.Close()
}

func (p *idler) idle() int64 {
	if p == nil {
		return 0
	}
	return p.count.Load()
}
