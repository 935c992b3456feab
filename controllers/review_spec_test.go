package controllers

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// An old leader decides to flip a soaked cohort to local-first, re-reads
// the rollout (not deleted yet) and is held up before its write. Meanwhile
// a person deletes the rollout with deletionPolicy Retain, and the new
// leader carries it out: every cohort keeps its stage, the rollout is
// gone. The old leader's flip must not go through afterwards: students
// would be switched to local-first with no rollout left to judge its
// gates or roll it back.
func TestOldLeaderDoesNotFlipAfterRetainDeletion(t *testing.T) {
	f := newFixture(t)
	stage := f.oldLeaderFlipsAfter("olddel", func() {
		f.g.Expect(k8s.Delete(context.Background(), f.get("olddel"))).To(Succeed())
		f.g.Eventually(func() bool { return f.gone("olddel") }).Should(BeTrue())
	})
	f.g.Expect(stage).To(Equal(string(persistencev1alpha1.StageVerify)),
		"flipped to local-first after the rollout was deleted with Retain")
}

// As above, and the rollout is created again under the same name (a new
// object, which adopts the cohorts Retain kept) with intent Hold on the
// cohort, and the new leader acts on it. The old leader's flip, decided on
// the deleted object, must not go through either.
func TestOldLeaderDoesNotFlipAfterTheRolloutIsCreatedAgain(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	stage := f.oldLeaderFlipsAfter("oldre", func() {
		f.g.Expect(k8s.Delete(ctx, f.get("oldre"))).To(Succeed())
		f.g.Eventually(func() bool { return f.gone("oldre") }).Should(BeTrue())
		again := f.rollout("oldre", "pilot")
		again.Spec.Cohorts[0].Intent = persistencev1alpha1.IntentHold
		f.g.Expect(k8s.Create(ctx, again)).To(Succeed())
		f.g.Eventually(func() string { return f.get("oldre").Status.WaitingFor }).Should(Equal("intent Hold on cohort pilot to become Proceed (yawpctl rollout proceed)"))
	})
	f.g.Expect(stage).To(Equal(string(persistencev1alpha1.StageVerify)),
		"flipped to local-first on the deleted rollout after its successor held the cohort")
}
