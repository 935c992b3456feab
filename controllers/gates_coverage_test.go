package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// unverified plays both shards reporting every cohort healthy, with none
// of their documents checked by a verification pass yet (as a shard whose
// pass has not completed at the epoch reports: internal/syncer
// cohortReport).
func (f *fixture) unverified(name string) {
	f.t.Helper()
	f.report(name, 0, shardReport{backfill: true, unverified: 5})
	f.report(name, 1, shardReport{backfill: true, unverified: 5})
}

// stageOf returns a function reading cohort's stage in PostgreSQL, for
// Consistently and Eventually.
func (f *fixture) stageOf(name, cohort string) func() string {
	return func() string {
		states, err := f.store.Cohorts(context.Background(), f.ns+"/"+name)
		if err != nil {
			return err.Error()
		}
		return states[cohort].Stage
	}
}

// TestNoFlipBeforeEveryDocumentIsVerified: every shard reports fresh at
// Verify with 0 of its 5 documents verified (no verification pass has
// completed under the epoch). The soak ends and the cohort must not flip
// to LocalFirst: nothing proved the representations agree (I3). It
// flipped before; found by review. Once the shards report every document
// verified, it flips.
func TestNoFlipBeforeEveryDocumentIsVerified(t *testing.T) {
	f := newFixture(t)
	f.g.Expect(k8s.Create(context.Background(), f.rollout("demo", "pilot"))).To(Succeed())
	f.waitStage("demo", "pilot", persistencev1alpha1.StageDualWrite)
	f.unverified("demo")
	f.waitStage("demo", "pilot", persistencev1alpha1.StageBackfill)
	f.unverified("demo")
	f.waitStage("demo", "pilot", persistencev1alpha1.StageVerify)
	f.unverified("demo")
	fakeClock.Step(time.Minute + time.Second)
	f.unverified("demo")
	f.g.Consistently(f.stageOf("demo", "pilot"), "3s").Should(Equal(string(persistencev1alpha1.StageVerify)),
		"flipped to LocalFirst on reports saying 0/10 documents verified; Verified condition: %+v",
		condition(f.get("demo"), persistencev1alpha1.ConditionVerified))
	f.g.Eventually(func() string {
		c := condition(f.get("demo"), persistencev1alpha1.ConditionVerified)
		return c.Reason + ": " + c.Message
	}).Should(Equal("Verifying: verification has checked 0/10 documents at epoch 3; no gate has failed"))
	f.healthyShards("demo")
	f.waitStage("demo", "pilot", persistencev1alpha1.StageLocalFirst)
}

// TestSilentShardWithAFastClockIsNotFresh: shard 1's node clock runs 10
// minutes ahead of the manager's, and its syncer is of a release that
// stamped reports by that clock (an upgrade is under way). It reports
// healthy once at Verify and
// then goes silent (its syncer is wedged). Five minutes later, well past
// maxReportAge (2m), the cohort must wait for fresh reports, and say why.
// It flipped on the silent shard's last counts before (report age is the
// manager's clock minus the syncer's timestamp, and a negative age was
// fresh); found by review.
func TestSilentShardWithAFastClockIsNotFresh(t *testing.T) {
	f := newFixture(t)
	ro := f.rollout("demo", "pilot")
	ro.Spec.Gates.MaxReportAge.Duration = 2 * time.Minute
	ro.Spec.Cohorts[0].Soak.Duration = 4 * time.Minute
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	f.walkToVerify("demo", "pilot")
	// Shard 1's last report, stamped by its fast clock.
	f.report("demo", 1, shardReport{backfill: true, skew: 10 * time.Minute, ownClock: true})
	// Five minutes pass; only shard 0 keeps reporting.
	for range 5 {
		fakeClock.Step(time.Minute)
		f.report("demo", 0, shardReport{backfill: true})
		time.Sleep(200 * time.Millisecond)
	}
	f.g.Consistently(f.stageOf("demo", "pilot"), "3s").Should(Equal(string(persistencev1alpha1.StageVerify)),
		"flipped although shard 1 has not reported for 5m (maxReportAge 2m)")
	f.g.Expect(f.get("demo").Status.Cohorts[0].Message).To(ContainSubstring("1 stamped more than 2m0s in the future: check the clocks of their nodes"))
}

// TestLegacyWritesStopOnlyAfterEveryDocumentIsVerified: stopping legacy
// writes is the point of no return, after which nothing verifies the
// cohort again. It was taken as soon as every shard observed Complete,
// on reports of the new epoch that had checked no document yet (and so
// counted no mismatch): a legacy row changed behind the gateway since the
// last pass was never found and merged.
func TestLegacyWritesStopOnlyAfterEveryDocumentIsVerified(t *testing.T) {
	f := newFixture(t)
	ro := f.rollout("retireverify", "pilot")
	ro.Spec.Cohorts[0].StopLegacyWrites = true
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	f.walkToVerify("retireverify", "pilot")
	f.soak("retireverify", time.Minute)
	f.waitStage("retireverify", "pilot", persistencev1alpha1.StageLocalFirst)
	f.soak("retireverify", 30*time.Second)
	f.waitStage("retireverify", "pilot", persistencev1alpha1.StageComplete)

	// Every shard observed Complete; no pass has checked its documents.
	f.unverified("retireverify")
	f.g.Consistently(f.stageOf("retireverify", "pilot"), "1500ms").Should(Equal(string(persistencev1alpha1.StageComplete)),
		"legacy writes stopped before verification checked the cohort's documents")
	f.g.Expect(f.get("retireverify").Status.WaitingFor).To(Equal("verification to check every document before legacy writes stop (0/10 so far)"))

	f.healthyShards("retireverify")
	f.waitStage("retireverify", "pilot", persistencev1alpha1.StageLegacyRetired)
}
