package syncer

import (
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestRowDeletedOutsideIsFoundByVerification: a documents row deleted
// outside the gateway is logged (migration 00013) and found by the next
// incremental pass. At LocalFirst, where the Yjs side is authoritative,
// the syncer makes the row again from it, without anyone touching the
// document; at Verify the deletion stands and nothing stays open.
func TestRowDeletedOutsideIsFoundByVerification(t *testing.T) {
	const n = 20
	_, dp, pool, cs, _ := atVerify(t, n)
	ctx := t.Context()
	exists := func(doc string) bool {
		return scalar(t, pool, `SELECT count(*) FROM documents WHERE doc_id = $1`, doc) == 1
	}
	// At Verify (the legacy side authoritative) the deletion stands.
	if _, err := pool.Exec(ctx, `DELETE FROM documents WHERE doc_id = 'doc-000004'`); err != nil {
		t.Fatal(err)
	}
	waitReport(t, dp, "the deleted document out of the count", 10*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Documents == n-1 && c.Verified == n-1
	})
	if exists("doc-000004") {
		t.Fatal("a document deleted at Verify was made again")
	}
	// At LocalFirst it is made again from the Yjs side.
	cs = setStage(t, dp, cs.Epoch, dataplane.StageLocalFirst)
	waitReport(t, dp, "verified at LocalFirst", 30*time.Second, func(c dataplane.CohortReport) bool {
		return c.Epoch == cs.Epoch && c.Verified == n-1
	})
	var before string
	if err := pool.QueryRow(ctx, `SELECT content FROM documents WHERE doc_id = 'doc-000007'`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM documents WHERE doc_id = 'doc-000007'`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !exists("doc-000007") {
		if time.Now().After(deadline) {
			t.Fatal("the row deleted at LocalFirst was not made again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var after string
	if err := pool.QueryRow(ctx, `SELECT content FROM documents WHERE doc_id = 'doc-000007'`).Scan(&after); err != nil || after != before {
		t.Fatalf("made again with %q (%v), was %q", after, err, before)
	}
	if open := scalar(t, pool, `SELECT count(*) FROM divergences WHERE resolved_at IS NULL`); open != 0 {
		t.Errorf("%d divergences left open", open)
	}
}
