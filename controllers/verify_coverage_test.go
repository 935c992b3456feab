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

// reportCounts plays shard i reporting, for every frozen cohort at its
// epoch, exactly the given counts (backfill complete), having observed the
// rollout's current epoch.
func (f *fixture) reportCounts(name string, shard int, documents, verified, mismatched int64) {
	f.t.Helper()
	ctx := context.Background()
	states, err := f.store.Cohorts(ctx, f.ns+"/"+name)
	f.g.Expect(err).NotTo(HaveOccurred())
	at := fakeClock.Now()
	rep := dataplane.ShardReport{Rollout: f.ns + "/" + name, Shard: shard, ReportedAt: at, Holder: fmt.Sprintf("test-shard-%d", shard)}
	for _, st := range states {
		rep.ObservedEpoch = max(rep.ObservedEpoch, st.Epoch)
		rep.Cohorts = append(rep.Cohorts, dataplane.CohortReport{Cohort: st.Cohort, Epoch: st.Epoch, Documents: documents,
			Backfilled: documents, BackfillComplete: true, Verified: verified, Mismatched: mismatched, ReportedAt: at})
	}
	f.g.Expect(f.store.ReportShard(ctx, rep)).To(Succeed())
}

// TestOneShardsSurplusDoesNotHideAnotherShardsUnverifiedDocuments: a
// syncer counts a cohort's documents as they are now and its verified
// documents as of its last pass (internal/syncer cohortReport), so a shard
// whose students deleted two documents since its last pass reports 3
// documents and 5 verified, while the other shard's pass has checked only
// 3 of its 5. The cohort stays at Verify: coverage is judged shard by
// shard (I3: "verification checks every document of a cohort"). Before,
// the controller summed over shards (8 >= 8) and flipped it.
func TestOneShardsSurplusDoesNotHideAnotherShardsUnverifiedDocuments(t *testing.T) {
	f := newFixture(t)
	f.g.Expect(k8s.Create(context.Background(), f.rollout("cover", "pilot"))).To(Succeed())
	f.walkToVerify("cover", "pilot")
	play := func() {
		f.reportCounts("cover", 0, 3, 5, 0) // two documents deleted since its last (full) pass
		f.reportCounts("cover", 1, 5, 3, 0) // its pass has checked 3 of 5
	}
	play()
	fakeClock.Step(time.Minute + time.Second)
	play()
	f.g.Consistently(f.stageOf("cover", "pilot"), "3s").Should(Equal(string(persistencev1alpha1.StageVerify)),
		"flipped to LocalFirst while shard 1 had verified 3 of its 5 documents; waitingFor %q, Verified %+v",
		f.get("cover").Status.WaitingFor, condition(f.get("cover"), persistencev1alpha1.ConditionVerified))
}
