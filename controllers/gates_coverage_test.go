package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// reportVerified plays shard i reporting, for every cohort at its epoch,
// 5 documents, all backfilled, no mismatch, but only `verified` of them
// verified (a shard whose verification pass has not completed at this
// epoch reports 0: internal/syncer cohortReport).
func (f *fixture) reportVerified(name string, shard int, verified int64) {
	f.t.Helper()
	ctx := context.Background()
	states, err := f.store.Cohorts(ctx, f.ns+"/"+name)
	f.g.Expect(err).NotTo(HaveOccurred())
	rep := dataplane.ShardReport{Rollout: f.ns + "/" + name, Shard: shard, ReportedAt: fakeClock.Now(), Holder: fmt.Sprintf("test-shard-%d", shard)}
	for _, st := range states {
		rep.ObservedEpoch = max(rep.ObservedEpoch, st.Epoch)
		rep.Cohorts = append(rep.Cohorts, dataplane.CohortReport{Cohort: st.Cohort, Epoch: st.Epoch, Documents: 5, Backfilled: 5,
			BackfillComplete: true, Verified: verified, ReportedAt: fakeClock.Now()})
	}
	f.g.Expect(f.store.ReportShard(ctx, rep)).To(Succeed())
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
	f.reportVerified("demo", 0, 0)
	f.reportVerified("demo", 1, 0)
	f.waitStage("demo", "pilot", persistencev1alpha1.StageBackfill)
	f.reportVerified("demo", 0, 0)
	f.reportVerified("demo", 1, 0)
	f.waitStage("demo", "pilot", persistencev1alpha1.StageVerify)
	f.reportVerified("demo", 0, 0)
	f.reportVerified("demo", 1, 0)
	fakeClock.Step(time.Minute + time.Second)
	f.reportVerified("demo", 0, 0)
	f.reportVerified("demo", 1, 0)
	f.g.Consistently(func() string {
		states, err := f.store.Cohorts(context.Background(), f.ns+"/demo")
		if err != nil {
			return err.Error()
		}
		return states["pilot"].Stage
	}, "3s").Should(Equal(string(persistencev1alpha1.StageVerify)),
		"flipped to LocalFirst on reports saying 0/10 documents verified; Verified condition: %+v",
		condition(f.get("demo"), persistencev1alpha1.ConditionVerified))
	f.g.Eventually(func() string {
		c := condition(f.get("demo"), persistencev1alpha1.ConditionVerified)
		return c.Reason + ": " + c.Message
	}).Should(Equal("Verifying: verification has checked 0/10 documents at epoch 3; no gate has failed"))
	f.reportVerified("demo", 0, 5)
	f.reportVerified("demo", 1, 5)
	f.waitStage("demo", "pilot", persistencev1alpha1.StageLocalFirst)
}

// TestSilentShardWithAFastClockIsNotFresh: shard 1's node clock runs 10
// minutes ahead of the manager's. It reports healthy once at Verify and
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
	skewed := func(shard int) {
		ctx := context.Background()
		states, err := f.store.Cohorts(ctx, f.ns+"/demo")
		f.g.Expect(err).NotTo(HaveOccurred())
		at := fakeClock.Now().Add(10 * time.Minute)
		rep := dataplane.ShardReport{Rollout: f.ns + "/demo", Shard: shard, ReportedAt: at, Holder: "fast-clock"}
		for _, st := range states {
			rep.ObservedEpoch = max(rep.ObservedEpoch, st.Epoch)
			rep.Cohorts = append(rep.Cohorts, dataplane.CohortReport{Cohort: st.Cohort, Epoch: st.Epoch, Documents: 5, Backfilled: 5,
				BackfillComplete: true, Verified: 5, ReportedAt: at})
		}
		f.g.Expect(f.store.ReportShard(ctx, rep)).To(Succeed())
	}
	skewed(1)
	// Five minutes pass; only shard 0 keeps reporting.
	for range 5 {
		fakeClock.Step(time.Minute)
		f.report("demo", 0, shardReport{backfill: true})
		time.Sleep(200 * time.Millisecond)
	}
	f.g.Consistently(func() string {
		states, err := f.store.Cohorts(context.Background(), f.ns+"/demo")
		if err != nil {
			return err.Error()
		}
		return states["pilot"].Stage
	}, "3s").Should(Equal(string(persistencev1alpha1.StageVerify)),
		"flipped although shard 1 has not reported for 5m (maxReportAge 2m)")
	f.g.Expect(f.get("demo").Status.Cohorts[0].Message).To(ContainSubstring("1 stamped more than 2m0s in the future: check the clocks of their nodes"))
}
