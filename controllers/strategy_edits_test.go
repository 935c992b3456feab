package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// walkBothToVerify takes the cohorts of a DualWriteFirst rollout to
// Verify together.
func (f *fixture) walkBothToVerify(name string, cohorts ...string) {
	f.t.Helper()
	for _, stage := range []persistencev1alpha1.Stage{persistencev1alpha1.StageDualWrite, persistencev1alpha1.StageBackfill, persistencev1alpha1.StageVerify} {
		for _, c := range cohorts {
			f.waitStage(name, c, stage)
		}
		f.healthyShards(name)
	}
}

// TestStrategySwitchToPerCohortKeepsFlipping: two cohorts soak together
// under DualWriteFirst and the team switches to PerCohort before the
// first flip. PerCohort lets a cohort flip only when no other is on its
// way, and both were: a waited for b and b for a, and nothing flipped,
// with status saying Progressing. The first in the spec's order flips.
func TestStrategySwitchToPerCohortKeepsFlipping(t *testing.T) {
	f := newFixture(t)
	ro := f.rollout("switch", "a", "b")
	ro.Spec.Strategy = persistencev1alpha1.StrategyDualWriteFirst
	ro.Spec.Cohorts[0].Soak.Duration = 10 * time.Minute
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	f.walkBothToVerify("switch", "a", "b")

	f.update("switch", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Spec.Strategy = persistencev1alpha1.StrategyPerCohort
	})
	f.g.Eventually(func() int64 { return f.get("switch").Status.ObservedGeneration }).Should(Equal(f.get("switch").Generation))
	f.soak("switch", 10*time.Minute)
	f.g.Eventually(func() string {
		f.healthyShards("switch")
		return f.stagePG("switch", "a")
	}, "10s", "200ms").Should(Equal("LocalFirst"), "a, first in the spec, flips; b: %s", f.cohortStatus("switch", "b").Message)
	f.g.Expect(f.stagePG("switch", "b")).To(Equal("Verify"), "b waits for a")
}

// TestRenameUnderDualWriteFirstStartsNothing: a cohort on its way that is
// renamed keeps its stage, and no other cohort starts until it is back
// under its name (the CRD says so; PerCohort did it). DualWriteFirst
// started the new name at once, frozen with none of the old one's
// schools, and renaming it back left a second cohort on its way.
func TestRenameUnderDualWriteFirstStartsNothing(t *testing.T) {
	f := newFixture(t)
	ro := f.rollout("dwfren", "a", "b")
	ro.Spec.Strategy = persistencev1alpha1.StrategyDualWriteFirst
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	f.walkBothToVerify("dwfren", "a", "b")

	f.update("dwfren", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Cohorts[0].Name = "a-2" })
	f.seesSpec("dwfren", "a-2", "b")
	f.g.Consistently(func() string { return f.stagePG("dwfren", "a-2") }, "2s", "100ms").Should(BeEmpty(),
		"a-2 started while a (renamed away at Verify) is on its way; events: %v", f.events("dwfren"))
	f.g.Expect(f.cohortStatus("dwfren", "a-2").Message).To(ContainSubstring("cohort a, removed from the spec while on its way"))
}

// TestSchoolMovedBetweenCohortsIsSaidInStatus: pilot-school is frozen
// into pilot, which is at Verify, and the team moves it to rest's list,
// giving pilot another school. Memberships never move (as designed), so
// pilot-school goes local-first with pilot and pilot-school-2 never joins
// it. Nothing said so: no condition, cohort message or Warning named
// either school. Pilot's status says both now.
func TestSchoolMovedBetweenCohortsIsSaidInStatus(t *testing.T) {
	f := newFixture(t)
	f.g.Expect(k8s.Create(context.Background(), f.rollout("move", "pilot", "rest"))).To(Succeed())
	f.walkToVerify("move", "pilot")

	f.update("move", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Spec.Cohorts[0].Tenants = []string{"pilot-school-2"}
		ro.Spec.Cohorts[1].Tenants = []string{"rest-school", "pilot-school"}
	})
	f.seesSpec("move", "pilot", "rest")
	f.g.Eventually(func() string { return f.cohortStatus("move", "pilot").Message }).Should(And(
		ContainSubstring("memberships never move"),
		ContainSubstring("listed since it started, never joining it: pilot-school-2"),
		ContainSubstring("no longer listed, still members: pilot-school")))
	f.g.Expect(f.cohortOf("pilot-school")).To(Equal("pilot"), "membership is frozen")
}

// TestEditedBucketsOfAStartedCohortAreSaidInStatus: a started bucket
// cohort places schools first seen later by the buckets it was frozen
// with; an edit of its buckets is not used, and its status says so.
func TestEditedBucketsOfAStartedCohortAreSaidInStatus(t *testing.T) {
	f := newFixture(t)
	ro := f.bucketRollout("bmove")
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	first := ro.Spec.Cohorts[0]
	f.walkToVerify("bmove", first.Name)
	f.update("bmove", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Cohorts[0].Buckets.To-- })
	f.g.Eventually(func() string { return f.cohortStatus("bmove", first.Name).Message }).Should(
		ContainSubstring(fmt.Sprintf("buckets frozen as [%d, %d) when it started", first.Buckets.From, first.Buckets.To)))
}

// TestAttemptRaisedWhileRunningIsSaidInStatus: raising attempt (and
// approving it) while attempt 1 still runs, say by re-applying a manifest
// meant for a retry, makes a standing retry: when attempt 1 fails its
// gate, attempt 2 starts at once, already approved. That was accepted
// without a word (status said attempt 1 and nothing more); the cohort's
// status now says it while attempt 1 runs.
func TestAttemptRaisedWhileRunningIsSaidInStatus(t *testing.T) {
	f := newFixture(t)
	ro := f.rollout("retry", "pilot")
	ro.Spec.Cohorts[0].RequireApproval = true
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	f.walkToVerify("retry", "pilot")
	f.update("retry", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Spec.Cohorts[0].Attempt, ro.Spec.Cohorts[0].ApprovedAttempt = 2, 2
	})
	f.seesSpec("retry", "pilot")
	f.g.Eventually(func() string { return f.cohortStatus("retry", "pilot").Message }).Should(And(
		ContainSubstring("attempt 2 is asked for while attempt 1 runs: it starts as soon as attempt 1 fails"),
		ContainSubstring("already approved for its flip")))
	f.g.Expect(f.cohortStatus("retry", "pilot").Attempt).To(BeEquivalentTo(1))
}

// TestReorderUnderDualWriteFirstFlipsOneAtATime: DualWriteFirst flips the
// cohorts one by one, each after the one before completes its post-flip
// soak. Moving a cohort still at Verify ahead of one that flipped made it
// flip at once: two cohorts soaked local-first together.
func TestReorderUnderDualWriteFirstFlipsOneAtATime(t *testing.T) {
	f := newFixture(t)
	ro := f.rollout("dwfreorder", "a", "b")
	ro.Spec.Strategy = persistencev1alpha1.StrategyDualWriteFirst
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	f.walkBothToVerify("dwfreorder", "a", "b")
	f.soak("dwfreorder", time.Minute)
	f.waitStage("dwfreorder", "a", persistencev1alpha1.StageLocalFirst)
	f.healthyShards("dwfreorder")

	f.update("dwfreorder", func(ro *persistencev1alpha1.PersistenceRollout) {
		c := ro.Spec.Cohorts
		c[0], c[1] = c[1], c[0]
	})
	f.seesSpec("dwfreorder", "b", "a")
	f.g.Consistently(func() string { return f.stagePG("dwfreorder", "b") }, "1500ms").
		Should(Equal(string(persistencev1alpha1.StageVerify)), "b flipped while a soaks local-first")
	f.g.Expect(f.cohortStatus("dwfreorder", "b").Message).To(Equal(
		"waiting for cohort a, flipped to local-first, to complete before the flip (DualWriteFirst flips one cohort at a time)"))

	// a completes; then b flips.
	f.soak("dwfreorder", 30*time.Second)
	f.waitStage("dwfreorder", "a", persistencev1alpha1.StageComplete)
	f.healthyShards("dwfreorder")
	f.waitStage("dwfreorder", "b", persistencev1alpha1.StageLocalFirst)
}
