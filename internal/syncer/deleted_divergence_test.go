package syncer

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// TestDivergenceOfADeletedDocumentIsClosed: verification finds a legacy
// row changed outside the gateway at Verify and records an open
// divergence; before the repair lands, the legacy application deletes the
// document (its transaction held the row). The divergence stayed open for
// good: after a rollback and a new attempt (a new epoch, no diverged
// document left at all) every report still counted it, so the cohort's
// MaxOpenDivergences gate failed on every attempt. The repair now closes
// it (document-deleted). Found by review.
func TestDivergenceOfADeletedDocumentIsClosed(t *testing.T) {
	dsn := pgharness.ForTest(t)
	const n = 40
	dp, pool, cs := legacyFixture(t, dsn, n)
	runIntegritySyncer(t, dsn, 2*time.Second)
	ctx := t.Context()
	cs, _ = toVerify(t, dp, cs, n)

	const doc = "doc-000007"
	// The legacy application: changes the row, then (in a transaction
	// holding it) deletes the document.
	tx := changeAndHold(t, dsn, pool, doc)
	time.Sleep(300 * time.Millisecond)
	if _, err := tx.Exec(ctx, `DELETE FROM documents WHERE doc_id = $1`, doc); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	t.Logf("divergences of %s: %d open", doc, scalar(t, pool, `SELECT count(*) FROM divergences WHERE doc_id = $1 AND resolved_at IS NULL`, doc))

	// The gate rolls the cohort back; a new attempt starts at DualWrite.
	cs = setStage(t, dp, cs.Epoch, dataplane.StageLegacy)
	cs = setStage(t, dp, cs.Epoch, dataplane.StageDualWrite)
	rep := waitReportOrLast(t, dp, 8*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Verified == n-1 && c.OpenDivergences == 0
	})
	if rep.Epoch != cs.Epoch || rep.OpenDivergences != 0 {
		t.Fatalf("new attempt (epoch %d), every remaining document verified, yet the report counts %d open divergences (Verified %d/%d, Mismatched %d): the gate fails on every attempt",
			cs.Epoch, rep.OpenDivergences, rep.Verified, rep.Documents, rep.Mismatched)
	}
}

// changeAndHold has the legacy application change doc's row and then hold
// it (FOR UPDATE) in a transaction it returns, once verification has
// recorded the divergence the change makes (its repair waits for the row).
// The transaction is rolled back when the test ends unless committed.
func changeAndHold(t *testing.T, dsn string, pool *pgxpool.Pool, doc string) pgx.Tx {
	t.Helper()
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `UPDATE documents SET content = 'changed outside' WHERE doc_id = $1`, doc); err != nil {
		t.Fatal(err)
	}
	app, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close(context.Background()) })
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, `SELECT 1 FROM documents WHERE doc_id = $1 FOR UPDATE`, doc); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); scalar(t, pool, `SELECT count(*) FROM divergences WHERE doc_id = $1 AND resolved_at IS NULL`, doc) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("verification recorded no divergence")
		}
	}
	return tx
}
