package syncer

import (
	"context"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// TestARowLockedInOneCohortDoesNotStallAnothersBackfill: under
// DualWriteFirst every cohort backfills at once. A row of the first
// cohort held by the legacy application's open transaction is skipped
// (the backfill never waits for it), and every round found that cohort
// first, skipped the row again and stopped there: the second cohort's
// documents were never backfilled for as long as the transaction stayed
// open, and its report never said BackfillComplete.
func TestARowLockedInOneCohortDoesNotStallAnothersBackfill(t *testing.T) {
	dsn := pgharness.ForTest(t)
	ctx := t.Context()
	// Cohort pilot (tenants s1, s2: 20 documents) comes first.
	dp, pool, cs := legacyFixture(t, dsn, 20)
	second, err := dp.FreezeCohort(ctx, dataplane.CohortKey{Rollout: itRollout, Cohort: "second"}, 1,
		dataplane.Selector{Tenants: []string{"s3"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		SELECT format('s3-%s', i), 's3', 'u', '', format('second cohort text %s', i), 1, 0, now(), now()
		FROM generate_series(1, 5) i`); err != nil {
		t.Fatal(err)
	}
	// The legacy application holds one row of pilot.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, `SELECT 1 FROM documents WHERE doc_id = 'doc-000007' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	runIntegritySyncer(t, dsn, time.Minute)
	for _, c := range []*dataplane.CohortState{&cs, &second} {
		for _, stage := range []string{dataplane.StageDualWrite, dataplane.StageBackfill} {
			st, err := dp.SetStage(ctx, dataplane.StageChange{Key: dataplane.CohortKey{Rollout: itRollout, Cohort: c.Cohort}, ExpectEpoch: c.Epoch, Stage: stage,
				Attempt: 1, Reason: "Test", At: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			*c = st
		}
	}
	var got dataplane.CohortReport
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		reps, err := dp.ShardReports(ctx, itRollout)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reps {
			for _, c := range r.Cohorts {
				if c.Cohort == "second" {
					got = c
				}
			}
		}
		if got.Epoch == second.Epoch && got.BackfillComplete {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got.Epoch != second.Epoch || !got.BackfillComplete || got.Backfilled != 5 {
		t.Fatalf("the second cohort's backfill stalled behind a row of the first held elsewhere: %+v", got)
	}
	// The held row is the only one left; released, it is taken too.
	if n := scalar(t, pool, `SELECT count(*) FROM documents d WHERE d.doc_id LIKE 'doc-%' AND NOT EXISTS (SELECT 1 FROM yjs_snapshots s WHERE s.doc_id = d.doc_id)`); n != 1 {
		t.Errorf("%d documents of pilot without a genesis while one row is held, want 1", n)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitReport(t, dp, "pilot backfilled once its row is released", 8*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.BackfillComplete
	})
}
