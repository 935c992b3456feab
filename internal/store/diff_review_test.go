package store

import (
	"math/rand/v2"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestStaleSaveKeepsAnotherUsersPunctuation: a teacher's committed
// correction (a full stop at the end of the sentence) and a student's
// stale save that typed on at the same point: both are kept (the full
// stop was dropped, merged with nothing preserved, because the student's
// insertion held a full stop somewhere). Found by the review of this
// session's diff.
func TestStaleSaveKeepsAnotherUsersPunctuation(t *testing.T) {
	e := setup(t)
	e.cohort("c", "LocalFirst", "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "stu", Content: "We went home"})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "teacher", Content: "We went home.", BaseRevision: 1})
	res := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "stu", Content: "We went home Then we left.", BaseRevision: 1})
	d, err := e.eng.Read(t.Context(), "t", "d")
	if err != nil {
		t.Fatal(err)
	}
	pres := e.count(`SELECT count(*) FROM preserved_content WHERE doc_id = 'd'`)
	if d.Content != "We went home. Then we left." {
		t.Errorf("document %q (outcome %s, %d preserved), want the teacher's full stop kept: %q", d.Content, res.Outcome, pres, "We went home. Then we left.")
	}
}

// TestAnotherTenantsRefusedUpdateIsNotTheOwnersUnsynced: another school's
// update to a school's document is refused (not_found) and recorded on the
// document's ledger; the owner's evidence is not about it (it said
// saved-locally-not-synced, naming the other school's client). Found by
// the review of this session's diff.
func TestAnotherTenantsRefusedUpdateIsNotTheOwnersUnsynced(t *testing.T) {
	e := setup(t)
	e.cohort("c", "LocalFirst", "t", "evil")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "Title\n"})
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "u", Update: e.clientEdit("t", "d", 4242, "My essay.")})
	x := yjs.NewDoc(yjs.Options{ClientID: 666})
	var u []byte
	x.OnUpdate(func(b []byte) { u = b })
	if err := x.GetText(contract.YjsTextName).Insert(0, "spam", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "evil", User: "m", Update: u}); err == nil {
		t.Fatal("another tenant's update taken")
	}
	ev, err := e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != VerdictSynced {
		t.Errorf("owner's document evidence: verdict %s, proof %q", ev.Verdict, ev.Proof.Summary)
	}
}

// TestDeletedIDStaysItsTenantsAfterAnotherAnnounces: a deleted document's
// ID stays its school's also after another school announced a state
// vector on it and the syncer restarted (the history's tenant was read
// from the latest entry, the announcement). Found by the review of this
// session's diff.
func TestDeletedIDStaysItsTenantsAfterAnotherAnnounces(t *testing.T) {
	e := setup(t)
	e.cohort("c", "Legacy", "a", "b")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "a", User: "ada", Content: "school-a notes"})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "a", User: "ada", Content: "school-a notes, final", BaseRevision: 1})
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	e.restart()
	res, err := e.eng.Submit(t.Context(), Request{Kind: KindSync1, Doc: "d", Tenant: "b", User: "eve", StateVector: yjs.EncodeStateVector(yjs.StateVector{12345: 3})})
	t.Logf("b's sync1: %+v %v", res.Outcome, err)
	for _, en := range e.entries("d") {
		t.Logf("entry %s tenant %s", en.Kind, en.Tenant)
	}
	e.restart()
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindCreate, Doc: "d", Tenant: "b", User: "eve", Content: "school-b essay"}); err == nil {
		t.Errorf("school-b created school-a's deleted document's ID after announcing a state vector on it")
	}
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindCreate, Doc: "d", Tenant: "a", User: "ada", Content: "school-a again"}); err != nil {
		t.Errorf("school-a's create again: %v", err)
	}
}

// TestLargeStateVectorOfAKnownHistoryIsTaken: a document edited in many
// sessions (Yjs draws a new client ID per page load) has a state vector
// over 64 KiB; a client holding it still syncs (a 64 KiB cap refused it,
// closing every client of such a document). Found by the review of this
// session's diff.
func TestLargeStateVectorOfAKnownHistoryIsTaken(t *testing.T) {
	e := setup(t)
	e.cohort("c", "LocalFirst", "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: ""})
	r := rand.New(rand.NewPCG(5, 6))
	acc := yjs.NewDoc(yjs.Options{ClientID: 1})
	res := e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})})
	if err := acc.ApplyUpdate(res.Update); err != nil {
		t.Fatal(err)
	}
	sent := acc.StateVector()
	for i := range 12000 {
		c := yjs.NewDoc(yjs.Options{ClientID: uint64(r.Uint32()>>1) | 1<<30})
		if err := c.GetText(contract.YjsTextName).Insert(0, "x", nil); err != nil {
			t.Fatal(err)
		}
		if err := acc.ApplyUpdate(c.EncodeStateAsUpdate(nil)); err != nil {
			t.Fatal(err)
		}
		if i%2000 == 1999 {
			e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "u", Update: acc.EncodeStateAsUpdate(sent)})
			sent = acc.StateVector()
		}
	}
	sv := acc.EncodeStateVector()
	t.Logf("state vector %d bytes", len(sv))
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "u", StateVector: sv}); err != nil {
		t.Errorf("a client holding the whole document announces it: %v", err)
	}
}
