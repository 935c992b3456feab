package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/rolloutctl"
)

// TestApproveWithAStandingRetryApprovesTheAttemptThatWaits: attempt 1
// soaked at Verify and waits for approval; spec.attempt is 2 (a standing
// retry: raised while attempt 1 runs, or a manifest re-applied by
// mistake). WAITING-FOR tells the person to "set approvedAttempt: 1 on it
// (yawpctl rollout approve)", and yawpctl rollout approve approves
// attempt 1, the one waiting, and the cohort flips. Before, it approved
// attempt 2 "(it has not started yet)", and the flip never came.
func TestApproveWithAStandingRetryApprovesTheAttemptThatWaits(t *testing.T) {
	f := newFixture(t)
	ro := f.rollout("standing", "pilot")
	ro.Spec.Cohorts[0].RequireApproval = true
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	f.walkToVerify("standing", "pilot")
	f.update("standing", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Cohorts[0].Attempt = 2 })
	f.seesSpec("standing", "pilot")
	f.soak("standing", time.Minute)
	f.g.Eventually(func() string { return f.get("standing").Status.WaitingFor }).Should(Equal(
		"approval of the flip of cohort pilot to local-first: set approvedAttempt: 1 on it (yawpctl rollout approve)"))

	msg, err := rolloutctl.Apply(context.Background(), k8s, client.ObjectKey{Namespace: f.ns, Name: "standing"}, rolloutctl.Approve("pilot"))
	f.g.Expect(err).NotTo(HaveOccurred())
	f.t.Logf("yawpctl rollout approve: %s", msg)
	f.healthyShards("standing")
	f.g.Eventually(f.stageOf("standing", "pilot"), "5s").Should(Equal(string(persistencev1alpha1.StageLocalFirst)),
		"yawpctl said %q; spec approvedAttempt %d; WAITING-FOR %q", msg,
		f.get("standing").Spec.Cohorts[0].ApprovedAttempt, f.get("standing").Status.WaitingFor)
}
