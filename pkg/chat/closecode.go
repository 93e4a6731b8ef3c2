package chat

// WebSocket close codes. 4000-4499: reconnect (to any node) and resume;
// 4500-4999: do not reconnect without changing something first. Reasons are
// short (a close reason must fit in 123 bytes).
const (
	CloseShutdown     = 4000 // the node is going away: reconnect elsewhere and resume
	CloseSlowReader   = 4001 // the send queue overflowed: reconnect and resume
	CloseServerError  = 4002 // an internal error on this connection: reconnect and resume
	CloseHelloTimeout = 4003 // no hello in time: reconnect
	CloseNoPong       = 4004 // the client stopped answering pings

	CloseUnauthorized = 4500 // bad, forged or expired token: get a new token first
	CloseProtocol     = 4501 // not speaking protocol v1 (binary frame, frame before hello)
	CloseTooManyConns = 4502 // over the per-user connection limit
	CloseFlood        = 4503 // kept sending far over the rate limit
)

// CloseReconnects reports whether a client should reconnect after code.
func CloseReconnects(code int) bool {
	switch {
	case code >= 4000 && code < 4500:
		return true
	case code >= 4500 && code < 5000:
		return false
	case code == 1008 || code == 1003 || code == 1007:
		return false
	}
	return true // 1001, 1006, 1009, 1011, 1012 and other transport closes
}
