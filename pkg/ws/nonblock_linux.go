package ws

import (
	"errors"
	"syscall"
)

// writeNow makes one write call of p to the socket and never waits: the
// socket is non-blocking (Go's poller set it so), and the callback reports
// done whatever the call did. It returns how much the socket took; 0 with
// errWouldBlock when its send buffer is full.
func writeNow(raw syscall.RawConn, p []byte) (int, error) {
	var n int
	var err error
	if rerr := raw.Write(func(fd uintptr) bool {
		for {
			n, err = syscall.Write(int(fd), p)
			if err != syscall.EINTR {
				return true
			}
		}
	}); rerr != nil {
		return 0, rerr
	}
	if errors.Is(err, syscall.EAGAIN) {
		return 0, errWouldBlock
	}
	return max(n, 0), err
}
