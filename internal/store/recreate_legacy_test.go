package store

import (
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestIDTakenAgainAtLegacyKeepsItsNewText: a cohort rolled back to Legacy,
// the legacy application deletes a document that had a Yjs side (the
// deletion stands), and the school creates a document with the same ID.
// At Legacy the create wrote no Yjs, so the deleted document's Yjs
// generation stayed the ID's latest: once the syncer loaded the document
// again (a restart, an eviction), the new row and the old Yjs text
// differed, and the repair every next group runs first merged the old
// text into the new document (the legacy side had not "moved", so the
// Yjs side's difference was taken as a change): the student's text was
// replaced by the deleted essay, and a backfill skipped the ID (it "has"
// a Yjs side). The create starts a generation of its own instead.
func TestIDTakenAgainAtLegacyKeepsItsNewText(t *testing.T) {
	e := setup(t)
	cs := e.cohort("c", dataplane.StageDualWrite, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "the deleted essay"})
	cs = e.stageAttempt("c", cs.Epoch, dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	// The deletion stands (legacy authoritative) ...
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "x", BaseRevision: 1}); AsError(err).Code != CodeNotFound {
		t.Fatalf("save of the deleted document: %v", err)
	}
	// ... and the school takes the ID again.
	r := e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "v", Content: "a fresh start"})
	e.restart()
	// Any group touching the document (here a repair, as verification
	// submits; a save or a sync step 1 does the same) ...
	if _, err := e.eng.Repair(t.Context(), "d", "probe"); err != nil {
		t.Fatal(err)
	}
	d, err := e.eng.Read(t.Context(), "t1", "d")
	if err != nil || d.Content != "a fresh start" || d.Revision != r.Revision {
		t.Fatalf("the document created again: %q revision %d, %v; want %q revision %d", d.Content, d.Revision, err, "a fresh start", r.Revision)
	}
	// From DualWrite on, both sides hold the new text.
	e.stageAttempt("c", cs.Epoch, dataplane.StageDualWrite, 2, "")
	if v, err := e.eng.VerifyDocs(t.Context(), []string{"d"}); err != nil || len(v) != 1 || v[0].Verdict != VerifyMatch {
		t.Errorf("verify: %+v %v", v, err)
	}
	if rep, err := e.eng.VerifyLedger(t.Context(), "d"); err != nil || !rep.OK {
		t.Errorf("ledger: %+v %v", rep, err)
	}
}
