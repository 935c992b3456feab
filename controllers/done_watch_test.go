package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestDoneCohortsWatchOpenDivergences: after Complete the shards keep
// verifying, and an out-of-band legacy write is found and repaired (the
// divergence is resolved, as store repair.go records it). The syncer
// reports Found (resolved or not) at the cohort's epoch, which never
// changes at Complete, so the rollout must not stay Degraded/Ready False
// for good once the divergence is resolved and hours pass.
func TestDoneCohortsWatchOpenDivergences(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("done", "pilot"))).To(Succeed())
	f.walkToVerify("done", "pilot")
	f.soak("done", time.Minute)
	f.waitStage("done", "pilot", persistencev1alpha1.StageLocalFirst)
	f.soak("done", 30*time.Second)
	st := f.waitStage("done", "pilot", persistencev1alpha1.StageComplete)
	f.healthyShards("done")
	f.gatewayRolledOut("done")
	degraded := func() string {
		c := condition(f.get("done"), persistencev1alpha1.ConditionDegraded)
		return string(c.Status) + "/" + c.Reason + ": " + c.Message
	}
	f.g.Eventually(degraded).Should(HavePrefix("False/AsExpected"))

	// Shard 0's verification found an out-of-band write and repaired it at
	// once: a resolved divergence under the Complete epoch.
	pool, err := pgxpool.New(ctx, f.dsn)
	f.g.Expect(err).NotTo(HaveOccurred())
	defer pool.Close()
	_, err = pool.Exec(ctx, `INSERT INTO divergences (doc_id, shard, tenant, kind, cohort, epoch, detected_at, detail, resolved_at, resolution)
		VALUES ('doc-1', 0, 'pilot-school', 'out-of-band-write', 'pilot', $1, now(), 'verification: differs', now(), 'repaired')`, st.Epoch)
	f.g.Expect(err).NotTo(HaveOccurred())

	// The shards report what the syncer would (internal/syncer cohortReport:
	// Mismatched = CohortDivergences' Found, OpenDivergences = Open), hours on.
	realReports := func() {
		for shard := 0; shard < 2; shard++ {
			div, err := f.store.CohortDivergences(ctx, f.ns+"/done", shard, 10*time.Minute, 5)
			f.g.Expect(err).NotTo(HaveOccurred())
			d := div["pilot"]
			f.g.Expect(f.store.ReportShard(ctx, dataplane.ShardReport{Rollout: f.ns + "/done", Shard: shard, ObservedEpoch: st.Epoch,
				ReportedAt: fakeClock.Now(), Holder: fmt.Sprintf("test-shard-%d", shard),
				Cohorts: []dataplane.CohortReport{{Cohort: "pilot", Epoch: st.Epoch, Documents: 5, Backfilled: 5, BackfillComplete: true,
					Verified: 5, Mismatched: d.Found, SampleMismatches: d.Samples, OpenDivergences: d.Open, EvidenceGaps: d.Gaps, ReportedAt: fakeClock.Now()}}})).To(Succeed())
		}
	}
	realReports()
	f.g.Consistently(degraded, 2*time.Second, 200*time.Millisecond).Should(HavePrefix("False/AsExpected"),
		"a repaired divergence after completion is no failure")

	// An unrepaired one is: open divergences are watched after Complete,
	// shown, and not acted on; repaired, it clears.
	_, err = pool.Exec(ctx, `INSERT INTO divergences (doc_id, shard, tenant, kind, cohort, epoch, detected_at, detail)
		VALUES ('doc-2', 1, 'pilot-school', 'out-of-band-write', 'pilot', $1, now(), 'verification: differs')`, st.Epoch)
	f.g.Expect(err).NotTo(HaveOccurred())
	realReports()
	f.g.Eventually(degraded).Should(Equal("True/GateFailed: cohort pilot: after completion: 1 open divergences (gate allows 0)"))
	f.g.Expect(f.stagePG("done", "pilot")).To(Equal(string(persistencev1alpha1.StageComplete)), "a done cohort is not rolled back on its own")
	_, err = pool.Exec(ctx, `UPDATE divergences SET resolved_at = now(), resolution = 'repaired' WHERE doc_id = 'doc-2'`)
	f.g.Expect(err).NotTo(HaveOccurred())
	fakeClock.Step(time.Hour)
	realReports()
	f.g.Eventually(degraded).Should(HavePrefix("False/AsExpected"))
}

// stagePG is a cohort's stage in PostgreSQL.
func (f *fixture) stagePG(name, cohort string) string {
	states, err := f.store.Cohorts(context.Background(), f.ns+"/"+name)
	f.g.Expect(err).NotTo(HaveOccurred())
	return states[cohort].Stage
}
