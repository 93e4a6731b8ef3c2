package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jetchat/jetchat/pkg/jetstream"
	"github.com/jetchat/jetchat/projections"
	"github.com/jetchat/jetchat/projections/stores"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveMetrics serves /metrics (each projection's position and lag, the
// stream's last seq, the undecodable events skipped) and /healthz on addr
// until stop is called.
func serveMetrics(ctx context.Context, addr string, reg projections.Registry, feed *jetstream.Feed, st *stores.Stores, names []string, logger *slog.Logger) (stop func(), err error) {
	r := prometheus.NewRegistry()
	r.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "jetchat_projection_invalid_events_total",
		Help: "Undecodable events the projector skipped (counted once per consumer that met them).",
	}, func() float64 { return float64(feed.Invalid.Load()) }))
	r.MustRegister(&lagCollector{ctx: ctx, reg: reg, feed: feed, st: st, names: names})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(r, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server", "err", err)
		}
	}()
	logger.Info("metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	return func() { _ = srv.Close() }, nil
}

var (
	positionDesc = prometheus.NewDesc("jetchat_projection_position", "Stream sequence of the last event the live version applied.", []string{"projection", "version"}, nil)
	lagDesc      = prometheus.NewDesc("jetchat_projection_lag", "Events in the stream after the live version's position.", []string{"projection", "version"}, nil)
	lastSeqDesc  = prometheus.NewDesc("jetchat_stream_last_seq", "The event log's last sequence.", nil, nil)
)

// lagCollector reads positions when scraped.
type lagCollector struct {
	ctx   context.Context
	reg   projections.Registry
	feed  *jetstream.Feed
	st    *stores.Stores
	names []string
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- positionDesc
	ch <- lagDesc
	ch <- lastSeqDesc
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	last, err := c.feed.LastSeq(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(lastSeqDesc, prometheus.GaugeValue, float64(last))
	versions, pos, err := positions(ctx, c.reg, c.st, c.names)
	if err != nil {
		return
	}
	for i, name := range c.names {
		ch <- prometheus.MustNewConstMetric(positionDesc, prometheus.GaugeValue, float64(pos[i]), name, versions[i])
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(last-min(pos[i], last)), name, versions[i])
	}
}
