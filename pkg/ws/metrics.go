package ws

import (
	"github.com/jetchat/jetchat/pkg/node"
	"github.com/prometheus/client_golang/prometheus"
)

// collector exposes a node's counters to Prometheus.
type collector struct {
	n     *node.Node
	descs []metric
}

type metric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func() int64
}

func newCollector(n *node.Node, idle, writes func() int64) *collector {
	st := &n.Stats
	m := func(name, help string, kind prometheus.ValueType, v func() int64) metric {
		return metric{prometheus.NewDesc("jetchat_"+name, help, nil, prometheus.Labels{"node": n.ID()}), kind, v}
	}
	g, c := prometheus.GaugeValue, prometheus.CounterValue
	return &collector{n: n, descs: []metric{
		m("sessions", "Open WebSocket sessions.", g, st.Sessions.Load),
		m("idle_connections", "Sessions with no goroutine serving them: waiting for the client's next bytes.", g, idle),
		m("rooms", "Rooms with clients on this node.", g, st.Rooms.Load),
		m("delivered_total", "Live event frames queued to clients.", c, st.Delivered.Load),
		m("ws_writes_total", "WebSocket messages written: each carries one or more frames (delivered_total / ws_writes_total is the batching).", c, writes),
		m("replayed_total", "Replayed event frames queued to clients.", c, st.Replayed.Load),
		m("replayed_from_memory_total", "Replayed event frames taken from the rooms' recent frames in memory, not the log.", c, st.ReplayedMemory.Load),
		m("replay_memory_bytes", "Bytes of event frames the rooms keep in memory for replays (capped by --replay-memory).", g, st.ReplayBytes.Load),
		m("appended_total", "Events appended to the log.", c, st.Appended.Load),
		m("duplicates_total", "Appends answered from the dedup window.", c, st.Duplicates.Load),
		m("gaps_repaired_total", "Live-path gaps filled from the log.", c, st.GapsRepaired.Load),
		m("tail_repairs_total", "Lost last events found by the tail check.", c, st.TailRepairs.Load),
		m("invalid_events_total", "Undecodable events passed on as placeholders.", c, st.InvalidEvents.Load),
		m("slow_closed_total", "Connections closed as slow readers.", c, st.SlowClosed.Load),
		m("rate_limited_total", "Frames refused by the rate limit.", c, st.RateLimited.Load),
		m("client_errors_total", "Error frames sent.", c, st.ClientErrors.Load),
		m("internal_errors_total", "Internal errors.", c, st.InternalErrors.Load),
	}}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.descs {
		ch <- m.desc
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.descs {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(m.value()))
	}
}
