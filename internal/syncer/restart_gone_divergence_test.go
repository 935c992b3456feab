package syncer

import (
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// TestOpenDivergenceOfDocumentDeletedWhileSyncerDownIsClosed: at Verify
// the legacy application changes a row and keeps it locked; verification
// records an open divergence, and its repair cannot land (the row is
// locked). The syncer is restarted (a rolling update) meanwhile, and the
// legacy application deletes the document in that same transaction. The
// new syncer's first pass is a full one: it lists the cohort's documents
// (the deleted one is not among them) and skips the outside changes logged
// before it (the next incremental pass reads again only the last 1024 of
// them; the legacy application wrote 1100 rows of other schools since), so
// nothing ever looks at the deleted document again. Its
// divergence must still be closed (as the repair closes it when the
// deletion is seen: "document-deleted"); left open, CohortDivergences counts
// it under the cohort at every epoch, and MaxOpenDivergences fails every
// attempt of the cohort for good.
func TestOpenDivergenceOfDocumentDeletedWhileSyncerDownIsClosed(t *testing.T) {
	dsn := pgharness.ForTest(t)
	const n = 20
	dp, pool, cs := legacyFixture(t, dsn, n)
	ctx := t.Context()
	// Incremental passes 2 s apart: the row is changed and locked between two.
	_, stop := runSyncerEvery(t, dsn, 2*time.Second, time.Hour)
	cs, _ = toVerify(t, dp, cs, n)

	const doc = "doc-000007"
	tx := changeAndHold(t, dsn, pool, doc)
	// The syncer is restarted while its repair waits for the row.
	stop()
	if _, err := tx.Exec(ctx, `DELETE FROM documents WHERE doc_id = $1`, doc); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Meanwhile the legacy application goes on writing the rows of a school
	// in no cohort (1100 writes logged on the shard after the deletion).
	for range 110 {
		if _, err := pool.Exec(ctx, `UPDATE documents SET content = content || '.' WHERE tenant = 'other'`); err != nil {
			t.Fatal(err)
		}
	}
	if open := scalar(t, pool, `SELECT count(*) FROM divergences WHERE doc_id = $1 AND resolved_at IS NULL`, doc); open != 1 {
		t.Fatalf("setup: %d open divergences of %s before the restart, want 1", open, doc)
	}
	restarted := time.Now()
	runSyncerEvery(t, dsn, 100*time.Millisecond, time.Hour)
	waitReport(t, dp, "the new syncer verified the remaining documents", 30*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.ReportedAt.After(restarted) && c.Documents == n-1 && c.Verified+c.Mismatched == n-1
	})
	// The gate rolls the cohort back; a new attempt starts.
	cs = setStage(t, dp, cs.Epoch, dataplane.StageLegacy)
	cs = setStage(t, dp, cs.Epoch, dataplane.StageDualWrite)
	rep := waitReportOrLast(t, dp, 10*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Verified == n-1 && c.OpenDivergences == 0
	})
	if rep.Epoch != cs.Epoch || rep.OpenDivergences != 0 {
		t.Fatalf("new attempt (epoch %d): every remaining document verified (%d/%d), yet the report counts %d open divergences "+
			"(the deleted %s's, open: %d): MaxOpenDivergences fails every attempt",
			cs.Epoch, rep.Verified, rep.Documents, rep.OpenDivergences, doc,
			scalar(t, pool, `SELECT count(*) FROM divergences WHERE doc_id = $1 AND resolved_at IS NULL`, doc))
	}
}
