package controllers

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestDegradedMetricOnDataPlaneError: the runbook's
// PersistenceRolloutDegraded alert reads persistence_rollout_condition
// {type="Degraded"} and fires when the operator cannot reach PostgreSQL:
// the gauge follows the status on that path too (it used to return before
// the metrics were recorded, and the gauge kept its last value, 0).
func TestDegradedMetricOnDataPlaneError(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("dperr", "pilot"))).To(Succeed())
	f.waitStage("dperr", "pilot", persistencev1alpha1.StageDualWrite)
	f.g.Eventually(func() float64 {
		return testutil.ToFloat64(conditionStatus.WithLabelValues(f.ns, "dperr", persistencev1alpha1.ConditionDegraded))
	}).Should(Equal(0.0))

	// The data plane becomes unreachable: its Secret is deleted.
	db := &corev1.Secret{}
	db.Namespace, db.Name = f.ns, "db"
	f.g.Expect(k8s.Delete(ctx, db)).To(Succeed())
	f.g.Eventually(func() string {
		c := condition(f.get("dperr"), persistencev1alpha1.ConditionDegraded)
		if c == nil {
			return ""
		}
		return string(c.Status) + "/" + c.Reason
	}).Should(Equal("True/" + persistencev1alpha1.ReasonDataPlaneError))
	f.g.Eventually(func() float64 {
		return testutil.ToFloat64(conditionStatus.WithLabelValues(f.ns, "dperr", persistencev1alpha1.ConditionDegraded))
	}, "5s").Should(Equal(1.0), "status says Degraded (DataPlaneError) but persistence_rollout_condition does not")
}

// seriesOf counts the series of vec labelled with namespace ns.
func seriesOf(vec prometheus.Collector, ns string) int {
	ch := make(chan prometheus.Metric, 100)
	go func() { vec.Collect(ch); close(ch) }()
	n := 0
	for m := range ch {
		var out dto.Metric
		_ = m.Write(&out)
		for _, l := range out.GetLabel() {
			if l.GetName() == labelNamespace && l.GetValue() == ns {
				n++
			}
		}
	}
	return n
}

// TestMetricsForgottenWhenFinalizerRemovedByHand: a rollout whose
// deletion waits (RollbackToLegacy without its Secret) is often let go by
// removing the finalizer by hand; it is gone without the finalizer's
// cleanup, and its series must go with it (they used to stay until the
// manager restarted, and PersistenceRolloutNotReady fired for a rollout
// that no longer existed).
func TestMetricsForgottenWhenFinalizerRemovedByHand(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ro := f.rollout("byhand", "pilot")
	ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRollbackToLegacy
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	f.waitStage("byhand", "pilot", persistencev1alpha1.StageDualWrite)
	f.g.Eventually(func() int { return seriesOf(conditionStatus, f.ns) }).Should(Equal(4))
	f.g.Expect(testutil.ToFloat64(conditionStatus.WithLabelValues(f.ns, "byhand", persistencev1alpha1.ConditionReady))).To(Equal(0.0))

	// The deletion is held (its database Secret is gone) ...
	db := &corev1.Secret{}
	db.Namespace, db.Name = f.ns, "db"
	f.g.Expect(k8s.Delete(ctx, db)).To(Succeed())
	f.g.Expect(k8s.Delete(ctx, f.get("byhand"))).To(Succeed())
	f.g.Eventually(func() string { return condition(f.get("byhand"), persistencev1alpha1.ConditionReady).Reason }).
		Should(Equal(persistencev1alpha1.ReasonDatabaseSecretMissing))
	// ... and someone lets the rollout go by removing its finalizer.
	f.update("byhand", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Finalizers = nil })
	f.g.Eventually(func() bool {
		return f.gone("byhand")
	}).Should(BeTrue())
	f.g.Eventually(func() int { return seriesOf(conditionStatus, f.ns) }, "5s").Should(BeZero(),
		"the deleted rollout's condition series stay on /metrics")
	f.g.Expect(seriesOf(cohortsPerStage, f.ns)).To(BeZero())
}

var _ = metav1.Now
