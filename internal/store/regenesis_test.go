package store

import (
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestAStaleCopyOfARecreatedDocumentIsRefused: every generation's genesis
// was made by the one fixed GenesisClientID, so a local-first client still
// holding a document deleted outside the gateway, whose ID was then taken
// again, announced a state vector that looked like a prefix of the new
// document's history whenever the new text was as long: it was answered
// against the new text, and its copy read "abcz12" where the document
// held "wxyz12" (its later edits would have landed at the new text's
// characters with the same IDs). A later generation's genesis now has a
// client ID of its own: the stale copy's sync step 1 is refused as a
// foreign history (the client reloads), and its whole state sent back as
// an update is merged on text and preserved, not integrated.
func TestAStaleCopyOfARecreatedDocumentIsRefused(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageDualWrite, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "abc"})
	stale := e.replicasOf("t1", "d", 42)[0]
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "x", BaseRevision: 1}); AsError(err).Code != CodeNotFound {
		t.Fatalf("save of the deleted document: %v", err)
	}
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "v", Content: "wxyz12"})

	_, err := e.eng.Submit(t.Context(), Request{Kind: KindSync1, Doc: "d", Tenant: "t1", User: "u", StateVector: stale.EncodeStateVector()})
	if err == nil || AsError(err).Code != CodeForeignHistory {
		t.Fatalf("the stale copy's sync step 1: %v; want %s", err, CodeForeignHistory)
	}
	// Its whole state, as a client sends what the server lacks.
	_, err = e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "u", Update: stale.EncodeStateAsUpdate(nil)})
	if err == nil || AsError(err).Code != CodeForeignHistory {
		t.Fatalf("the stale copy's update: %v; want %s", err, CodeForeignHistory)
	}
	// Its own edit, typed into the stale copy after the new document
	// was made (it builds on the old genesis), is refused too.
	sv := stale.StateVector()
	if err := stale.GetText(contract.YjsTextName).Insert(3, "!", nil); err != nil {
		t.Fatal(err)
	}
	edit := stale.EncodeStateAsUpdate(sv)
	_, err = e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "u", Update: edit})
	if err == nil || AsError(err).Code != CodeForeignHistory {
		t.Fatalf("the stale copy's edit: %v; want %s", err, CodeForeignHistory)
	}
	if got := e.yjsText("d"); got != "wxyz12" {
		t.Fatalf("the document after the stale copy: %q, want %q", got, "wxyz12")
	}
	// A fresh client of the new document syncs as ever.
	if got := e.replicasOf("t1", "d", 43)[0].GetText(contract.YjsTextName).String(); got != "wxyz12" {
		t.Fatalf("a fresh client reads %q", got)
	}
	// And a client of the first document that was never deleted is not
	// affected: the first generation keeps GenesisClientID.
	if genesisClient(1) != GenesisClientID || genesisClient(2) == GenesisClientID {
		t.Fatal("generation 1 must keep GenesisClientID and later ones have their own")
	}
}
