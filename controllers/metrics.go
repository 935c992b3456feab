package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
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
// labelNamespace and labelRollout name the rollout a series is about.
const labelNamespace, labelRollout = "namespace", "rollout"

var cohortsPerStage = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "persistence_rollout_cohorts",
	Help: "Cohorts of a PersistenceRollout per stage (not started cohorts count as stage NotStarted).",
}, []string{labelNamespace, labelRollout, "stage"})

// rollbacksAbandoned counts RollbackToLegacy deletions given up on in a
// namespace being deleted without its database Secret (see finalize). The
// namespace refuses the Warning Event, so this and the log are what is
// left to alert on.
var rollbacksAbandoned = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "persistence_rollout_rollbacks_abandoned_total",
	Help: "RollbackToLegacy deletions that left the stages in PostgreSQL untouched because the namespace was deleted with the database Secret.",
}, []string{labelNamespace, labelRollout})

// conditionStatus is each condition's status as a number an alert can
// compare: 1 True, 0 False or Unknown (or not set yet).
var conditionStatus = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "persistence_rollout_condition",
	Help: "A PersistenceRollout's conditions: 1 when True, 0 otherwise (type: Ready, Progressing, Verified, Degraded).",
}, []string{labelNamespace, labelRollout, "type"})

// gateRollbacks counts cohorts the controller rolled back to Legacy on its
// own because an integrity gate failed (a person's intent: Rollback is not
// counted): each one is worth a look even though nothing was lost.
var gateRollbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "persistence_rollout_gate_rollbacks_total",
	Help: "Cohorts rolled back to Legacy because an integrity gate failed.",
}, []string{labelNamespace, labelRollout, "cohort"})

// schoolsOutside is status.schoolsOutsideCohorts: schools a rollout
// leaves on the write-through path, worth a look once it is complete.
var schoolsOutside = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "persistence_rollout_schools_outside_cohorts",
	Help: "Schools the data plane has seen that belong to no cohort of the rollout: they stay on the write-through path.",
}, []string{labelNamespace, labelRollout})

var conditionTypes = []string{
	persistencev1alpha1.ConditionReady, persistencev1alpha1.ConditionProgressing,
	persistencev1alpha1.ConditionVerified, persistencev1alpha1.ConditionDegraded,
}

// Collectors are the controller's own metrics, registered on
// controller-runtime's registry (the manager's /metrics).
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{cohortsPerStage, rollbacksAbandoned, conditionStatus, gateRollbacks, schoolsOutside}
}

func init() {
	metrics.Registry.MustRegister(Collectors()...)
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
	for _, t := range conditionTypes {
		v := 0.0
		if meta.IsStatusConditionTrue(ro.Status.Conditions, t) {
			v = 1
		}
		conditionStatus.WithLabelValues(ro.Namespace, ro.Name, t).Set(v)
	}
	schoolsOutside.WithLabelValues(ro.Namespace, ro.Name).Set(float64(ro.Status.SchoolsOutsideCohorts))
}

func forgetCohortMetrics(ro *persistencev1alpha1.PersistenceRollout) {
	l := prometheus.Labels{labelNamespace: ro.Namespace, labelRollout: ro.Name}
	cohortsPerStage.DeletePartialMatch(l)
	conditionStatus.DeletePartialMatch(l)
	gateRollbacks.DeletePartialMatch(l)
	schoolsOutside.DeletePartialMatch(l)
}
