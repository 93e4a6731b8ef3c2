package ws

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/jetchat/jetchat/pkg/chat"
	"github.com/jetchat/jetchat/projections/history"
	"github.com/labstack/echo/v4"
)

const userKey = "user"

// authenticate admits requests with a valid Authorization: Bearer token.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		user, err := s.tokens.Verify(bearer(c.Request()))
		if err != nil {
			return err
		}
		c.Set(userKey, user)
		return next(c)
	}
}

func userOf(c echo.Context) string { return c.Get(userKey).(string) }

// decode reads a JSON body strictly into v.
func decode(c echo.Context, v any) error {
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return chat.Errorf(chat.ErrBadRequest, "malformed JSON body")
	}
	return nil
}

// idempotencyKey is the Idempotency-Key header, or a fresh id: without one a
// retried request may act twice.
func idempotencyKey(c echo.Context) (string, error) {
	if k := c.Request().Header.Get("Idempotency-Key"); k != "" {
		return k, chat.ValidateClientID(k)
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "rest-" + hex.EncodeToString(b[:]), nil
}

func (s *Server) devLogin(c echo.Context) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := chat.ValidateUserID(req.Name); err != nil {
		return err
	}
	tok, err := s.tokens.Issue(req.Name, s.cfg.DevTokenTTL)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"token": tok, "user": req.Name})
}

func (s *Server) listRooms(c echo.Context) error {
	rooms, err := s.node.Rooms(c.Request().Context(), userOf(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"rooms": rooms})
}

func (s *Server) createRoom(c echo.Context) error {
	var req struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Private bool   `json:"private"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	ack, err := s.node.CreateRoom(ctx, userOf(c), req.ID, req.Name, req.Private, key)
	if err != nil {
		return err
	}
	info, err := s.node.RoomInfo(ctx, userOf(c), req.ID)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if ack.Dup {
		status = http.StatusOK
	}
	return c.JSON(status, info)
}

func (s *Server) roomInfo(c echo.Context) error {
	info, err := s.node.RoomInfo(c.Request().Context(), userOf(c), c.Param("room"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, info)
}

func (s *Server) members(c echo.Context) error {
	ms, err := s.node.Members(c.Request().Context(), userOf(c), c.Param("room"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"members": ms})
}

// presence lists who is online in a room.
func (s *Server) presence(c echo.Context) error {
	room := c.Param("room")
	if err := chat.ValidateRoomID(room); err != nil {
		return err
	}
	online, err := s.node.Online(c.Request().Context(), userOf(c), room)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"room": room, "online": online})
}

// messages serves a page of history: ?before=<seq> or ?after=<seq>, ?limit=.
func (s *Server) messages(c echo.Context) error {
	var p history.Page
	for name, dst := range map[string]*uint64{"before": &p.Before, "after": &p.After} {
		if v := c.QueryParam(name); v != "" {
			n, err := chat.ParseSeq(v)
			if err != nil {
				return err
			}
			*dst = n
		}
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return chat.Errorf(chat.ErrBadRequest, "limit must be a positive integer")
		}
		p.Limit = n
	}
	msgs, err := s.node.History(c.Request().Context(), userOf(c), c.Param("room"), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"room": c.Param("room"), "messages": msgs})
}

func (s *Server) invite(c echo.Context) error {
	var req struct {
		User string `json:"user"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	room := c.Param("room")
	if err := chat.ValidateRoomID(room); err != nil {
		return err
	}
	ack, err := s.node.Invite(c.Request().Context(), userOf(c), room, req.User, key)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ack)
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return data
}
