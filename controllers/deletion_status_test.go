package controllers

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestARollbackToLegacyDeletionShowsTheCohortsGoingBack: while a
// RollbackToLegacy deletion waits for the live shards to observe the
// rollback, status described the rollout as it was before the deletion:
// observedGeneration behind the generation the deletion made, the STAGE
// column and the cohort at Verify (PostgreSQL had it at Legacy), Verified
// and Progressing as if it were soaking. A person watching `kubectl get`
// could not tell the rollback had happened. Status now follows it: the
// deletion's generation observed, every cohort at Legacy as it gets there,
// Progressing True (RolledBackForDeletion), Verified Unknown.
func TestARollbackToLegacyDeletionShowsTheCohortsGoingBack(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ro := f.rollout("undo", "pilot", "rest")
	ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRollbackToLegacy
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	f.walkToVerify("undo", "pilot")
	f.g.Eventually(func() string { return f.get("undo").Status.WaitingFor }).Should(HavePrefix("soak until "))
	before := f.get("undo")
	f.g.Expect(before.Status.ObservedGeneration).To(Equal(before.Generation))

	f.g.Expect(k8s.Delete(ctx, before)).To(Succeed())
	f.waitStagePG("undo", "pilot", persistencev1alpha1.StageLegacy)
	states, err := f.store.Cohorts(ctx, f.ns+"/undo")
	f.g.Expect(err).NotTo(HaveOccurred())
	epoch := itoa(states["pilot"].Epoch)
	f.g.Eventually(func() string { return f.get("undo").Status.WaitingFor }).Should(Equal("deletion waits for 2/2 live shards to observe epoch " + epoch))

	during := f.get("undo")
	f.g.Expect(during.Generation).To(BeNumerically(">", before.Generation), "the deletion made a new generation")
	f.g.Expect(during.Status.ObservedGeneration).To(Equal(during.Generation), "status.observedGeneration is the deletion's generation")
	f.g.Expect(during.Status.Stage).To(Equal(persistencev1alpha1.StageLegacy), "status.stage (the STAGE column)")
	f.g.Expect(during.Status.Epoch).To(Equal(states["pilot"].Epoch), "status.epoch (the EPOCH column)")
	pilot := f.cohortStatus("undo", "pilot")
	f.g.Expect(pilot.Stage).To(Equal(persistencev1alpha1.StageLegacy))
	f.g.Expect(pilot.Outcome).To(Equal(persistencev1alpha1.OutcomeRolledBack))
	f.g.Expect(pilot.Epoch).To(Equal(states["pilot"].Epoch))
	f.g.Expect(pilot.ShardsObserved).To(BeZero())
	f.g.Expect(pilot.Message).To(Equal("rolled back to Legacy for the rollout's deletion (deletionPolicy RollbackToLegacy); " +
		"waiting for 2/2 live shards to observe epoch " + epoch))
	f.g.Expect(f.cohortStatus("undo", "rest").Message).To(Equal("not started: the rollout is being deleted"))
	conditionOf := func(typ string) string {
		c := condition(f.get("undo"), typ)
		return string(c.Status) + "/" + c.Reason + ": " + c.Message
	}
	f.g.Expect(conditionOf(persistencev1alpha1.ConditionProgressing)).To(Equal("True/RolledBackForDeletion: every cohort is back at Legacy, " +
		"as deletionPolicy RollbackToLegacy asks; the rollout goes once 2/2 live shards observe epoch " + epoch))
	f.g.Expect(conditionOf(persistencev1alpha1.ConditionVerified)).To(Equal("Unknown/RolledBackForDeletion: every cohort is back at Legacy " +
		"for the rollout's deletion: nothing is verified at Legacy"))
	f.g.Expect(conditionOf(persistencev1alpha1.ConditionReady)).To(Equal("False/RolledBackForDeletion: deletion waits for 2/2 live shards to observe epoch " + epoch))
	for _, c := range during.Status.Conditions {
		f.g.Expect(c.ObservedGeneration).To(Equal(during.Generation), "condition %s", c.Type)
	}
	// The history names the rollback.
	f.g.Expect(during.Status.History).NotTo(BeEmpty())
	last := during.Status.History[len(during.Status.History)-1]
	f.g.Expect(last.Reason + ": " + last.Message).To(Equal("RolloutDeleted: rolled cohort pilot back from Verify to Legacy because the rollout is deleted"))
	// What the platform team sees in `kubectl get`, and what alerts read.
	out, err := exec.Command(kubectlBinary(), "--kubeconfig", kubeconfig, "-n", f.ns, "get", "persistencerollouts", "undo", "-o", "wide").CombinedOutput()
	f.g.Expect(err).NotTo(HaveOccurred(), string(out))
	f.g.Expect(strings.Fields(strings.Split(string(out), "\n")[1])).To(HaveExactElements(
		"undo", "1/2", "pilot", "Legacy", "deletion", "waits", "for", "2/2", "live", "shards", "to", "observe", "epoch", epoch,
		"False", MatchRegexp(`^\d+s$`), "PerCohort", epoch, "2/2", "false", "False"))
	f.g.Expect(testutil.ToFloat64(cohortsPerStage.WithLabelValues(f.ns, "undo", "Legacy"))).To(Equal(1.0))
	f.g.Expect(testutil.ToFloat64(cohortsPerStage.WithLabelValues(f.ns, "undo", "Verify"))).To(Equal(0.0))

	// One shard observes it: the cohort says which are left.
	f.report("undo", 0, shardReport{backfill: true})
	f.g.Eventually(func() string { return f.cohortStatus("undo", "pilot").Message }).Should(Equal("rolled back to Legacy for the rollout's deletion " +
		"(deletionPolicy RollbackToLegacy); waiting for 1/2 live shards to observe epoch " + epoch))
	f.g.Expect(f.cohortStatus("undo", "pilot").ShardsObserved).To(Equal(int32(1)))

	f.report("undo", 1, shardReport{backfill: true})
	f.g.Eventually(func() bool { return f.gone("undo") }).Should(BeTrue())
}

// TestARefusedRollbackToLegacyDeletionRollsNothingBack: a RollbackToLegacy
// deletion is refused while a cohort retired legacy writes, and the way out
// is deletionPolicy: Retain, which keeps every cohort's stage. The refusal
// came when the rollback reached the retired cohort, in the random order of
// a map, so the cohorts before it had been rolled back already: b, at
// Verify, went back to Legacy in some runs and not in others, and the
// Retain that followed kept a stage nobody chose. Nothing is rolled back
// now, and status says which cohort blocks the deletion.
func TestARefusedRollbackToLegacyDeletionRollsNothingBack(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ro := f.rollout("mixed", "a", "b")
	ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRollbackToLegacy
	ro.Spec.Cohorts[0].StopLegacyWrites = true
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	f.walkToVerify("mixed", "a")
	f.soak("mixed", time.Minute)
	f.waitStage("mixed", "a", persistencev1alpha1.StageLocalFirst)
	f.soak("mixed", 30*time.Second)
	f.waitStage("mixed", "a", persistencev1alpha1.StageComplete)
	f.healthyShards("mixed")
	f.waitStage("mixed", "a", persistencev1alpha1.StageLegacyRetired)
	verify := f.walkToVerify("mixed", "b")

	f.g.Expect(k8s.Delete(ctx, f.get("mixed"))).To(Succeed())
	blocked := "deletion blocked: cohort a retired legacy writes, so rolling it back would lose work; set deletionPolicy: Retain to delete the rollout"
	f.g.Eventually(func() string { return f.ready("mixed") }).Should(Equal("False/Deleting: " + blocked))
	f.g.Consistently(func() string { return f.stagePG("mixed", "b") }, "1s").Should(Equal(string(persistencev1alpha1.StageVerify)),
		"a refused deletion rolled cohort b back")
	f.g.Expect(f.get("mixed").Status.WaitingFor).To(Equal(blocked))
	f.g.Expect(f.cohortStatus("mixed", "a").Message).To(Equal("retired legacy writes, so the deletion cannot roll it back: set deletionPolicy: Retain to delete the rollout"))
	f.g.Expect(f.cohortStatus("mixed", "b").Message).To(Equal("at Verify: not rolled back to Legacy while the deletion is blocked"))

	// Retain, as the refusal says: the rollout goes, every stage stays.
	f.update("mixed", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRetain
	})
	f.g.Eventually(func() bool { return f.gone("mixed") }).Should(BeTrue())
	states, err := f.store.Cohorts(ctx, f.ns+"/mixed")
	f.g.Expect(err).NotTo(HaveOccurred())
	f.g.Expect(states["a"].Stage).To(Equal(string(persistencev1alpha1.StageLegacyRetired)))
	f.g.Expect(states["b"].Stage).To(Equal(string(persistencev1alpha1.StageVerify)))
	f.g.Expect(states["b"].Epoch).To(Equal(verify), "cohort b's stage was never changed")
}
