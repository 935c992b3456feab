package syncer

import (
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestOutsideWriteWhileRolledBackIsNotAMismatchOfTheNextAttempt: after a
// rollback the cohort is at Legacy, where the legacy side is the only one
// that counts and the legacy application may write its rows directly.
// The next attempt must bring such a document's Yjs side up to its row,
// on record in its ledger, without counting it as a mismatch of the
// attempt: with maxMismatches 0 (the default) that rolled the new attempt
// back at once, and again after every Legacy period with such writes. A
// write behind the gateway during the attempt still counts.
func TestOutsideWriteWhileRolledBackIsNotAMismatchOfTheNextAttempt(t *testing.T) {
	const n = 20
	_, dp, pool, cs, _ := atVerify(t, n)
	ctx := t.Context()
	cs = stageAttempt(t, dp, cs.Epoch, dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	const edited = "rewritten in the legacy application while the cohort was rolled back"
	if _, err := pool.Exec(ctx, `UPDATE documents SET content = $1, revision = revision + 1, updated_at = now() WHERE doc_id = 'doc-000004'`, edited); err != nil {
		t.Fatal(err)
	}
	// The syncer brings the Yjs side up to the row while the cohort is at
	// Legacy, and says so under the Legacy epoch (where no gate counts).
	rep := waitReport(t, dp, "the write reconciled at Legacy", 30*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Mismatched == 1
	})
	if len(rep.SampleMismatches) != 1 || rep.SampleMismatches[0] != "doc-000004" {
		t.Errorf("at Legacy the report names %v, want doc-000004", rep.SampleMismatches)
	}
	cs = stageAttempt(t, dp, cs.Epoch, dataplane.StageDualWrite, 2, "")
	// Every report of the new attempt, until every document is verified
	// and for a while after, says no mismatch.
	deadline := time.Now().Add(30 * time.Second)
	var settledAt time.Time
	for {
		rep, _ := pollReport(t, dp, 0, func(dataplane.CohortReport) bool { return true })
		if rep.Epoch == cs.Epoch {
			if rep.Mismatched != 0 {
				t.Fatalf("attempt 2 reports %d mismatched (%v): a write made while the cohort was at Legacy counts against the new attempt", rep.Mismatched, rep.SampleMismatches)
			}
			if rep.Verified == n && settledAt.IsZero() {
				settledAt = time.Now()
			}
		}
		if !settledAt.IsZero() && time.Since(settledAt) > 2*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("attempt 2 never verified every document; last report %+v", rep)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The Yjs side follows the row, and the ledger says so.
	if got := scalar(t, pool, `SELECT count(*) FROM save_ledger WHERE doc_id = 'doc-000004' AND kind = 'repaired'`); got != 1 {
		t.Errorf("%d repair entries for doc-000004, want 1", got)
	}
	if got := scalar(t, pool, `SELECT count(*) FROM divergences WHERE doc_id = 'doc-000004' AND resolved_at IS NULL`); got != 0 {
		t.Errorf("%d open divergences for doc-000004", got)
	}
	// A write behind the gateway during the attempt is a mismatch.
	if _, err := pool.Exec(ctx, `UPDATE documents SET content = 'written behind the gateway during the attempt' WHERE doc_id = 'doc-000006'`); err != nil {
		t.Fatal(err)
	}
	rep = waitReport(t, dp, "the mismatch of a write during the attempt", 30*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Mismatched >= 1
	})
	if rep.Mismatched != 1 || len(rep.SampleMismatches) != 1 || rep.SampleMismatches[0] != "doc-000006" {
		t.Errorf("during the attempt: %d mismatched %v, want doc-000006 alone", rep.Mismatched, rep.SampleMismatches)
	}
}
