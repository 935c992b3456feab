package syncer

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestOutsideChangeVerifiedAfterAFailedPass: an incremental verification
// pass reads a legacy row changed outside the gateway (outside_changes),
// then its VerifyDocs statement fails (the connection is lost). The
// outside change must still be verified by a later pass. The pass had
// already advanced the cursor and marked the row seen, so no later
// incremental pass looked at the document again, and the reports said
// every document verified and no mismatch until the next full pass (an
// hour here); a failed pass now makes the next one full. Found by review.
func TestOutsideChangeVerifiedAfterAFailedPass(t *testing.T) {
	dsn, dp, pool, cs, _ := atVerify(t, 40)
	ctx := t.Context()

	// Hold the Yjs tables so the integrity loop's statements wait; kill
	// them as a lost connection would.
	locker, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(context.Background())
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE yjs_snapshots IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	const tampered = "doc-000007"
	blocked := func(pattern string) int {
		var pid int
		err := pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE $1 LIMIT 1`, pattern).Scan(&pid)
		if err != nil {
			return 0
		}
		return pid
	}
	kill := func(pid int) {
		if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Fatal(err)
		}
	}
	const verifyQ, backfillQ = "%LEFT JOIN LATERAL%", "%NOT EXISTS (SELECT 1 FROM yjs_snapshots s%"
	phase := 0
	for deadline := time.Now().Add(20 * time.Second); phase < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("phase %d never reached", phase)
		}
		switch phase {
		case 0: // wait until the loop waits in its backfill step, before its verification
			if pid := blocked(verifyQ); pid != 0 {
				kill(pid)
			}
			if pid := blocked(backfillQ); pid != 0 {
				// The legacy application changes a row now: the next
				// verification pass's OutsideChanges reads it.
				if _, err := pool.Exec(ctx, `UPDATE documents SET content = 'changed behind the syncer''s back' WHERE doc_id = $1`, tampered); err != nil {
					t.Fatal(err)
				}
				kill(pid)
				phase = 1
			}
		case 1: // that pass's VerifyDocs fails
			if pid := blocked(verifyQ); pid != 0 {
				kill(pid)
				phase = 2
			}
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	// Incremental passes run every 100ms: the outside change must be found
	// (reported mismatched, recorded as a divergence) within seconds.
	rep := waitReportOrLast(t, dp, 8*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Mismatched >= 1
	})
	if rep.Mismatched == 0 {
		var content string
		_ = pool.QueryRow(ctx, `SELECT content FROM documents WHERE doc_id = $1`, tampered).Scan(&content)
		divs := scalar(t, pool, `SELECT count(*) FROM divergences WHERE doc_id = $1`, tampered)
		t.Fatalf("the outside write to %s (row now %q, %d divergences recorded) was never verified; fresh report %v after the failure says: Verified %d/%d, Mismatched %d, OpenDivergences %d",
			tampered, content, divs, rep.ReportedAt.Sub(released).Round(time.Millisecond), rep.Verified, rep.Documents, rep.Mismatched, rep.OpenDivergences)
	}
}
