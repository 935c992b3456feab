package syncer

import (
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestNewEpochStartsWithAFullPass: verdicts found under one epoch must not
// count for the next. A legacy row is changed in a way no trigger logs
// (a session claiming to be the syncer), so only a full pass can see it;
// full passes are an hour apart here. The stage change that follows (a
// new epoch) must make the next pass full, and the mismatch show in the
// new epoch's report. Before, a cohort that stayed verified across the
// change (Verify -> LocalFirst, or a rollback and a quick new attempt)
// kept its old verdicts until the hourly pass.
func TestNewEpochStartsWithAFullPass(t *testing.T) {
	_, dp, pool, cs, first := atVerify(t, 20)
	ctx := t.Context()
	// A pass after that one: the epoch's first (full) pass is over
	// before the row changes, so only the next epoch can find it.
	waitReport(t, dp, "a later pass at Verify", 30*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.ReportedAt.After(first.ReportedAt)
	})
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`SET LOCAL yawp.syncer = 'on'`, `UPDATE documents SET content = 'unlogged change' WHERE doc_id = 'doc-000003'`} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // incremental passes run meanwhile, and see nothing
	cs = setStage(t, dp, cs.Epoch, dataplane.StageLocalFirst)
	rep := waitReportOrLast(t, dp, 8*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Mismatched >= 1
	})
	if rep.Epoch != cs.Epoch || rep.Mismatched == 0 {
		t.Fatalf("the new epoch's report (epoch %d of %d) carries the old verdicts: Verified %d/%d, Mismatched %d",
			rep.Epoch, cs.Epoch, rep.Verified, rep.Documents, rep.Mismatched)
	}
}
