package store

import (
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// After a restart no tenant's stage is cached, so a group takes the
// two-round-trip path first. A document read (and so cached) before a
// write outside the gateway: the first save on it fails its change_seq
// guard, and even as the only request of its group it runs again from the
// reloaded document (it was refused with 503). Found by review.
func TestStaleRowOnTheSlowPathRunsAgain(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageDualWrite, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "alpha beta"})
	e.restart()
	if _, err := e.eng.Read(t.Context(), "t1", "d"); err != nil { // a teacher opens the document
		t.Fatal(err)
	}
	e.outOfBand("d", "alpha beta gamma", false) // an admin tool edits the row
	res, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "alpha beta delta", BaseRevision: 1})
	if err != nil {
		t.Fatalf("save after an outside write was refused: %v (code %s)", err, AsError(err).Code)
	}
	// The outside edit became revision 2; the save, stale against it,
	// wins as in the write-through store, with revision 2 kept.
	if res.Outcome != OutcomeOverwrittenPreserved || res.Revision != 3 || res.SupersededRevision != 2 {
		t.Errorf("save after an outside write: %s, revision %d superseding %d", res.Outcome, res.Revision, res.SupersededRevision)
	}
}

// Same without a restart: a document whose idempotency keys predate
// migration 00010 (save_requests) never takes the one-round-trip path for a
// keyed save; a keyed save after a write outside the gateway runs again
// too. Found by review.
func TestStaleRowWithKeysBefore00010RunsAgain(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("c", dataplane.StageDualWrite, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "alpha beta", IdempotencyKey: "c1"})
	if _, err := e.pool.Exec(ctx, `
		INSERT INTO save_requests (doc_id, idem_key, result, at)
			SELECT doc_id, idem_key, idem_result::jsonb, saved_at FROM document_revisions WHERE idem_key IS NOT NULL;
		UPDATE document_revisions SET idem_key = NULL, idem_result = NULL`); err != nil {
		t.Fatal(err)
	}
	e.restart()
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "alpha beta!", BaseRevision: 1, IdempotencyKey: "s1"})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "alpha beta!!", BaseRevision: 2}) // stages cached, fast path
	e.outOfBand("d", "alpha beta gamma", false)
	_, err := e.eng.Submit(ctx, Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "alpha beta delta", BaseRevision: 3, IdempotencyKey: "s2"})
	if err != nil {
		t.Fatalf("keyed save after an outside write was refused: %v (code %s)", err, AsError(err).Code)
	}
}
