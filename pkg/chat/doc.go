// Package chat is jetchat's domain: events, rooms, positions, validation, the
// WebSocket protocol's frames and the client-facing error type.
//
// It uses the standard library only. Adapters (the event log, stores, the
// transport, the Go client) speak its types; it must never import them.
package chat
