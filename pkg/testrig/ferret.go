package testrig

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// RunFerret starts an embedded FerretDB (v1, SQLite backend in a temp dir) on
// a free loopback port and returns its MongoDB URI; it stops when the test
// ends. It stands in for MongoDB's wire protocol in tests of the MongoDB
// adapters, never for MongoDB's performance: it scans whole collections, so
// keep test data small. Give each test its own database name.
func RunFerret(tb testing.TB) (uri string) {
	tb.Helper()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		// Errors only (a panic in a handler); its warnings are one per command it
		// lacks, such as endSessions, which every client disconnect sends.
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Handler:   "sqlite",
		SQLiteURL: "file:" + tb.TempDir() + "/",
	})
	if err != nil {
		tb.Fatalf("start FerretDB: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			tb.Errorf("FerretDB did not stop within 10s")
		}
	})
	return f.MongoDBURI() // the listener is bound: this does not wait for Run
}
