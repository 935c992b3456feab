package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/yawp/persistence-operator/internal/syncer"
)

// Metrics are the gateway's Prometheus metrics. Routes and outcomes are
// fixed names, never paths or document IDs, so a scrape stays small
// whatever the number of documents. docs/operations.md's alerts use them.
type Metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	syncConns   prometheus.Gauge
	syncLimit   prometheus.Gauge
	syncFwd     prometheus.Gauge
	syncCloses  *prometheus.CounterVec
	syncUpdates *prometheus.CounterVec
	syncCommit  prometheus.Histogram
	unconfirmed prometheus.Gauge
	unconfLost  *prometheus.CounterVec
	// batches groups the gateway's concurrent applies to each syncer
	// (syncer.Batches); its counters are exported here.
	batches *syncer.Batches
}

// Reasons of yawp_gateway_unconfirmed_saves_lost_total: why the trace of
// a save the gateway could not confirm never reached its ledger.
const (
	lostQueueFull  = "queue_full" // 4096 were waiting: the oldest went
	lostPatience   = "patience"   // its syncer did not answer for 30 minutes
	lostRefused    = "refused"    // its syncer refused to record it
	lostUnreadable = "unreadable" // its spool file could not be read back
)

// Routes of yawp_gateway_http_requests_total; "other" is everything else
// a client reached (unknown paths, the internal API relayed to the
// syncer, REST saves pushed to sync clients).
const (
	routeCreate    = "create"
	routeList      = "list"
	routeRead      = "read"
	routeSave      = "save"
	routeRevision  = "revision"
	routePreserved = "preserved"
	routeEvidence  = "evidence"
	routeVerify    = "verify"
	routeYjsUpdate = "yjs_update"
	routeSyncStep1 = "sync_step1"
	routeOther     = "other"
)

// Outcomes of yawp_gateway_sync_updates_total.
const (
	updateRelayed   = "relayed"   // committed, then relayed to the room
	updateDuplicate = "duplicate" // committed before: nothing relayed
	updateRefused   = "refused"   // bad, too large, forbidden, foreign history
	updateFailed    = "failed"    // not committed (4500): the client re-sends
)

// requestBuckets: a REST save waits for a group commit (a few ms on a
// quiet server, up to the store's 30 s group timeout).
var requestBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics returns the gateway's metrics, registered nowhere.
func NewMetrics() *Metrics {
	return &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "yawp_gateway_http_requests_total",
			Help: "REST requests answered, by route and HTTP status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "yawp_gateway_http_request_duration_seconds",
			Help:    "Time from a REST request's arrival to its answer, by route (saves include their durable commit).",
			Buckets: requestBuckets,
		}, []string{"route"}),
		syncConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "yawp_gateway_sync_connections",
			Help: "Sync WebSocket connections open on this gateway.",
		}),
		syncLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "yawp_gateway_sync_connections_limit",
			Help: "Sync WebSocket connections this gateway holds open at most (spec.gateway.maxConnections; 0: no bound); past it new ones are refused with 1013.",
		}),
		syncFwd: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "yawp_gateway_sync_forwarded_connections",
			Help: "Sync WebSocket connections this gateway passes through to other shards' gateways (documents it does not serve). They cost this pod memory but count against the limit of the gateway serving their document, not this one's.",
		}),
		syncCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "yawp_gateway_sync_closes_total",
			Help: "Sync WebSocket connections closed or refused, by the close code the gateway sent (1000 normal, 1001 going away, 1013 and 4xxx refusals, 4500 server failure), or client when the client closed first.",
		}, []string{"code"}),
		syncUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "yawp_gateway_sync_updates_total",
			Help: "Yjs updates received over sync connections, by outcome: relayed (committed, then relayed), duplicate, refused, failed (not committed; the client re-sends).",
		}, []string{"outcome"}),
		syncCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "yawp_gateway_sync_update_commit_seconds",
			Help:    "Time from a sync update's arrival to its durable commit, for updates committed (relayed or duplicate).",
			Buckets: requestBuckets,
		}),
		unconfirmed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "yawp_gateway_unconfirmed_saves",
			Help: "Traces of saves whose commit the gateway could not confirm, waiting to be recorded in their documents' ledgers.",
		}),
		unconfLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "yawp_gateway_unconfirmed_saves_lost_total",
			Help: "Traces of unconfirmed saves that never reached their ledgers (the gateway's log names each), by reason: queue_full, patience, refused, unreadable.",
		}, []string{"reason"}),
		batches: &syncer.Batches{},
	}
}

// Collectors are the metrics to register, e.g. on the gateway's /metrics.
func (m *Metrics) Collectors() []prometheus.Collector {
	b := m.batches
	return []prometheus.Collector{m.requests, m.duration, m.syncConns, m.syncLimit, m.syncFwd, m.syncCloses, m.syncUpdates, m.syncCommit, m.unconfirmed, m.unconfLost,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "yawp_gateway_syncer_apply_batches_total",
			Help: "Calls to syncers that carried several saves and updates at once (applies waiting while 4 calls to their syncer were in flight).",
		}, func() float64 { return float64(b.Calls.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "yawp_gateway_syncer_batched_applies_total",
			Help: "Saves and updates sent to syncers in such batches.",
		}, func() float64 { return float64(b.Batched.Load()) }),
	}
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument counts and times h's requests under route.
func (m *Metrics) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			status := sw.status
			if status == 0 {
				// Nothing written: net/http answers 200 with an empty body.
				status = http.StatusOK
			}
			m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
			m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		h.ServeHTTP(sw, r)
	})
}

// SetSyncConnLimit records the gateway's bound on open sync connections
// (0: none), for alerts on connections near it.
func (m *Metrics) SetSyncConnLimit(n int) { m.syncLimit.Set(float64(n)) }
