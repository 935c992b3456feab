package syncer

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/yawp/persistence-operator/internal/store"
)

// metrics are the syncer's Prometheus metrics (its /metrics, beside Go's
// and the process's). docs/operations.md's alerts use them.
type metrics struct {
	observed, shardEpoch                      prometheus.Gauge
	reports, reportErrs, backfilled, verified prometheus.Counter
	all                                       []prometheus.Collector
}

// requestDuration times the internal API's apply calls, by request kind:
// what a save or update waits for its group commit, as the gateway sees
// it minus the hop. It is shared by the syncers of one process (tests).
var requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "yawp_syncer_request_duration_seconds",
	Help:    "Time from an apply request's arrival to its answer (its group commit included), by kind.",
	Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
}, []string{"kind"})

// requestKind is the kind label of a request: one of the store's kinds,
// or "invalid", so a caller cannot grow the label set.
func requestKind(k string) string {
	switch k {
	case store.KindCreate, store.KindSave, store.KindYjs, store.KindSync1, store.KindReject, store.KindDisconnect:
		return k
	}
	return "invalid"
}

// newMetrics makes the syncer's metrics; the group-commit figures read
// eng when collected.
func newMetrics(eng *store.Engine) *metrics {
	m := &metrics{
		observed:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "yawp_syncer_observed_epoch", Help: "Rollout epoch last observed and reported."}),
		shardEpoch: prometheus.NewGauge(prometheus.GaugeOpts{Name: "yawp_syncer_shard_epoch", Help: "Shard epoch this syncer writes under."}),
		reports:    prometheus.NewCounter(prometheus.CounterOpts{Name: "yawp_syncer_reports_total", Help: "Shard reports written."}),
		reportErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "yawp_syncer_report_errors_total", Help: "Shard reports that failed."}),
		backfilled: prometheus.NewCounter(prometheus.CounterOpts{Name: "yawp_syncer_backfilled_documents_total", Help: "Documents given a Yjs representation by the backfill."}),
		verified:   prometheus.NewCounter(prometheus.CounterOpts{Name: "yawp_syncer_verified_documents_total", Help: "Document verifications run."}),
	}
	m.all = []prometheus.Collector{m.observed, m.shardEpoch, m.reports, m.reportErrs, m.backfilled, m.verified, requestDuration,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "yawp_syncer_group_commits_total", Help: "Group commits run."}, func() float64 { return float64(eng.Batches.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "yawp_syncer_requests_applied_total", Help: "Requests applied."}, func() float64 { return float64(eng.Applied.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "yawp_syncer_cached_documents", Help: "Documents in memory."}, func() float64 { return float64(eng.CachedDocuments()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "yawp_syncer_cached_bytes", Help: "Estimated memory of the documents in memory (bounded by --cache-bytes)."}, func() float64 { return float64(eng.CachedBytes()) }),
	}
	// Where group commits spend their time: a rising commit share with a
	// flat build share points at PostgreSQL (or its disk), a rising build
	// share at this process's CPU.
	var phases = []struct {
		name string
		n    func() *atomic.Int64
	}{
		{"gather", func() *atomic.Int64 { return &eng.GatherNanos }},
		{"build", func() *atomic.Int64 { return &eng.BuildNanos }},
		{"commit", func() *atomic.Int64 { return &eng.CommitNanos }},
	}
	for _, p := range phases {
		m.all = append(m.all, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "yawp_syncer_group_commit_seconds_total",
			Help:        "Time group commits spent waiting for requests to join (gather), applying them in memory (build) and sending their writes until PostgreSQL answered the commit (commit).",
			ConstLabels: prometheus.Labels{"phase": p.name},
		}, func() float64 { return float64(p.n().Load()) / 1e9 }))
	}
	return m
}

// MetricCollectors are the syncer's own metrics, bound to no engine: to
// describe them (their names and help), never to collect.
func MetricCollectors() []prometheus.Collector { return newMetrics(nil).all }
