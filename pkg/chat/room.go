package chat

import (
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxRoomIDBytes bounds a room id; ids are also NATS subject tokens.
const MaxRoomIDBytes = 64

// ValidateRoomID accepts lower-case ASCII letters, digits, '-' and '_', 1 to
// 64 bytes. Nothing else may reach a subject: '.', '*', '>' or spaces would
// cross rooms.
func ValidateRoomID(id string) error {
	if id == "" || len(id) > MaxRoomIDBytes {
		return Errorf(ErrBadRequest, "room id must be 1 to %d bytes", MaxRoomIDBytes)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return Errorf(ErrBadRequest, "room id may hold only a-z, 0-9, '-' and '_'")
		}
	}
	return nil
}

// MaxUserIDBytes bounds a user id (a token's subject).
const MaxUserIDBytes = 64

// ValidateUserID accepts 1 to 64 bytes of printable UTF-8 without spaces.
// User ids never reach a subject; adapters encode them where they are keys.
func ValidateUserID(id string) error {
	if id == "" || len(id) > MaxUserIDBytes || !utf8.ValidString(id) {
		return Errorf(ErrBadRequest, "user id must be 1 to %d bytes of UTF-8", MaxUserIDBytes)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return Errorf(ErrBadRequest, "user id may not hold spaces or control characters")
		}
	}
	return nil
}

// ValidateClientID accepts ASCII letters, digits, '-', '_', ':' and '.', 1 to
// 64 bytes: what UUIDs, ULIDs and nanoids are made of.
func ValidateClientID(id string) error {
	if id == "" || len(id) > MaxIDBytes {
		return Errorf(ErrBadRequest, "id must be 1 to %d bytes", MaxIDBytes)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') &&
			c != '-' && c != '_' && c != ':' && c != '.' {
			return Errorf(ErrBadRequest, "id may hold only letters, digits, '-', '_', ':' and '.'")
		}
	}
	return nil
}

// ValidateRoomName checks a room's display name.
func ValidateRoomName(name string) error {
	if name == "" || len(name) > MaxNameBytes || !utf8.ValidString(name) {
		return Errorf(ErrBadRequest, "room name must be 1 to %d bytes of UTF-8", MaxNameBytes)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return Errorf(ErrBadRequest, "room name may not hold control characters")
		}
	}
	return nil
}

// Room is a room as the directory knows it.
type Room struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Private bool      `json:"private"`
	Creator string    `json:"creator"`
	Created time.Time `json:"created"`
}

// Member is one user's membership of a room.
type Member struct {
	User   string    `json:"user"`
	Joined time.Time `json:"joined"`
}
