package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// batchGets runs batched direct gets (many messages answer one request) for
// the whole connection over one wildcard inbox subscription, each call on its
// own reply subject under it.
//
// A subscription per call, as nats.go's SubscribeSync makes, costs a SUB and
// an UNSUB under the connection's lock and a 65,536-slot channel (512 KiB,
// zeroed) each: a node resuming 5,000 clients spent a third of its CPU
// clearing those channels, and the GC the work they caused.
type batchGets struct {
	nc   *nats.Conn
	once sync.Once
	err  error

	prefix string // the calls' reply subjects: prefix + token

	mu    sync.Mutex
	seq   uint64
	calls map[string]*batchCall
}

// batchCall is one call's answers. The caller asks for at most cap(ch)
// messages before reading them all, so the channel never fills; if it did,
// the call fails rather than skip a message.
type batchCall struct {
	ch       chan *nats.Msg
	overflow chan struct{} // closed when an answer found ch full
	once     sync.Once
	timer    *time.Timer // next's, used by the caller's goroutine only
}

func (b *batchGets) start() error {
	b.once.Do(func() {
		b.prefix = b.nc.NewInbox() + "."
		b.calls = make(map[string]*batchCall)
		_, b.err = b.nc.Subscribe(b.prefix+"*", b.route)
	})
	return b.err
}

func (b *batchGets) route(m *nats.Msg) {
	b.mu.Lock()
	c := b.calls[m.Subject[len(b.prefix):]]
	b.mu.Unlock()
	if c == nil {
		return // the call ended (timed out): a late answer
	}
	select {
	case c.ch <- m:
	default:
		c.once.Do(func() { close(c.overflow) })
	}
}

// open starts a call that asks for at most n messages at a time. Publish its
// requests with reply; end releases it.
func (b *batchGets) open(n int) (c *batchCall, reply string, end func(), err error) {
	if err := b.start(); err != nil {
		return nil, "", nil, err
	}
	c = &batchCall{ch: make(chan *nats.Msg, n+1), overflow: make(chan struct{})} // +1: the end-of-batch status
	b.mu.Lock()
	b.seq++
	token := strconv.FormatUint(b.seq, 36)
	b.calls[token] = c
	b.mu.Unlock()
	return c, b.prefix + token, func() {
		if c.timer != nil {
			c.timer.Stop()
		}
		b.mu.Lock()
		delete(b.calls, token)
		b.mu.Unlock()
	}, nil
}

var errBatchOverflow = errors.New("direct get: more answers than asked for")

// next waits up to timeout for the call's next answer.
func (c *batchCall) next(ctx context.Context, timeout time.Duration) (*nats.Msg, error) {
	if c.timer == nil {
		c.timer = time.NewTimer(timeout)
	} else {
		c.timer.Reset(timeout)
	}
	select {
	case m := <-c.ch:
		select {
		case <-c.overflow: // closed before any later answer was routed
			return nil, errBatchOverflow
		default:
			return m, nil
		}
	case <-c.overflow:
		return nil, errBatchOverflow
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.timer.C:
		return nil, fmt.Errorf("direct get: no answer within %s: %w", timeout, context.DeadlineExceeded)
	}
}
