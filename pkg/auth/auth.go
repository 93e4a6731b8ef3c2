// Package auth verifies and issues the signed tokens clients authenticate
// with: JWT, HS256 with a shared secret, the "sub" claim naming the user.
//
// It never logs or returns a token's contents in an error a client sees.
package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jetchat/jetchat/pkg/chat"
)

// Tokens verifies and issues HS256 tokens.
type Tokens struct {
	secret []byte
	issuer string
}

// MinSecretBytes is the shortest secret accepted: HS256 wants 256 bits.
const MinSecretBytes = 32

// New returns Tokens for secret.
func New(secret []byte, issuer string) (*Tokens, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("jwt secret must be at least %d bytes", MinSecretBytes)
	}
	return &Tokens{secret: secret, issuer: issuer}, nil
}

// Verify checks a token's signature, algorithm and expiry and returns its
// user. Every failure is a chat error with code unauthorized.
func (t *Tokens) Verify(token string) (string, error) {
	if token == "" {
		return "", chat.Errorf(chat.ErrUnauthorized, "missing token")
	}
	claims := &jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return t.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "", chat.Errorf(chat.ErrUnauthorized, "token expired")
	case err != nil:
		return "", chat.Errorf(chat.ErrUnauthorized, "invalid token")
	}
	if err := chat.ValidateUserID(claims.Subject); err != nil {
		return "", chat.Errorf(chat.ErrUnauthorized, "token subject is not a valid user id")
	}
	return claims.Subject, nil
}

// Issue signs a token for user, valid for ttl.
func (t *Tokens) Issue(user string, ttl time.Duration) (string, error) {
	if err := chat.ValidateUserID(user); err != nil {
		return "", err
	}
	now := time.Now()
	claims := jwt.RegisteredClaims{
		Subject:   user,
		Issuer:    t.issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.secret)
}
