package store

import (
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestMergedStaleSaveKeepsAnOfflineEditInPlace: the forward flip. A
// legacy client that loaded the essay in Verify saves after the flip to
// LocalFirst with its stale base (it corrects the first and the last
// word: merged), while a local-first student, offline, replaced one word
// in the middle. Disjoint edits: each is in the text once, in its place.
// The save's Yjs edit replaced everything from its first change to its
// last, so the student's change, synced afterwards, landed at that span's
// edge and the old word came back ("The colouropening sentence. The color
// is red."). Found by review.
func TestMergedStaleSaveKeepsAnOfflineEditInPlace(t *testing.T) {
	e := setup(t)
	cs := e.cohort("c", dataplane.StageVerify, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "The first sentence. The color is red. The last sentence."})
	e.setStage("c", cs.Epoch, dataplane.StageLocalFirst)
	x := e.replicasOf("t1", "d", 77)[0]
	tx := x.GetText(contract.YjsTextName)
	var u []byte
	x.OnUpdate(func(b []byte) { u = b })
	if err := tx.Insert(tx.Len(), " PS.", nil); err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "stud", Update: u})
	// Offline: "color" -> "colour".
	i := strings.Index(tx.String(), "color")
	if err := x.Transact(func(*yjs.Transaction) error {
		if err := tx.Delete(i, 5); err != nil {
			return err
		}
		return tx.Insert(i, "colour", nil)
	}); err != nil {
		t.Fatal(err)
	}
	r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "teacher", Content: "The opening sentence. The color is red. The final sentence.", BaseRevision: 1})
	if r.Outcome != OutcomeMerged || *r.Content != "The opening sentence. The color is red. The final sentence. PS." {
		t.Fatalf("stale save: %s %q", r.Outcome, *r.Content)
	}
	// The student reconnects: sync step 1, then what the server lacks.
	s1 := e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t1", User: "stud", StateVector: x.EncodeStateVector()})
	if err := x.ApplyUpdate(s1.Update); err != nil {
		t.Fatal(err)
	}
	sv, err := yjs.DecodeStateVector(s1.StateVector)
	if err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "stud", Update: x.EncodeStateAsUpdate(sv)})
	d, err := e.eng.Read(t.Context(), "t1", "d")
	if err != nil {
		t.Fatal(err)
	}
	if want := "The opening sentence. The colour is red. The final sentence. PS."; d.Content != want {
		t.Fatalf("document reads %q, want %q", d.Content, want)
	}
}
