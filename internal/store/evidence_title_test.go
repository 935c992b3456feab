package store

import (
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// A save kept aside only because both renamed the document: the evidence
// of the request must not claim its text conflicted.
func TestTitleOnlyConflictEvidence(t *testing.T) {
	e := setup(t)
	e.cohort("lf", dataplane.StageLocalFirst, "tf")
	e.submit(Request{Kind: KindCreate, Doc: "a", Tenant: "tf", User: "s", Title: ptr("Essay"), Content: "one two three"})
	e.submit(Request{Kind: KindSave, Doc: "a", Tenant: "tf", User: "t", Title: ptr("Essay (graded)"), Content: "one two three", BaseRevision: 1})
	r := e.submit(Request{Kind: KindSave, Doc: "a", Tenant: "tf", User: "s", IdempotencyKey: "k1", Title: ptr("My essay"), Content: "one two three four", BaseRevision: 1})
	if r.Outcome != OutcomeConflictPreserved {
		t.Fatalf("outcome %s", r.Outcome)
	}
	ev, err := e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "a", Tenant: "tf", Request: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ev.Proof.Summary, "text conflicted") || !strings.Contains(ev.Proof.Summary, "conflict on the title") ||
		ev.Proof.PreservedAt != "/v1/documents/a/preserved/1" {
		t.Errorf("title-only conflict explained as: %q (verdict %s)", ev.Proof.Summary, ev.Verdict)
	}
}

// TestEvidenceOfARefusedTitleOnlySave: alice renames her essay, and the
// save (the same text, a new title) is refused for her expired token. A
// refusal is recorded with its text's hash and no title, so its evidence
// said "the same text ... was already committed by request k0 of the
// same user", which support read as "your save is safe": the new title
// was never saved. The note says the refusal records the text only.
func TestEvidenceOfARefusedTitleOnlySave(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", IdempotencyKey: "k0", Title: ptr("Essay"), Content: "one two three"})
	// As the gateway records a save refused for an expired token.
	e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "alice", RequestID: "rename-1", Code: "token_expired", Reason: "token expired",
		Title: ptr("My essay on rivers"), Content: "one two three"})
	ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", Request: "rename-1"})
	t.Logf("%s: %s", ev.Verdict, ev.Proof.Summary)
	if ev.Verdict != VerdictRejected || !strings.Contains(ev.Proof.Summary, "was already committed by request k0") {
		t.Fatalf("%s %q; want rejected, the same text already committed by k0", ev.Verdict, ev.Proof.Summary)
	}
	if want := "the refusal records the text only (a refusal records no title)"; !strings.Contains(ev.Proof.Summary, want) {
		t.Errorf("summary %q does not say %q: it reads as if the new title were kept", ev.Proof.Summary, want)
	}
}
