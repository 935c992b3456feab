package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestGateRollbackStillSaysWhyAfterIntentRollback: a gate rolls the
// cohort back (1 mismatched document). The on-call engineer, following
// the runbook's "hold it or roll it back", also sets intent: Rollback.
// WAITING-FOR, the cohort's message and the Degraded condition still name
// the gate's failure. Before, they said it "was rolled back to Legacy as
// intent Rollback asks", as if a person had done it.
func TestGateRollbackStillSaysWhyAfterIntentRollback(t *testing.T) {
	f := newFixture(t)
	f.g.Expect(k8s.Create(context.Background(), f.rollout("why", "pilot"))).To(Succeed())
	f.walkToVerify("why", "pilot")
	f.report("why", 1, shardReport{backfill: true, mismatched: 1})
	f.waitStage("why", "pilot", persistencev1alpha1.StageLegacy)
	f.g.Eventually(func() string { return f.get("why").Status.WaitingFor }).Should(ContainSubstring("1 mismatched documents"))

	f.update("why", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Spec.Cohorts[0].Intent = persistencev1alpha1.IntentRollback
	})
	f.g.Eventually(func() int64 { return f.get("why").Status.ObservedGeneration }).Should(Equal(f.get("why").Generation))
	ro := f.get("why")
	degraded := condition(ro, persistencev1alpha1.ConditionDegraded)
	f.g.Expect(ro.Status.WaitingFor).To(ContainSubstring("1 mismatched documents"),
		"WAITING-FOR no longer says why the cohort was rolled back; Degraded: %s", degraded.Message)
	f.g.Expect(ro.Status.WaitingFor).NotTo(ContainSubstring("as intent Rollback asks"))
}

// TestProgressingIsFalseWhileTheFlipWaitsForApproval: the soak passed and
// every document is verified; the flip waits for a person to approve it.
// The API says Progressing is "true while a cohort is moving between
// stages or soaking"; like Held, Paused and AwaitingNewAttempt, the other
// waits on a person, AwaitingApproval is False.
func TestProgressingIsFalseWhileTheFlipWaitsForApproval(t *testing.T) {
	f := newFixture(t)
	ro := f.rollout("approval", "pilot")
	ro.Spec.Cohorts[0].RequireApproval = true
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	f.walkToVerify("approval", "pilot")
	f.soak("approval", time.Minute)
	f.g.Eventually(func() string { return f.get("approval").Status.WaitingFor }).Should(HavePrefix("approval of the flip"))
	c := condition(f.get("approval"), persistencev1alpha1.ConditionProgressing)
	f.g.Expect(string(c.Status)+"/"+c.Reason).To(Equal("False/AwaitingApproval"), "Progressing: %s", c.Message)
}
