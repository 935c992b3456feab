package store

import (
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestEvidenceOfAnUpdateThatEnteredAtOnceWhileAnotherWasHeldNamesItsOwnRevision:
// a student's update is held pending (it builds on a peer's operation not
// yet received). Meanwhile Alice, on her own laptop, adds a paragraph: it
// enters the text at once as revision 2, but its ledger entry says
// "pending" (the document, not her update, holds something pending). She
// types again (revision 3). The legacy app then saves on revision 2
// during a rollback, keeping her paragraph. Support asks about her first
// request: it entered the text as revision 2 and is in the text now.
// Evidence said it was held pending and entered as revision 3, and that
// revision 3 "was overwritten", naming the wrong revision and the wrong
// verdict for a paragraph the document still shows.
func TestEvidenceOfAnUpdateThatEnteredAtOnceWhileAnotherWasHeldNamesItsOwnRevision(t *testing.T) {
	e := setup(t)
	cs := e.cohort("c", dataplane.StageLocalFirst, "t")
	reps, _ := studentHeldBehindPeer(t, e, 100, 200, 300)
	alice := reps[2]
	a1 := insertAtEnd(t, alice, " Alice first.")
	if r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "alice", RequestID: "ws-alice-1", Update: a1}); r.Revision != 2 {
		t.Fatalf("alice's first update: %+v", r)
	}
	a2 := insertAtEnd(t, alice, " Alice second.")
	if r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "alice", RequestID: "ws-alice-2", Update: a2}); r.Revision != 3 {
		t.Fatalf("alice's second update: %+v", r)
	}
	rev2, err := e.eng.ReadRevision(t.Context(), "t", "d", 2)
	if err != nil || !strings.Contains(rev2.Content, "Alice first.") {
		t.Fatalf("revision 2 should hold alice's first paragraph: %q %v", rev2.Content, err)
	}
	e.stageAttempt("c", cs.Epoch, dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	if r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "teacher", BaseRevision: 2, Content: rev2.Content + " Graded."}); r.SupersededRevision != 3 {
		t.Fatalf("teacher's stale save: %+v", r)
	}
	ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", Request: "ws-alice-1"})
	if ev.Verdict != VerdictSynced || ev.Proof.Revision != 2 {
		t.Errorf("alice's first request: verdict %s, revision %d (%s); it entered the text at once as revision 2 and the document still holds it",
			ev.Verdict, ev.Proof.Revision, ev.Proof.Summary)
	}
}
