package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jetchat/jetchat/pkg/auth"
	"github.com/jetchat/jetchat/pkg/chat"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestVerify(t *testing.T) {
	tokens, err := auth.New(secret, "test")
	if err != nil {
		t.Fatal(err)
	}
	good, _ := tokens.Issue("alice", time.Minute)
	expired, _ := tokens.Issue("alice", -time.Minute)
	other, _ := auth.New([]byte(strings.Repeat("x", 32)), "test")
	forged, _ := other.Issue("alice", time.Minute)
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))})
	noneTok, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "alice"}).SignedString(secret)
	badSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "a b", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}).SignedString(secret)

	t.Run("OK", func(t *testing.T) {
		user, err := tokens.Verify(good)
		if err != nil || user != "alice" {
			t.Fatalf("Verify = %q, %v", user, err)
		}
	})
	for name, tok := range map[string]string{
		"Missing": "", "Expired": expired, "Forged": forged, "AlgNone": noneTok,
		"NoExpiry": noExp, "BadSubject": badSub, "Garbage": "not.a.jwt",
	} {
		t.Run("Err"+name, func(t *testing.T) {
			if _, err := tokens.Verify(tok); chat.ErrorCode(err) != chat.ErrUnauthorized {
				t.Fatalf("Verify = %v, want unauthorized", err)
			}
		})
	}
	t.Run("ErrShortSecret", func(t *testing.T) {
		if _, err := auth.New([]byte("short"), ""); err == nil {
			t.Fatal("short secret accepted")
		}
	})
}
