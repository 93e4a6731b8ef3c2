// Package jetstream adapts NATS JetStream to jetchat: the CHAT stream is the
// event log (one subject per room), its RePublish feed is the live path, and a
// key-value bucket is the room directory that access checks read.
//
// It builds subjects only from validated room ids, and it never decides what a
// user may do: that is the node's job.
package jetstream
