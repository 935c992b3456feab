package store

import (
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestACopyOfADocumentDeletedTwiceAgoIsRefused: a student typed a
// document into existence; it was deleted outside the gateway, the ID
// was taken again, and that second document was deleted too. The
// student's copy of the first must still be refused, as it is once the
// syncer has loaded the ID again (the update log's earlier generations):
// noting the second deletion must not forget the first document's
// clients, or her next edit brings the ID back as a document holding
// nothing but an edit waiting for text that is gone.
func TestACopyOfADocumentDeletedTwiceAgoIsRefused(t *testing.T) {
	for _, reload := range []bool{false, true} {
		e := setup(t)
		e.cohort("c", dataplane.StageDualWrite, "t1")
		first := yjs.NewDoc(yjs.Options{ClientID: 42})
		tx := first.GetText(contract.YjsTextName)
		if err := tx.Insert(0, "my essay", nil); err != nil {
			t.Fatal(err)
		}
		e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "stu", Update: first.EncodeStateAsUpdate(nil)})
		deleteOutside := func() {
			t.Helper()
			if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
				t.Fatal(err)
			}
			if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "x", BaseRevision: 1}); AsError(err).Code != CodeNotFound {
				t.Fatalf("save of the deleted document: %v", err)
			}
		}
		deleteOutside()
		e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "teacher", Content: "fresh start"})
		deleteOutside()
		if reload {
			e.eng.cache.evict("d")
		}
		// The student's next edit, continuing her own text.
		var edit []byte
		first.OnUpdate(func(u []byte) { edit = u })
		if err := tx.Insert(tx.Len(), "!", nil); err != nil {
			t.Fatal(err)
		}
		_, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "stu", Update: edit})
		if err == nil || AsError(err).Code != CodeForeignHistory {
			t.Fatalf("reloaded %v: an edit of the first deleted document: %v; want %s", reload, err, CodeForeignHistory)
		}
		if n := e.count(`SELECT count(*) FROM documents WHERE doc_id = 'd'`); n != 0 {
			t.Fatalf("reloaded %v: the edit brought the ID back (%d rows)", reload, n)
		}
	}
}

// TestEvidenceOfARefusedCopySaysWhatTheDeletedDocumentHeld: a student
// typed "my essay" into existence (committed, revision 1); the document
// was deleted outside the gateway and her next edit refused. The answer
// reports revision 1 as synced, so its refused-copy finding may not say
// flatly that none of her operations is on the server: it says they are
// in no document now, and that the deleted document's history keeps the
// first 8.
func TestEvidenceOfARefusedCopySaysWhatTheDeletedDocumentHeld(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageDualWrite, "t1")
	d := yjs.NewDoc(yjs.Options{ClientID: 42})
	if err := d.GetText(contract.YjsTextName).Insert(0, "my essay", nil); err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "stu", Update: d.EncodeStateAsUpdate(nil)})
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "x", BaseRevision: 1}); AsError(err).Code != CodeNotFound {
		t.Fatalf("save of the deleted document: %v", err)
	}
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "stu", Update: insertAtEnd(t, d, "!")}); AsError(err).Code != CodeForeignHistory {
		t.Fatalf("the edit of the deleted document: %v", err)
	}
	for _, q := range []EvidenceQuery{{Doc: "d", Tenant: "t1"}, {Doc: "d", Tenant: "t1", Client: 42}} {
		ev := e.evidence(q)
		if ev.Verdict != VerdictSavedLocallyNotSynced || len(ev.Findings) == 0 {
			t.Fatalf("client %d: verdict %s", q.Client, ev.Verdict)
		}
		s := ev.Findings[0].Summary
		if strings.Contains(s, "is on the server") || !strings.Contains(s, "keeps the first 8") {
			t.Errorf("client %d: the refused copy's finding reads %q; revision 1, reported synced, holds 8 of its operations", q.Client, s)
		}
	}
}
