package syncer

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestNewDocumentIsNotCoveredByCachedCounts: at Verify the legacy
// application creates a document of a cohort's school (here: created for
// a school in no cohort, then given to s1, as the legacy application
// may); a transaction of its own keeps the row (FOR KEY SHARE), so the
// backfill skips it and it has no Yjs representation. The verification
// pass lists it (no Yjs: neither verified nor mismatched). The report
// must not say n of n documents verified (the controller's coverage
// check, I3) while the cohort has n+1: it took the document count from a
// cache up to 10 s old, and a soak ending then flipped the cohort.
func TestNewDocumentIsNotCoveredByCachedCounts(t *testing.T) {
	const n = 20
	dsn, dp, pool, cs, _ := atVerify(t, n)

	heldNewDocument(t, dsn)
	changed := time.Now()
	// Reports whose verification began after the change (ReportedAt is the
	// pass's time) and before the counts' cache ran out.
	for time.Since(changed) < 12*time.Second {
		if scalar(t, pool, `SELECT count(*) FROM yjs_updates WHERE doc_id = 'doc-new'`) != 0 {
			t.Fatal("setup: the backfill did not skip the held row")
		}
		rep, ok := pollReport(t, dp, 0, func(c dataplane.CohortReport) bool {
			return c.Epoch == cs.Epoch && c.ReportedAt.After(changed.Add(time.Second))
		})
		if ok && rep.Verified+rep.Mismatched >= rep.Documents {
			t.Fatalf("%v after doc-new joined the cohort, a report of a pass made since says every document was checked "+
				"(%d verified + %d mismatched of %d documents, %d backfilled); the cohort has %d, and doc-new has no Yjs representation",
				time.Since(changed).Round(100*time.Millisecond), rep.Verified, rep.Mismatched, rep.Documents, rep.Backfilled, n+1)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// heldNewDocument has the legacy application create doc-new for school
// "other" (in no cohort) and give it to s1 (cohort pilot), while a
// transaction of its own, open until the test ends, keeps the row (FOR KEY
// SHARE): the backfill skips it, and it has no Yjs representation.
func heldNewDocument(t *testing.T, dsn string) {
	t.Helper()
	ctx := t.Context()
	app, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Close(context.Background()) })
	if _, err := app.Exec(ctx, `INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('doc-new', 'other', 'u', '', 'a new document', 1, 0, now(), now())`); err != nil {
		t.Fatal(err)
	}
	holder, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Close(context.Background()) })
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, `SELECT 1 FROM documents WHERE doc_id = 'doc-new' FOR KEY SHARE`); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec(ctx, `UPDATE documents SET tenant = 's1' WHERE doc_id = 'doc-new'`); err != nil {
		t.Fatal(err)
	}
}
