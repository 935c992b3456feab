package controllers

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestRollbackDoneBeforeTheSecretWentIsNotAbandoned: a namespace is
// deleted while its Secret still exists. The RollbackToLegacy finalizer
// rolls pilot back to Legacy and waits for live shards to observe it; then
// the namespace controller deletes the Secret (its usual order is
// arbitrary). The next reconcile finds no DSN in a terminating namespace
// and used to "abandon" the rollback: the metric and log said the cohorts
// were not rolled back and kept their stages ("pilot at Verify"), while
// PostgreSQL had pilot at Legacy under a new epoch.
func TestRollbackDoneBeforeTheSecretWentIsNotAbandoned(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ro := f.rollout("race", "pilot")
	ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRollbackToLegacy
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	f.walkToVerify("race", "pilot")

	var ns corev1.Namespace
	f.g.Expect(k8s.Get(ctx, client.ObjectKey{Name: f.ns}, &ns)).To(Succeed())
	f.g.Expect(k8s.Delete(ctx, &ns)).To(Succeed())
	f.g.Expect(k8s.Delete(ctx, f.get("race"))).To(Succeed())

	// The rollback is carried out (the Secret is still there) ...
	f.waitStagePG("race", "pilot", persistencev1alpha1.StageLegacy)
	f.g.Eventually(func() string { return f.get("race").Status.WaitingFor }).Should(ContainSubstring("live shards to observe epoch"))
	// ... then the namespace controller gets to the Secret.
	db := &corev1.Secret{}
	db.Namespace, db.Name = f.ns, "db"
	f.g.Expect(k8s.Delete(ctx, db)).To(Succeed())
	f.g.Eventually(func() bool {
		return f.gone("race")
	}).Should(BeTrue())

	states, err := f.store.Cohorts(ctx, f.ns+"/race")
	f.g.Expect(err).NotTo(HaveOccurred())
	t.Logf("PostgreSQL after the finalizer: pilot at %s (epoch %d, outcome %s)", states["pilot"].Stage, states["pilot"].Epoch, states["pilot"].Outcome)
	if n := testutil.ToFloat64(rollbacksAbandoned.WithLabelValues(f.ns, "race")); n != 0 {
		t.Fatalf("persistence_rollout_rollbacks_abandoned_total=%v and the log says pilot was not rolled back (last seen at Verify), "+
			"but PostgreSQL has pilot at %s: the rollback was done, only the shards' barrier was skipped", n, states["pilot"].Stage)
	}
}

// waitStagePG waits for a stage in PostgreSQL only (status is not updated
// during deletion).
func (f *fixture) waitStagePG(name, cohort string, stage persistencev1alpha1.Stage) {
	f.t.Helper()
	f.g.Eventually(func() string {
		states, err := f.store.Cohorts(context.Background(), f.ns+"/"+name)
		if err != nil {
			return err.Error()
		}
		return states[cohort].Stage
	}).Should(Equal(string(stage)))
}
