package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestAPauseBeforeThePointOfNoReturnSaysSo: a Complete cohort opted in to
// stopLegacyWrites stops legacy writes (LegacyRetired, after which a
// rollback is refused) as soon as its gates allow. Paused, or held, just
// before that step, status said nothing at all: waitingFor was empty and
// Progressing said Complete, so a person could not tell that the one thing
// left, and the one that cannot be undone, was waiting for them. It says
// so now, and once resumed legacy writes stop.
func TestAPauseBeforeThePointOfNoReturnSaysSo(t *testing.T) {
	f := newFixture(t)
	f.g.Expect(k8s.Create(context.Background(), f.rollout("retire", "pilot"))).To(Succeed())
	f.walkToVerify("retire", "pilot")
	f.soak("retire", time.Minute)
	f.waitStage("retire", "pilot", persistencev1alpha1.StageLocalFirst)
	f.soak("retire", 30*time.Second)
	f.waitStage("retire", "pilot", persistencev1alpha1.StageComplete)
	f.healthyShards("retire")

	// The team pauses the rollout, then opts the cohort in.
	f.update("retire", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Paused = true })
	f.g.Eventually(func() bool { return f.get("retire").Status.ObservedGeneration == f.get("retire").Generation }).Should(BeTrue())
	f.update("retire", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Cohorts[0].StopLegacyWrites = true })
	paused := "unpause to stop legacy writes for cohort pilot, the point of no return (yawpctl rollout resume)"
	f.g.Eventually(func() string { return f.get("retire").Status.WaitingFor }).Should(Equal(paused),
		"status.waitingFor (the WAITING-FOR column) says the rollout waits to stop legacy writes")
	f.g.Consistently(func() string { return f.stagePG("retire", "pilot") }, "1s").Should(Equal(string(persistencev1alpha1.StageComplete)))
	progressing := func() string {
		c := condition(f.get("retire"), persistencev1alpha1.ConditionProgressing)
		return string(c.Status) + "/" + c.Reason + ": " + c.Message
	}
	f.g.Expect(progressing()).To(Equal("False/Paused: waiting for " + paused))
	f.g.Expect(f.cohortStatus("retire", "pilot").Message).To(Equal("waiting for " + paused))

	// Held instead of paused: the same, naming the hold.
	f.update("retire", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Spec.Paused = false
		ro.Spec.Cohorts[0].Intent = persistencev1alpha1.IntentHold
	})
	held := "intent Hold on cohort pilot to become Proceed to stop legacy writes, the point of no return (yawpctl rollout proceed)"
	f.g.Eventually(func() string { return f.get("retire").Status.WaitingFor }).Should(Equal(held))
	f.g.Expect(progressing()).To(Equal("False/Held: waiting for " + held))
	f.g.Consistently(func() string { return f.stagePG("retire", "pilot") }, "1s").Should(Equal(string(persistencev1alpha1.StageComplete)))

	// Released, the point of no return is passed.
	f.update("retire", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Cohorts[0].Intent = "" })
	f.waitStage("retire", "pilot", persistencev1alpha1.StageLegacyRetired)
}

// TestAnApprovalGateNamesTheCommand: a cohort whose flip needs approval
// said "approval: set approvedAttempt: 1 on cohort pilot", naming neither
// what was to be approved nor the command that approves it. Paused before
// the flip, it said only "unpause", and once unpaused it waited again, for
// the approval nobody had been told about.
func TestAnApprovalGateNamesTheCommand(t *testing.T) {
	f := newFixture(t)
	ro := f.rollout("gate", "pilot")
	ro.Spec.Cohorts[0].RequireApproval = true
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	f.walkToVerify("gate", "pilot")
	f.update("gate", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Paused = true })
	f.g.Eventually(func() string { return f.get("gate").Status.WaitingFor }).Should(Equal("unpause; the flip of cohort pilot to local-first " +
		"then waits for approval: set approvedAttempt: 1 on it (yawpctl rollout approve)"))

	f.update("gate", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Paused = false })
	f.soak("gate", time.Minute)
	f.g.Eventually(func() string { return f.get("gate").Status.WaitingFor }).Should(Equal("approval of the flip of cohort pilot to local-first: " +
		"set approvedAttempt: 1 on it (yawpctl rollout approve)"))
	f.g.Consistently(func() string { return f.stagePG("gate", "pilot") }, "500ms").Should(Equal(string(persistencev1alpha1.StageVerify)))
}
