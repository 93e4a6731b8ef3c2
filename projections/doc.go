// Package projections holds jetchat's read models, one subpackage each
// (history, rooms, reads, recent): each is fed from the CHAT stream by its own
// durable consumer and stores its last applied position beside its data, so
// it can always be rebuilt from the log.
//
// No projection exists yet; the node serves live delivery and replay straight
// from the stream.
package projections
