package store

import (
	"fmt"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestEvidenceOfARefusedUpdateSentAgainHeldThenTakenIn: a student's
// update is refused (her token had expired); her editor sends it again
// (request late-2), but it builds on a classmate's line the server has
// not received, so it is held pending; the classmate's update then
// brings both into the text. Every operation the refused request carried
// is in the text, yet its finding said only "refused: token_expired":
// savedLater looked for a commit that both carried her client and left
// its clock past the refused operations, and the commit that carried
// them (held) left the clock where it was, while the one that took them
// in (the classmate's) does not carry her client.
func TestEvidenceOfARefusedUpdateSentAgainHeldThenTakenIn(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "teacher", Content: "Task."})
	reps := e.replicasOf("t", "d", 501, 502)
	stu, peer := reps[0], reps[1]
	pu := insertAtEnd(t, peer, " Peer line.")
	if err := stu.ApplyUpdate(pu); err != nil {
		t.Fatal(err)
	}
	su := insertAtEnd(t, stu, " Student paragraph.")
	// As the gateway records an update refused for an expired token.
	e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "stu", RequestID: "late-1", Code: "token_expired", Reason: "token expired", Update: su})
	if r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "stu", RequestID: "late-2", Update: su}); r.Outcome != OutcomePending {
		t.Fatalf("her update sent again: %+v, want held pending", r)
	}
	r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "peer", RequestID: "peer-1", Update: pu})
	if d, err := e.eng.Read(t.Context(), "t", "d"); err != nil || !strings.Contains(d.Content, "Student paragraph.") || d.Revision != r.Revision {
		t.Fatalf("her paragraph is not in the text as of revision %d: %+v %v", r.Revision, d, err)
	}
	ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", Request: "late-1"})
	t.Logf("%s: %s: %s %v", ev.Subject, ev.Verdict, ev.Proof.Summary, ev.Proof.Entries)
	if ev.Verdict != VerdictRejected {
		t.Fatalf("%s: %s, want rejected (true of that request)", ev.Subject, ev.Verdict)
	}
	for _, want := range []string{"refused: token_expired", "committed later by request late-2", fmt.Sprintf("in the text as of revision %d", r.Revision)} {
		if !strings.Contains(ev.Proof.Summary, want) {
			t.Errorf("summary %q does not say %q: support reads her paragraph as lost", ev.Proof.Summary, want)
		}
	}
	if ev.Proof.Revision != r.Revision {
		t.Errorf("proof revision %d, want %d (the revision whose text holds her paragraph)", ev.Proof.Revision, r.Revision)
	}
}

// TestEvidenceOfAnAnnouncementOfACopyAlreadyKeptAside: a client sends a
// copy typed into a fresh document (a history the server does not know:
// its text merged and preserved, not CRDT-merged), then reconnects with
// the same copy and announces it again (request hello-again), as a
// client that was not reset does. The server does not hold those
// operations: they are preserved. Asked about the announcement, evidence
// said synced, "the server holds them now": announcedFindings looked for
// the foreign history only after the announcement, and unsyncedFindings
// had left the client out because a foreign history kept it aside.
func TestEvidenceOfAnAnnouncementOfACopyAlreadyKeptAside(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "The cat sat."})
	f := yjs.NewDoc(yjs.Options{ClientID: 99})
	tx := f.GetText(contract.YjsTextName)
	if err := tx.Insert(0, "The cat sat. Today: we wrote.", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "v", RequestID: "copy", Update: f.EncodeStateAsUpdate(nil)}); err == nil {
		t.Fatal("foreign copy taken as an update")
	}
	e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t1", User: "v", RequestID: "hello-again", StateVector: f.EncodeStateVector()})
	ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t1", Request: "hello-again"})
	t.Logf("%s: %s: %s", ev.Subject, ev.Verdict, ev.Proof.Summary)
	if ev.Verdict == VerdictSynced {
		t.Errorf("%s: synced (%s); client 99's operations are not on the server: its copy was preserved", ev.Subject, ev.Proof.Summary)
	}
	if ev.Verdict != VerdictOverwrittenPreserved || !strings.Contains(ev.Proof.PreservedAt, "/preserved/") || !strings.Contains(ev.Proof.Summary, "request copy") {
		t.Errorf("%s: %s, preserved at %q (%s); the announced copy is preserved", ev.Subject, ev.Verdict, ev.Proof.PreservedAt, ev.Proof.Summary)
	}
}
