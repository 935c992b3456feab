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

// TestEvidenceOfAnAnnouncementWhoseOperationsCameBeforeTheDocumentWasDeleted:
// a student's tab announces her client's operations (request "hello"), a
// classmate's tab sends them, and the legacy application then deletes the
// document (and a teacher creates a new one at the ID). Her work reached
// the server: asked about the announcement or about her, the answer was
// saved-locally-not-synced, "the server holds 0 of them", sending support
// to look for text on her device that the deleted document's history
// holds. A deleted document's saves answer synced, saying it was deleted;
// so do operations announced before and committed to it.
func TestEvidenceOfAnAnnouncementWhoseOperationsCameBeforeTheDocumentWasDeleted(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageDualWrite, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "teacher", Content: "Start. "})
	d := yjs.NewDoc(yjs.Options{ClientID: 77})
	var u []byte
	d.OnUpdate(func(b []byte) { u = b })
	if err := d.GetText(contract.YjsTextName).Insert(0, "hers", nil); err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "stu", RequestID: "hello", StateVector: d.EncodeStateVector()})
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "classmate", RequestID: "relay", Update: u})
	// Another student announces and then sends her own.
	o := yjs.NewDoc(yjs.Options{ClientID: 88})
	if err := o.ApplyUpdate(e.replicasOf("t", "d", 89)[0].EncodeStateAsUpdate(nil)); err != nil {
		t.Fatal(err)
	}
	sv := o.StateVector()
	if err := o.GetText(contract.YjsTextName).Insert(0, "mine ", nil); err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "stu2", RequestID: "hello-2", StateVector: o.EncodeStateVector()})
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "stu2", RequestID: "own", Update: o.EncodeStateAsUpdate(sv)})

	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "teacher", Content: "x", BaseRevision: 1}); AsError(err).Code != CodeNotFound {
		t.Fatalf("save of the deleted document: %v", err)
	}
	check := func(when string) {
		t.Helper()
		for _, q := range []EvidenceQuery{{Request: "hello"}, {User: "stu"}, {User: "stu2"}, {Client: 77}, {Client: 88}} {
			q.Doc, q.Tenant = "d", "t"
			ev := e.evidence(q)
			if ev.Verdict != VerdictSynced || !strings.Contains(ev.Proof.Summary, "deleted outside the gateway") {
				t.Errorf("%s, %s: %s (%s); the operations were committed to the document before it was deleted", when, ev.Subject, ev.Verdict, ev.Proof.Summary)
			}
		}
		if ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t"}); ev.Verdict != VerdictSynced {
			t.Errorf("%s, the whole document: %s (%s); every announced operation was committed", when, ev.Verdict, ev.Proof.Summary)
		}
		if ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t", Request: "hello"}); !strings.Contains(ev.Proof.Summary, "committed since by request relay") {
			t.Errorf("%s, %s: the proof does not name request relay: %s", when, ev.Subject, ev.Proof.Summary)
		}
	}
	check("deleted")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "teacher", Content: "Again. "})
	check("created again")
}
