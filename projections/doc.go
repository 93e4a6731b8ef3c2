// Package projections runs jetchat's read models, one subpackage each
// (history, and rooms, reads and recent to come): each is fed from the CHAT
// stream by its own durable consumer and stores its last applied position
// beside its data, so restarts resume, redelivered events are skipped, and a
// projection can always be rebuilt from the log.
//
// A projection has versions (history_v1, history_v2, ...). Readers use the
// live one, named in a registry; a rebuild builds the next version beside it
// from the first event, catches up with the head, switches the registry and
// drops the old version. This package holds that machinery, and what every
// store adapter agrees on (version names, times as Unix nanoseconds); it
// knows nothing of NATS or of any database.
package projections
