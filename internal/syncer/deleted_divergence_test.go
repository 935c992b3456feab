package syncer

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", DatabaseURL: dsn, Rollout: itRollout, Shard: 0, Shards: 1, PodName: "demo-gateway-0",
			InternalToken: "tok", Heartbeat: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
			Integrity: IntegrityConfig{BackfillRate: -1, BackfillBatch: 50, VerifyEvery: 100 * time.Millisecond, VerifyFullEvery: 2 * time.Second}})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("syncer: %v", err)
		}
	}()
	cs = setStage(t, dp, cs.Epoch, dataplane.StageDualWrite)
	cs = setStage(t, dp, cs.Epoch, dataplane.StageBackfill)
	waitReport(t, dp, "backfilled", 30*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.BackfillComplete && c.Verified == n
	})
	cs = setStage(t, dp, cs.Epoch, dataplane.StageVerify)
	waitReport(t, dp, "verified at Verify", 30*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Verified == n
	})

	const doc = "doc-000007"
	// The legacy application: changes the row, then (in a transaction
	// holding it) deletes the document.
	if _, err := pool.Exec(ctx, `UPDATE documents SET content = 'changed outside' WHERE doc_id = $1`, doc); err != nil {
		t.Fatal(err)
	}
	app, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(context.Background())
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM documents WHERE doc_id = $1 FOR UPDATE`, doc); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); scalar(t, pool, `SELECT count(*) FROM divergences WHERE doc_id = $1 AND resolved_at IS NULL`, doc) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("verification recorded no divergence")
		}
	}
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
