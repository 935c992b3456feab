package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

var allStages = []persistencev1alpha1.Stage{
	persistencev1alpha1.StageLegacy, persistencev1alpha1.StageDualWrite, persistencev1alpha1.StageBackfill,
	persistencev1alpha1.StageVerify, persistencev1alpha1.StageLocalFirst, persistencev1alpha1.StageComplete,
	persistencev1alpha1.StageLegacyRetired,
}

// cohortsPerStage is exported on the manager's /metrics beside
// controller-runtime's own metrics.
var cohortsPerStage = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "persistence_rollout_cohorts",
	Help: "Cohorts of a PersistenceRollout per stage (not started cohorts count as stage NotStarted).",
}, []string{"namespace", "rollout", "stage"})

// rollbacksAbandoned counts RollbackToLegacy deletions given up on in a
// namespace being deleted without its database Secret (see finalize). The
// namespace refuses the Warning Event, so this and the log are what is
// left to alert on.
var rollbacksAbandoned = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "persistence_rollout_rollbacks_abandoned_total",
	Help: "RollbackToLegacy deletions that left the stages in PostgreSQL untouched because the namespace was deleted with the database Secret.",
}, []string{"namespace", "rollout"})

func init() {
	metrics.Registry.MustRegister(cohortsPerStage, rollbacksAbandoned)
}

func recordCohortMetrics(ro *persistencev1alpha1.PersistenceRollout) {
	counts := map[string]float64{"NotStarted": 0}
	for _, s := range allStages {
		counts[string(s)] = 0
	}
	for _, c := range ro.Status.Cohorts {
		if c.Stage == "" {
			counts["NotStarted"]++
			continue
		}
		counts[string(c.Stage)]++
	}
	for stage, n := range counts {
		cohortsPerStage.WithLabelValues(ro.Namespace, ro.Name, stage).Set(n)
	}
}

func forgetCohortMetrics(ro *persistencev1alpha1.PersistenceRollout) {
	cohortsPerStage.DeletePartialMatch(prometheus.Labels{"namespace": ro.Namespace, "rollout": ro.Name})
}
