//go:build !linux

package ws

// idler is Linux-only (epoll): elsewhere a connection's reader stays
// blocked in the WebSocket library while the connection is idle.
type idler struct{}

func newIdler() *idler             { return nil }
func (p *idler) park(*reader) bool { return false }
func (p *idler) wake(*reader)      {}
func (p *idler) close()            {}
func (p *idler) idle() int64       { return 0 }
