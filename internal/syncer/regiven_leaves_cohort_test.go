package syncer

import (
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestDocumentGivenToASchoolOutsideTheCohortIsNotCountedVerified: at
// Verify, the legacy application gives a verified document of the cohort
// to a school in no cohort (UPDATE ... SET tenant), and gives the cohort a
// document it created for another school; a transaction of its own keeps
// that row (FOR KEY SHARE), so the backfill skips it for now and it has no
// Yjs representation. The report must not say that every document of the
// cohort is checked (Verified + Mismatched >= Documents: the controller's
// coverage check, I3) while one has never been: the document that left the
// cohort keeps its "match" verdict under the cohort in the syncer's list
// (the outside change names its new school, in no verified cohort, so the
// incremental pass drops it) until the next full pass, and stands in for
// the unchecked one.
func TestDocumentGivenToASchoolOutsideTheCohortIsNotCountedVerified(t *testing.T) {
	const n = 20
	dsn, dp, pool, cs, _ := atVerify(t, n)
	ctx := t.Context()

	// The new document is given to school s1 (cohort pilot); a verified one
	// of s1 is given to school "other" (no cohort).
	heldNewDocument(t, dsn)
	if _, err := pool.Exec(ctx, `UPDATE documents SET tenant = 'other' WHERE doc_id = 'doc-000002'`); err != nil {
		t.Fatal(err)
	}
	var bad dataplane.CohortReport
	seen := false
	fresh := false
	// The shard's cohort counts are cached up to 10 s: only reports whose
	// counts show the change (19 of the cohort's 20 documents with a Yjs
	// representation) are judged.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if scalar(t, pool, `SELECT count(*) FROM yjs_updates WHERE doc_id = 'doc-new'`) != 0 {
			t.Fatal("setup: the backfill did not skip the held row")
		}
		rep, ok := pollReport(t, dp, 0, func(c dataplane.CohortReport) bool {
			return c.Epoch == cs.Epoch && c.Documents == n && c.Backfilled == n-1
		})
		if !ok {
			continue
		}
		fresh = true
		if rep.Verified+rep.Mismatched >= rep.Documents {
			bad, seen = rep, true
			break
		}
	}
	if !fresh {
		t.Fatal("setup: no report counted the cohort's documents after the change")
	}
	if seen {
		t.Fatalf("the report says every document of the cohort was checked (%d verified + %d mismatched of %d documents, %d backfilled), "+
			"yet doc-new, in the cohort, has no Yjs representation and was never verified; doc-000002, no longer in the cohort, is counted verified",
			bad.Verified, bad.Mismatched, bad.Documents, bad.Backfilled)
	}
}
