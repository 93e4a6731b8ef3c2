package ws

import (
	"syscall"
	"unsafe"
)

// waitReadable blocks until the socket has bytes to read, or is closed or
// broken, without reading anything: the Go poller parks the goroutine, whose
// stack stays as small as this call chain.
func waitReadable(raw syscall.RawConn) error {
	var b [1]byte
	return raw.Read(func(fd uintptr) bool {
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		return errno != syscall.EAGAIN
	})
}

const canWaitIdle = true
