//go:build !linux

package ws

import "syscall"

// writeNow is Linux-only: elsewhere every write goes through the
// connection's writer.
func writeNow(syscall.RawConn, []byte) (int, error) { return 0, errWouldBlock }
