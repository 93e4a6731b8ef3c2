package localcluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// ferret is an embedded FerretDB (v1, SQLite backend) that can be stopped
// and started again on the same port and data, as a MongoDB outage would.
// It is a test double for MongoDB's wire protocol, never a store to ship.
type ferret struct {
	addr   string // 127.0.0.1:port, the same on every start
	dir    string // SQLite databases
	logger *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs FerretDB on f.addr (a free port on the first start).
func (f *ferret) start() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel != nil {
		return fmt.Errorf("ferretdb is running")
	}
	addr := f.addr
	var db *ferretdb.FerretDB
	var err error
	// The port of a stopped instance may linger for a moment.
	for deadline := time.Now().Add(10 * time.Second); ; {
		db, err = ferretdb.New(&ferretdb.Config{
			Listener:  ferretdb.ListenerConfig{TCP: addr},
			Logger:    f.logger,
			Handler:   "sqlite",
			SQLiteURL: "file:" + f.dir + "/",
		})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("start ferretdb on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = db.Run(ctx)
	}()
	f.cancel, f.done = cancel, done
	return waitTCP(context.Background(), f.addr, 10*time.Second)
}

// stop stops FerretDB and waits until its port is closed.
func (f *ferret) stop() {
	f.mu.Lock()
	cancel, done := f.cancel, f.done
	f.cancel, f.done = nil, nil
	f.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
	}
}
