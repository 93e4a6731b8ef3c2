// Package testrig starts real dependencies for tests: an embedded
// nats-server with JetStream, and later Redis, FerretDB, NGINX and chromium
// processes. Each call gets its own free loopback ports and temp dirs and
// registers its cleanup, so tests run in parallel.
//
// It is for tests only: no shipped binary may import it.
package testrig

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// JetStream is a running embedded nats-server.
type JetStream struct {
	Server *server.Server
	URL    string
	Dir    string
}

// RunJetStream starts a nats-server with JetStream on a free port and a temp
// store dir, shut down when the test ends.
func RunJetStream(tb testing.TB) *JetStream {
	tb.Helper()
	return RunJetStreamAt(tb, tb.TempDir())
}

// RunJetStreamAt starts a nats-server on dir, so a test can restart it on the
// same store.
func RunJetStreamAt(tb testing.TB, dir string) *JetStream {
	tb.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  dir,
		NoSigs:    true,
		NoLog:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server not ready")
	}
	js := &JetStream{Server: s, URL: s.ClientURL(), Dir: dir}
	tb.Cleanup(js.Shutdown)
	return js
}

// Shutdown stops the server (idempotent).
func (j *JetStream) Shutdown() {
	j.Server.Shutdown()
	j.Server.WaitForShutdown()
}

// Connect opens a NATS connection closed when the test ends.
func (j *JetStream) Connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(j.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		tb.Fatalf("connect %s: %v", j.URL, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
