package chat

import (
	"errors"
	"fmt"
)

// Error codes clients see. They are stable: clients branch on them.
const (
	ErrBadRequest   = "bad_request"   // malformed frame or field; fix the request
	ErrUnauthorized = "unauthorized"  // missing, forged or expired token
	ErrForbidden    = "forbidden"     // authenticated, but not allowed (private room, not the author)
	ErrNotFound     = "not_found"     // unknown room or message
	ErrConflict     = "conflict"      // room already exists
	ErrTooLarge     = "too_large"     // text or frame over its limit
	ErrRateLimited  = "rate_limited"  // over the send rate; retry later with the same id
	ErrLimit        = "limit"         // a count limit (rooms per connection)
	ErrUnavailable  = "unavailable"   // the event log is unreachable; retry with the same id
	ErrInternal     = "internal"      // anything else; details are logged, not shown
	ErrNotJoined    = "not_joined"    // the connection has not joined that room
	ErrUnknownFrame = "unknown_frame" // a frame type this server does not know
)

// Error is an error a client may see: a stable code and a short message.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or internal.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return ErrInternal
}

// ErrorMessage returns what a client may be told about err: the message of an
// *Error, or a generic text for anything internal.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Sentinels that callers branch on.
var (
	ErrRoomNotFound = &Error{Code: ErrNotFound, Message: "room not found"}
	ErrRoomExists   = &Error{Code: ErrConflict, Message: "room already exists"}
	ErrNotMember    = &Error{Code: ErrForbidden, Message: "private room: members only"}
	ErrLogDown      = &Error{Code: ErrUnavailable, Message: "event log unavailable, retry"}
	ErrHistoryDown  = &Error{Code: ErrUnavailable, Message: "history unavailable, retry"}
)
