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
