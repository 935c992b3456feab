package store

import (
	"testing"
)

// TestARowInsertedUnderACachedDeletionIsFound: school t's
// document d (LocalFirst) is deleted by the legacy application; the
// syncer keeps that (the gateway asked who owns d). The legacy
// application then inserts d for school t2 (the ID given away by DELETE
// and INSERT). t2's first save (its stage not yet known to the engine:
// the two-round-trip path) must be applied to t2's document, not fail:
// the group re-creating t's row from its Yjs side collides with t2's
// row, an error no rerun from reloaded documents takes care of.
func TestARowInsertedUnderACachedDeletionIsFound(t *testing.T) {
	e := setup(t)
	e.aliceEssay()
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	// Someone else reads d: the syncer reloads it and keeps it as
	// deleted outside the gateway.
	if _, err := e.eng.Read(t.Context(), "t2", "d"); !isNotFound(err) {
		t.Fatalf("t2 reads d before it is given: %v", err)
	}
	if owner, err := e.eng.DocumentTenant(t.Context(), "d"); err != nil || owner != "" {
		t.Fatalf("owner of d: %q, %v", owner, err)
	}
	if _, err := e.pool.Exec(t.Context(), `INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('d', 't2', 'bob', 'Bob''s notes', 'Bob''s text.', 1, 0, now(), now())`); err != nil {
		t.Fatal(err)
	}
	r, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t2", User: "bob", Content: "Bob's text, edited."})
	if err != nil {
		t.Fatalf("school t2's save of the document given to it: %v", err)
	}
	if d, err := e.eng.Read(t.Context(), "t2", "d"); err != nil || d.Content != "Bob's text, edited." || d.Revision != r.Revision {
		t.Errorf("school t2 reads %q revision %d, %v", d.Content, d.Revision, err)
	}
}

// TestASaveOnTheRevisionTheGivenRowShowsIsApplied: the legacy
// application gives d to school t2 with a row at revision 1; t2's editor
// saves on that revision. The syncer numbered the row on from school t's
// history (revision 2) and merged t2's save against school t's revision
// 1 as its base: a conflict, and t2's save was kept aside, not applied.
//
// Its revision 1 is now the revision the row was taken in as, for a save
// as for one after a restart (read from the ledger's repaired-anew entry).
func TestASaveOnTheRevisionTheGivenRowShowsIsApplied(t *testing.T) {
	bothWaysOfGiving(t, func(t *testing.T, inPlace bool) {
		e := setup(t)
		e.aliceEssay()
		e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "alice", Content: "Alice's essay, longer."})
		e.regive(inPlace)
		r, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t2", User: "bob", Content: "Bob's text, edited.", BaseRevision: 1})
		if err != nil {
			t.Fatal(err)
		}
		if r.Outcome != OutcomeSaved || deref(r.Content) != "Bob's text, edited." {
			t.Errorf("school t2's save on its row's revision 1: %s, %q (preserved %d)", r.Outcome, deref(r.Content), r.PreservedID)
		}
		// A second editor of t2's, also on the row's revision 1, after
		// a restart: merged with the first (not with school t's text).
		e.restart()
		r, err = e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t2", User: "carol", Content: "Carol's start. Bob's text.", BaseRevision: 1})
		if err != nil {
			t.Fatal(err)
		}
		if want := "Carol's start. Bob's text, edited."; r.Outcome != OutcomeMerged || deref(r.Content) != want {
			t.Errorf("the second save on the row's revision 1: %s, %q (preserved %d); want merged %q", r.Outcome, deref(r.Content), r.PreservedID, want)
		}
	})
}
