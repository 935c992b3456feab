package store

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
)

// TestEvidenceOfARefusedUpdateWhoseOperationsTheServerAlreadyHeld: a
// student's editor sends her paragraph (request first-1, committed),
// hears nothing back, and sends the same update again after her token
// expired (request again-1, refused). Asked about again-1, evidence said
// only "refused: token_expired", and support told her the paragraph was
// lost: savedLater looked only after the refusal, and a resend of what
// the server had was nothing "later". The refusal stays rejected, and
// its finding says the server held every operation it carried already,
// which request committed them, at which ledger entry and revision.
func TestEvidenceOfARefusedUpdateWhoseOperationsTheServerAlreadyHeld(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "teacher", Content: "Task."})
	stu := e.replicasOf("t", "d", 601)[0]
	u := insertAtEnd(t, stu, " My paragraph.")
	first := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "stu", RequestID: "first-1", Update: u})
	// As the gateway records an update refused for an expired token.
	e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "stu", RequestID: "again-1", Code: "token_expired", Reason: "token expired", Update: u})

	ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", Request: "again-1"})
	t.Logf("%s: %s: %s %v", ev.Subject, ev.Verdict, ev.Proof.Summary, ev.Proof.Entries)
	if ev.Verdict != VerdictRejected {
		t.Fatalf("%s: %s, want rejected (true of that request)", ev.Subject, ev.Verdict)
	}
	for _, want := range []string{"refused: token_expired", "every operation it carried (client 601 clocks 0-13)",
		fmt.Sprintf("was already committed by request first-1 (ledger entry %d)", first.LedgerSeq), fmt.Sprintf("in the text as of revision %d", first.Revision)} {
		if !strings.Contains(ev.Proof.Summary, want) {
			t.Errorf("summary %q does not say %q: support reads her paragraph as lost", ev.Proof.Summary, want)
		}
	}
	if ev.Proof.Revision != first.Revision || !slices.Contains(ev.Proof.Entries, first.LedgerSeq) {
		t.Errorf("proof revision %d entries %v, want revision %d and the commit (ledger entry %d) among them", ev.Proof.Revision, ev.Proof.Entries, first.Revision, first.LedgerSeq)
	}
}

// TestEvidenceOfARefusedSaveWhoseTextTheSameUserHadJustSaved: a legacy
// editor saves (request k1, committed), misses the answer and saves the
// same text again once its token has expired (refused, recorded with the
// text's hash). Asked about the refused request, support read only
// "refused: token_expired". The document's text was already that text,
// saved by the same user: the finding says so. The same text saved first
// by another user, or before a save of other text, proves nothing of the
// refused request's work.
func TestEvidenceOfARefusedSaveWhoseTextTheSameUserHadJustSaved(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "Hello"})
	saved := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "alice", IdempotencyKey: "k1", Content: "Hello, my essay"})
	// As the gateway records a save refused for an expired token.
	e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "alice", RequestID: "night-1", Code: "token_expired", Reason: "token expired", Content: "Hello, my essay"})
	ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", Request: "night-1"})
	t.Logf("%s: %s: %s %v", ev.Subject, ev.Verdict, ev.Proof.Summary, ev.Proof.Entries)
	if ev.Verdict != VerdictRejected {
		t.Fatalf("%s: %s, want rejected", ev.Subject, ev.Verdict)
	}
	for _, want := range []string{"refused: token_expired", fmt.Sprintf("the same text (content sha256 %s)", ledger.SHA256Hex([]byte("Hello, my essay"))),
		fmt.Sprintf("was already committed by request k1 of the same user (ledger entry %d), as revision %d", saved.LedgerSeq, saved.Revision)} {
		if !strings.Contains(ev.Proof.Summary, want) {
			t.Errorf("summary %q does not say %q", ev.Proof.Summary, want)
		}
	}
	if ev.Proof.Revision != saved.Revision || !slices.Contains(ev.Proof.Entries, saved.LedgerSeq) {
		t.Errorf("proof revision %d entries %v, want revision %d and the save (ledger entry %d) among them", ev.Proof.Revision, ev.Proof.Entries, saved.Revision, saved.LedgerSeq)
	}

	// Bob saved it; then alice's save of the same text is refused.
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "bob", Content: "Hello, our essay"})
	e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "alice", RequestID: "night-2", Code: "token_expired", Reason: "token expired", Content: "Hello, our essay"})
	// Alice's text of k1, refused after bob's save changed it.
	e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "alice", RequestID: "night-3", Code: "token_expired", Reason: "token expired", Content: "Hello, my essay"})
	for _, id := range []string{"night-2", "night-3"} {
		if ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", Request: id}); ev.Verdict != VerdictRejected || ev.Proof.Summary != "refused: token_expired" {
			t.Errorf("evidence of %s: %s %q, want only refused", id, ev.Verdict, ev.Proof.Summary)
		}
	}
}

// TestEvidenceOfARefusedSaveOfTextADeletedDocumentHad: the same user's
// text was committed, then the document deleted outside the gateway (the
// legacy application); a save of that text refused after the deletion is
// not "already committed": the document at the ID no longer holds it.
// (At a stage with a Yjs side, where the deletion is on record.)
func TestEvidenceOfARefusedSaveOfTextADeletedDocumentHad(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageDualWrite, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "Hello"})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "alice", IdempotencyKey: "k1", Content: "Hello, my essay"})
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	// A save that finds the row gone puts the deletion on record.
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "bob", Content: "Something else"}); err == nil {
		t.Fatal("a save of the deleted document was taken")
	}
	e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "alice", RequestID: "night-1", Code: "token_expired", Reason: "token expired", Content: "Hello, my essay"})
	ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", Request: "night-1"})
	t.Logf("%s: %s: %s %v", ev.Subject, ev.Verdict, ev.Proof.Summary, ev.Proof.Entries)
	if ev.Verdict != VerdictRejected || strings.Contains(ev.Proof.Summary, "already committed") {
		t.Errorf("evidence of night-1: %s %q, want rejected without a claim that the deleted document holds its text", ev.Verdict, ev.Proof.Summary)
	}
}
