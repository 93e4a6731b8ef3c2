//go:build !linux

package ws

import "syscall"

// waitReadable is not implemented here: a connection's reader stays blocked
// in the WebSocket library while the connection is idle.
func waitReadable(syscall.RawConn) error { return nil }

const canWaitIdle = false
