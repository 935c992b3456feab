package syncer

import (
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// TestAnExcusedMismatchIsNotReportedForTheNewAttempt: the legacy
// application rewrote a row while the cohort was rolled back, and no
// syncer ran before the next attempt began. The new attempt's first pass
// finds the mismatch; its divergence is counted under the Legacy epoch
// (the write was made there), yet the pass's own count carried it into
// the new attempt's reports until the next pass: a healthy attempt
// reported a mismatch, and a gate allowing none rolled it back.
func TestAnExcusedMismatchIsNotReportedForTheNewAttempt(t *testing.T) {
	dsn := pgharness.ForTest(t)
	const n = 20
	dp, pool, cs := legacyFixture(t, dsn, n)
	ctx := t.Context()
	_, stop := runSyncerEvery(t, dsn, 100*time.Millisecond, time.Hour)
	cs, _ = toVerify(t, dp, cs, n)
	stop()
	cs = stageAttempt(t, dp, cs.Epoch, dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	if _, err := pool.Exec(ctx, `UPDATE documents SET content = 'rewritten while rolled back', revision = revision + 1 WHERE doc_id = 'doc-000004'`); err != nil {
		t.Fatal(err)
	}
	cs = stageAttempt(t, dp, cs.Epoch, dataplane.StageDualWrite, 2, "")
	// Passes 4 s apart: the reports between the first two carry what the
	// first one found.
	runSyncerEvery(t, dsn, 4*time.Second, time.Hour)
	rep := waitReport(t, dp, "the first pass of attempt 2", 10*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Verified > 0
	})
	deadline := time.Now().Add(time.Second)
	for {
		if rep.Epoch == cs.Epoch && rep.Mismatched != 0 {
			t.Fatalf("attempt 2 reports %d mismatched (%v) for a write made while the cohort was rolled back", rep.Mismatched, rep.SampleMismatches)
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
		rep, _ = pollReport(t, dp, 0, func(dataplane.CohortReport) bool { return true })
	}
	// It was repaired, under the Legacy epoch.
	if got := scalar(t, pool, `SELECT count(*) FROM divergences WHERE doc_id = 'doc-000004' AND resolved_at IS NOT NULL AND epoch < $1`, cs.Epoch); got != 1 {
		t.Errorf("%d resolved divergences of doc-000004 under an earlier epoch, want 1", got)
	}
}
