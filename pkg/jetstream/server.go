package jetstream

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerOptions configures an embedded nats-server.
type ServerOptions struct {
	Host     string // default 127.0.0.1
	Port     int    // -1 picks a free port; 0 means in-process only (no TCP listener)
	StoreDir string // JetStream file store
	Name     string
	Token    string // required from every client when set
}

// RunServer starts an embedded nats-server with JetStream on StoreDir and
// waits until it accepts connections. Restarting on the same StoreDir keeps
// every event.
func RunServer(o ServerOptions) (*server.Server, error) {
	opts := &server.Options{
		ServerName:    o.Name,
		Host:          o.Host,
		Port:          o.Port,
		JetStream:     true,
		StoreDir:      o.StoreDir,
		NoSigs:        true,
		NoLog:         true,
		MaxPayload:    1 << 20,
		Authorization: o.Token,
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		opts.DontListen = true
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats-server: not ready after 30s")
	}
	return s, nil
}
