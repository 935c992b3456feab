package store

import (
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestACopyOfADeletedTypedDocumentIsRefusedAfterAReload: a student typed
// a document into existence (no server genesis in its history); the
// legacy application deleted it and the school created a new document
// with the ID. The student's copy is refused while the syncer remembers
// the deleted document's clients; it was merged into the new document
// once the syncer had loaded the document again (evicted, or restarted),
// since those clients were kept in memory only. They are now read from
// the earlier generation's update log at load.
func TestACopyOfADeletedTypedDocumentIsRefusedAfterAReload(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageDualWrite, "t1")
	copyDoc := yjs.NewDoc(yjs.Options{ClientID: 42})
	if err := copyDoc.GetText(contract.YjsTextName).Insert(0, "my essay", nil); err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "stu", Update: copyDoc.EncodeStateAsUpdate(nil)})
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "x", BaseRevision: 1}); AsError(err).Code != CodeNotFound {
		t.Fatalf("save of the deleted document: %v", err)
	}
	created := e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "teacher", Content: "fresh start"})
	for _, reload := range []bool{false, true} {
		if reload {
			e.eng.cache.evict("d")
		}
		// The copy's whole state, as a reconnecting client sends it.
		_, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "stu", Update: copyDoc.EncodeStateAsUpdate(nil)})
		if err == nil || AsError(err).Code != CodeForeignHistory {
			t.Fatalf("reloaded %v: the deleted document's copy: %v; want %s", reload, err, CodeForeignHistory)
		}
		if got := e.yjsText("d"); got != "fresh start" {
			t.Fatalf("reloaded %v: the new document reads %q", reload, got)
		}
		// Refused as a copy of the deleted document, not taken for a
		// foreign copy of the new one: nothing preserved or merged into it.
		var rev, preserved int64
		if err := e.pool.QueryRow(t.Context(), `SELECT revision, (SELECT count(*) FROM preserved_content WHERE doc_id = 'd') FROM documents WHERE doc_id = 'd'`).Scan(&rev, &preserved); err != nil {
			t.Fatal(err)
		}
		if rev != created.Revision || preserved != 0 {
			t.Fatalf("reloaded %v: the deleted document's copy made revision %d (created at %d) and %d preserved copies in the new document (%v)", reload, rev, created.Revision, preserved, err)
		}
	}
	// The new document's own clients are not refused.
	if got := e.replicasOf("t1", "d", 43)[0].GetText(contract.YjsTextName).String(); got != "fresh start" {
		t.Fatalf("a client of the new document reads %q", got)
	}
}
