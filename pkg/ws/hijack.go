package ws

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
)

// connBufferSize sizes the read and write buffers of an upgraded connection.
// net/http hands a hijacked connection 4 KiB buffers each way, kept for the
// connection's life; most frames are far smaller, and the writer packs
// frames into one message that a small buffer passes straight through.
const connBufferSize = 1 << 10

// smallBuffers is a ResponseWriter whose Hijack returns the connection with
// connBufferSize buffers (holding any bytes net/http had read ahead), so an
// idle WebSocket keeps 2 KiB of buffers instead of 8.
type smallBuffers struct{ http.ResponseWriter }

func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(conn, connBufferSize)
	if n := brw.Reader.Buffered(); n > 0 {
		// Bytes the client sent right after its request: they must be in
		// the new reader's buffer, where the WebSocket library looks for
		// them (it then reads the connection itself).
		ahead, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(ahead)), conn), max(connBufferSize, n))
		if _, err := br.Peek(n); err != nil {
			_ = conn.Close()
			return nil, nil, err
		}
	}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, connBufferSize)), nil
}
