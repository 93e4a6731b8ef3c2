package ws

import (
	"bufio"
	"net"
	"net/http"
	"syscall"
)

// hijacker is a ResponseWriter whose Hijack returns the connection with
// 16-byte bufio buffers over an inbound (which holds any bytes net/http had
// read ahead) and an outbound: net/http hands a hijacked connection 4 KiB
// buffers each way, kept for the connection's life, where these hold a
// buffer only while they have bytes in flight.
//
// coder/websocket resets the reader it is given to read the socket directly,
// so after the upgrade the server points it back at the inbound (adopt).
type hijacker struct {
	http.ResponseWriter
	in  *inbound
	br  *bufio.Reader
	out *outbound
	raw syscall.RawConn // nil when the connection cannot be polled (not a socket)
}

func (h *hijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	// Bytes the client sent right after its request are in net/http's
	// reader: the inbound passes them on first.
	ahead, _ := brw.Reader.Peek(brw.Reader.Buffered())
	h.in = newInbound(conn, ahead)
	h.br = bufio.NewReaderSize(h.in, 16)
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			h.raw = raw
		}
	}
	h.out = &outbound{dst: conn, raw: h.raw}
	return conn, bufio.NewReadWriter(h.br, bufio.NewWriterSize(h.out, 16)), nil
}

// adopt points the library's reader back at the inbound, after Accept.
func (h *hijacker) adopt() { h.br.Reset(h.in) }
