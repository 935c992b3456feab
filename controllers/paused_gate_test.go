package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestPausedSoakDoesNotCountAFailingGate: paused stops the automatic
// rollback, not the gates. A gate that failed while the rollout was paused
// (here evidence gaps, which clear once the students sync) left the soak
// counting: the window is "verified with every gate holding", yet after
// the gaps cleared and the rollout was resumed the cohort flipped at once,
// on a soak most of which a gate was broken.
func TestPausedSoakDoesNotCountAFailingGate(t *testing.T) {
	f := newFixture(t)
	f.g.Expect(k8s.Create(context.Background(), f.rollout("pausegate", "pilot"))).To(Succeed())
	f.walkToVerify("pausegate", "pilot")
	f.g.Eventually(func() string { return f.get("pausegate").Status.WaitingFor }).Should(HavePrefix("soak until "))

	f.update("pausegate", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Paused = true })
	f.g.Eventually(func() string { return f.get("pausegate").Status.WaitingFor }).Should(Equal("unpause"))

	// A gate breaks while paused: shown, not acted on.
	failing := func() {
		f.report("pausegate", 0, shardReport{backfill: true, gaps: 3})
		f.report("pausegate", 1, shardReport{backfill: true})
	}
	degraded := func() string {
		c := condition(f.get("pausegate"), persistencev1alpha1.ConditionDegraded)
		if c == nil {
			return ""
		}
		return string(c.Status) + "/" + c.Reason
	}
	failing()
	f.g.Eventually(degraded).Should(Equal("True/GateFailed"))

	// It stays broken for longer than the soak, the controller watching.
	fakeClock.Step(2 * time.Minute)
	failing()
	at := fakeClock.Now()
	f.g.Eventually(func() time.Time {
		if r := f.cohortStatus("pausegate", "pilot").ReportedAt; r != nil {
			return r.Time
		}
		return time.Time{}
	}).Should(BeTemporally("==", at), "the controller saw the failing reports at the new time")
	f.g.Expect(degraded()).To(Equal("True/GateFailed"))
	f.g.Expect(f.stagePG("pausegate", "pilot")).To(Equal(string(persistencev1alpha1.StageVerify)))

	// The gaps clear, and the rollout is resumed: the soak starts over
	// from when the gate last failed, it does not flip at once.
	f.healthyShards("pausegate")
	f.g.Eventually(degraded).Should(Equal("False/AsExpected"))
	f.update("pausegate", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Paused = false })
	f.g.Eventually(func() string { return f.get("pausegate").Status.WaitingFor }).Should(HavePrefix("soak until "))
	f.g.Consistently(func() string { return f.stagePG("pausegate", "pilot") }, "1500ms").
		Should(Equal(string(persistencev1alpha1.StageVerify)), "flipped on a soak during which a gate failed")
	ends := f.cohortStatus("pausegate", "pilot").SoakEndsAt
	f.g.Expect(ends).NotTo(BeNil())
	f.g.Expect(ends.Time).To(BeTemporally("==", at.Add(time.Minute)))

	// A whole soak with every gate holding: it flips.
	f.soak("pausegate", time.Minute)
	f.waitStage("pausegate", "pilot", persistencev1alpha1.StageLocalFirst)
}

// TestRefusedRollbackDoesNotSayAGateFailed: a rollback asked of a cohort
// that retired legacy writes is refused (Degraded, RollbackRefused). The
// Verified condition said False, GateFailed, with an empty message, while
// every gate held: an alert on Verified, or a person reading it, went
// looking for a gate nobody had broken.
func TestRefusedRollbackDoesNotSayAGateFailed(t *testing.T) {
	f := newFixture(t)
	ro := f.rollout("refused", "pilot")
	ro.Spec.Cohorts[0].StopLegacyWrites = true
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	f.walkToVerify("refused", "pilot")
	f.soak("refused", time.Minute)
	f.waitStage("refused", "pilot", persistencev1alpha1.StageLocalFirst)
	f.soak("refused", 30*time.Second)
	f.waitStage("refused", "pilot", persistencev1alpha1.StageComplete)
	f.healthyShards("refused")
	f.waitStage("refused", "pilot", persistencev1alpha1.StageLegacyRetired)
	f.healthyShards("refused")
	verified := func() string {
		c := condition(f.get("refused"), persistencev1alpha1.ConditionVerified)
		if c == nil {
			return ""
		}
		return string(c.Status) + "/" + c.Reason + ": " + c.Message
	}
	f.g.Eventually(verified).Should(HavePrefix("True/GatesPassing"))

	f.update("refused", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Spec.Cohorts[0].Intent = persistencev1alpha1.IntentRollback
	})
	f.g.Eventually(func() string {
		c := condition(f.get("refused"), persistencev1alpha1.ConditionDegraded)
		return string(c.Status) + "/" + c.Reason
	}).Should(Equal("True/RollbackRefused"))
	f.g.Expect(verified()).To(HavePrefix("True/GatesPassing"), "every gate holds; only the rollback was refused")
	f.g.Expect(f.stagePG("refused", "pilot")).To(Equal(string(persistencev1alpha1.StageLegacyRetired)))
}
