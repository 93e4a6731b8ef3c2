package node

import (
	"context"

	"github.com/jetchat/jetchat/pkg/chat"
)

// maxInflight bounds the sends of one connection that wait for JetStream.
// Past it the connection's reader waits, which holds the client back. It
// also caps one connection's send rate at maxInflight / ack latency: with 64
// and acks taking 100 ms on a loaded node that was 640/s, so a fan-out
// publisher at that rate fell behind at the first slow second and never
// caught up (its sends then waited seconds in the socket). The node's
// JetStream connection bounds the sends in flight of all connections
// together (16,384).
const maxInflight = 256

// pendingAck is a send that was published and waits for its ack.
type pendingAck struct {
	f    chat.ClientFrame
	wait func(ctx context.Context) (seq uint64, dup bool, err error)
}

// sendPipelined publishes a message without waiting for JetStream to store
// it, so one connection can have several sends in flight: a client's rate is
// then not capped at one send per ack round trip. They are stored in the
// order sent (one NATS connection), and each is acknowledged, by an ack loop,
// only once JetStream stored it.
func (s *Session) sendPipelined(f chat.ClientFrame, ev chat.Event) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	wait, err := s.n.log.AppendAsync(ev)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.acks == nil {
		s.acks = make(chan pendingAck, maxInflight)
	}
	acks := s.acks
	s.mu.Unlock()
	acks <- pendingAck{f: f, wait: wait} // blocks while maxInflight are pending
	s.mu.Lock()
	if !s.acking && !s.closed {
		s.acking = true
		s.wg.Add(1)
		go s.ackLoop()
	}
	s.mu.Unlock()
	return nil
}

// ackLoop answers pipelined sends in order and ends when none is pending.
func (s *Session) ackLoop() {
	defer s.wg.Done()
	for {
		var p pendingAck
		select {
		case p = <-s.acks:
		default:
			s.mu.Lock()
			if len(s.acks) == 0 {
				s.acking = false
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			continue
		}
		seq, dup, err := p.wait(s.ctx)
		if err != nil {
			if s.ctx.Err() == nil {
				s.replyErr(p.f, err)
			}
			continue
		}
		s.n.Stats.Appended.Add(1)
		if dup {
			s.n.Stats.Duplicates.Add(1)
		}
		ack := chat.ServerFrame{Type: chat.FrameAck, Ref: p.f.Ref, Room: p.f.Room, ID: p.f.ID, Seq: seq, Dup: dup}
		if !s.queueReply(ack) {
			continue
		}
		// More sends in flight: their acks follow within a store's time,
		// and may share this one's write (see ws.Config.AckDelay).
		if len(s.acks) > 0 {
			s.conn.FlushSoon()
		} else {
			s.conn.Flush()
		}
	}
}
