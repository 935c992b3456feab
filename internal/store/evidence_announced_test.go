package store

import (
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestEvidenceOfAUserWhoseAnnouncedOperationsAnotherUserSent: a
// student's tab announces her client's operations (sync step 1) and goes
// away; a classmate's tab, which had received them from hers, sends them.
// Asked about the student, evidence said never-persisted: her only entry
// is the announcement, and the commit is the classmate's. Her work is on
// the server: synced, with the classmate's request as proof.
func TestEvidenceOfAUserWhoseAnnouncedOperationsAnotherUserSent(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "teacher", Content: "Start. "})
	d := yjs.NewDoc(yjs.Options{ClientID: 77})
	var u []byte
	d.OnUpdate(func(b []byte) { u = b })
	if err := d.GetText(contract.YjsTextName).Insert(0, "hers", nil); err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "stu", RequestID: "hello", StateVector: d.EncodeStateVector()})
	if ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", User: "stu"}); ev.Verdict != VerdictSavedLocallyNotSynced {
		t.Fatalf("before her operations arrive: %s (%s)", ev.Verdict, ev.Proof.Summary)
	}
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "classmate", RequestID: "relay", Update: u})
	for _, q := range []EvidenceQuery{{User: "stu"}, {Request: "hello"}} {
		q.Doc, q.Tenant = "d", "t"
		ev := e.evidence(q)
		if ev.Verdict != VerdictSynced || !strings.Contains(ev.Proof.Summary, "committed since by request relay") || len(ev.Proof.Entries) != 2 {
			t.Errorf("%s: %s %v (%s); client 77's operations are on the server, sent by request relay", ev.Subject, ev.Verdict, ev.Proof.Entries, ev.Proof.Summary)
		}
	}
}

// TestEvidenceOfAnAnnouncementWhoseOperationsCameAsAForeignHistory: a
// client announces a copy typed into a fresh document (request
// "hello-f"), then sends it; it is a history the server does not know,
// merged on text and preserved, not CRDT-merged. Asked about the
// announcement, evidence said never-persisted: the copy is preserved,
// and the proof must say where.
func TestEvidenceOfAnAnnouncementWhoseOperationsCameAsAForeignHistory(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "The cat sat."})
	f := yjs.NewDoc(yjs.Options{ClientID: 99})
	tx := f.GetText(contract.YjsTextName)
	if err := tx.Insert(0, "The cat sat.", nil); err != nil {
		t.Fatal(err)
	}
	if err := tx.Insert(0, "Today: ", nil); err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t1", User: "v", RequestID: "hello-f", StateVector: f.EncodeStateVector()})
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "v", RequestID: "copy", Update: f.EncodeStateAsUpdate(nil)}); err == nil {
		t.Fatal("foreign copy taken as an update")
	}
	ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t1", Request: "hello-f"})
	t.Logf("%s: %s: %s", ev.Subject, ev.Verdict, ev.Proof.Summary)
	if ev.Verdict != VerdictOverwrittenPreserved || !strings.Contains(ev.Proof.PreservedAt, "/preserved/") || !strings.Contains(ev.Proof.Summary, "request copy") {
		t.Errorf("%s: %s, preserved at %q (%s); the announced copy is preserved", ev.Subject, ev.Verdict, ev.Proof.PreservedAt, ev.Proof.Summary)
	}
}
