package store

import (
	"slices"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

func (e *env) evidence(q EvidenceQuery) Evidence {
	e.t.Helper()
	ev, err := e.eng.Evidence(e.t.Context(), q)
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

// insertAtEnd types s at the end of d's content and returns the update.
func insertAtEnd(t testing.TB, d *yjs.Doc, s string) []byte {
	t.Helper()
	var got []byte
	d.OnUpdate(func(u []byte) { got = u })
	tx := d.GetText(contract.YjsTextName)
	if err := tx.Insert(tx.Len(), s, nil); err != nil {
		t.Fatal(err)
	}
	return got
}

// studentHeldBehindPeer: the teacher creates "d" (tenant t) with "Task.";
// replicas of clients (the student's first, then the peer's, then any
// more) open it. The student's client receives the peer's line, which the
// server lacks, and adds a paragraph after it: its update (request
// ws-stu) is held pending at revision 1. It returns the replicas and the
// peer's update, not yet sent.
func studentHeldBehindPeer(t *testing.T, e *env, clients ...uint64) ([]*yjs.Doc, []byte) {
	t.Helper()
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "teacher", Content: "Task."})
	reps := e.replicasOf("t", "d", clients...)
	stu, peer := reps[0], reps[1]
	pu := insertAtEnd(t, peer, " Peer line.")
	if err := stu.ApplyUpdate(pu); err != nil {
		t.Fatal(err)
	}
	su := insertAtEnd(t, stu, " Student paragraph.")
	if r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "stu", RequestID: "ws-stu", Update: su}); r.Outcome != OutcomePending || r.Revision != 1 {
		t.Fatalf("student's update: %+v", r)
	}
	return reps, pu
}

// TestEvidenceSaysSyncedForAStudentParagraphATeacherOverwrote: a
// student's update arrives before a peer's operation it builds on, so it
// is held pending and its ledger entry carries the revision it left (1).
// The peer's update brings it into the text as revision 2. The cohort is
// rolled back to Legacy and the teacher saves on revision 1: revision 2
// (the only one ever holding the student's paragraph) is overwritten.
// Support asking about the student, their client or their request is
// told "synced, committed as revision 1": revision 1 never held the
// paragraph, and the document no longer does.
func TestEvidenceSaysSyncedForAStudentParagraphATeacherOverwrote(t *testing.T) {
	e := setup(t)
	cs := e.cohort("c", dataplane.StageLocalFirst, "t")
	_, pu := studentHeldBehindPeer(t, e, 100, 200)
	if r := e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "peer", Update: pu}); r.Revision != 2 {
		t.Fatalf("peer's update: %+v", r)
	}
	cs = e.stageAttempt("c", cs.Epoch, dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	if r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "teacher", BaseRevision: 1, Content: "Task. Graded."}); r.Outcome != OutcomeOverwrittenPreserved || r.SupersededRevision != 2 {
		t.Fatalf("teacher's stale save: %+v", r)
	}
	rev2, err := e.eng.ReadRevision(t.Context(), "t", "d", 2)
	if err != nil || !strings.Contains(rev2.Content, "Student paragraph.") {
		t.Fatalf("revision 2 should hold the paragraph: %q %v", rev2.Content, err)
	}
	for _, q := range []EvidenceQuery{{User: "stu"}, {Client: 100}, {Request: "ws-stu"}} {
		q.Doc, q.Tenant = "d", "t"
		ev := e.evidence(q)
		if ev.Verdict != VerdictOverwrittenPreserved || ev.Proof.PreservedAt != "/v1/documents/d/revisions/2" {
			t.Errorf("%s: verdict %s (%s), preserved at %q; the student's paragraph was in revision 2 only, overwritten by the teacher's save (revision 3)",
				ev.Subject, ev.Verdict, ev.Proof.Summary, ev.Proof.PreservedAt)
		}
	}
}

// TestEvidenceStillShowsADocumentTheLegacyAppDeleted: the legacy
// application deletes a document's row (a rollback period, or a cleanup
// job); support asks before anything else touches the document. The
// evidence answers from the syncer's cached copy: exists true, synced.
func TestEvidenceStillShowsADocumentTheLegacyAppDeleted(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageDualWrite, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "stu", Content: "First essay."})
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	if ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t"}); ev.Exists {
		t.Errorf("evidence says the deleted document exists (verdict %s: %s); its row is gone and a read answers not_found", ev.Verdict, ev.Proof.Summary)
	}
	if _, err := e.eng.Read(t.Context(), "t", "d"); err == nil {
		t.Error("a read still finds the deleted document")
	}
}

// TestEvidenceSaysNeverPersistedForAnEssayWrittenInTheLegacyApp: support
// asks about an ID before the student has saved anything (never
// persisted, right); during a rollback the student then writes the
// essay in the legacy application, which inserts the row directly.
// Asked again, the evidence still says "no trace at any layer".
func TestEvidenceSaysNeverPersistedForAnEssayWrittenInTheLegacyApp(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLegacy, "t")
	if ev := e.evidence(EvidenceQuery{Doc: "essay", Tenant: "t"}); ev.Verdict != VerdictNeverPersisted {
		t.Fatalf("before anything: %s", ev.Verdict)
	}
	if _, err := e.pool.Exec(t.Context(), `INSERT INTO documents (doc_id, shard, tenant, owner, title, content, revision, created_at, updated_at)
		VALUES ('essay', 0, 't', 'stu', 'Essay', 'Written in the legacy app.', 1, now(), now())`); err != nil {
		t.Fatal(err)
	}
	ev := e.evidence(EvidenceQuery{Doc: "essay", Tenant: "t"})
	if !ev.Exists || ev.Verdict != VerdictSynced {
		t.Errorf("the row exists in the write-through store, evidence says exists=%v %s: %s", ev.Exists, ev.Verdict, ev.Proof.Summary)
	}
}

// TestEvidenceOfADeletedDocumentSaysCommittedWithNoContentHash: a row
// deleted outside the gateway while the legacy side is authoritative
// stays deleted (a repaired entry, outcome deletion-stands). The whole
// document's evidence then answers "synced: committed as revision 2 ...
// (content sha256 )" from that entry, and no finding says the document
// was deleted; asked about the student, plain "synced".
func TestEvidenceOfADeletedDocumentSaysCommittedWithNoContentHash(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageDualWrite, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "stu", Content: "First essay."})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "stu", BaseRevision: 1, Content: "First essay, longer."})
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	// The student's editor saves again: refused, and the deletion goes on record.
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "stu", BaseRevision: 2, Content: "x"}); err == nil {
		t.Fatal("save of a deleted document accepted")
	}
	for _, q := range []EvidenceQuery{{}, {User: "stu"}} {
		q.Doc, q.Tenant = "d", "t"
		ev := e.evidence(q)
		if strings.Contains(ev.Proof.Summary, "content sha256 )") {
			t.Errorf("%q: proof is the deletion entry read as a commit: %s", ev.Subject, ev.Proof.Summary)
		}
		if !slices.ContainsFunc(ev.Findings, func(f Finding) bool { return strings.Contains(f.Summary, "deleted") }) {
			t.Errorf("%q: no finding says the document was deleted outside the gateway (verdict %s: %s)", ev.Subject, ev.Verdict, ev.Proof.Summary)
		}
	}
}

// TestEvidenceShowsAnotherSchoolsLedgerOnAnUnusedID: a student of school
// A opens a new essay over sync (its state vector is recorded); school
// B asking about the same ID is told exists false, never persisted, but
// gets the ID's chain: its entry count, head hash and receipt, which
// change whenever school A's students touch the ID.
func TestEvidenceShowsAnotherSchoolsLedgerOnAnUnusedID(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindSync1, Doc: "new-essay", Tenant: "school-a", User: "alice", StateVector: yjs.EncodeStateVector(yjs.StateVector{77: 5})})
	ev := e.evidence(EvidenceQuery{Doc: "new-essay", Tenant: "school-b"})
	if ev.Chain.Entries != 0 || ev.Chain.Head != "" || ev.Chain.Receipt != "" {
		t.Errorf("school-b sees school-a's chain on the ID: entries %d, head %q, receipt %q", ev.Chain.Entries, ev.Chain.Head, ev.Chain.Receipt)
	}
}

// TestOverwrittenProofPointsToTheStudentsLatestText: a student's two
// Yjs saves (revisions 2 and 3) are overwritten by a stale legacy save
// after a rollback. The proof support reads first points to revision 2,
// which lacks the second paragraph; revision 3 holds all of it.
func TestOverwrittenProofPointsToTheStudentsLatestText(t *testing.T) {
	e := setup(t)
	cs := e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "stu", Content: "Essay."})
	stu := e.replicasOf("t", "d", 100)[0]
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "stu", Update: insertAtEnd(t, stu, " Para one.")})
	cs = e.stageAttempt("c", cs.Epoch, dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "stu", Update: insertAtEnd(t, stu, " Para two.")})
	if r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "teacher", BaseRevision: 1, Content: "Essay. Teacher note."}); r.SupersededRevision != 3 {
		t.Fatalf("teacher's save: %+v", r)
	}
	for _, q := range []EvidenceQuery{{User: "stu"}, {Client: 100}} {
		q.Doc, q.Tenant = "d", "t"
		ev := e.evidence(q)
		if ev.Proof.PreservedAt != "/v1/documents/d/revisions/3" {
			t.Errorf("%s: proof points to %q (%s); the student's latest overwritten text is revision 3", ev.Subject, ev.Proof.PreservedAt, ev.Proof.Summary)
		}
	}
}

// TestDeletedDocumentsChainStaysItsSchools: another school touching the
// ID of a deleted document does not hide the document's own chain from
// its school, and that other school still sees none of it.
func TestDeletedDocumentsChainStaysItsSchools(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageDualWrite, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "stu", Content: "First essay."})
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "stu", BaseRevision: 1, Content: "x"}); err == nil {
		t.Fatal("save of a deleted document accepted")
	}
	_, _ = e.eng.Submit(t.Context(), Request{Kind: KindSync1, Doc: "d", Tenant: "other", User: "mallory", StateVector: yjs.EncodeStateVector(yjs.StateVector{9: 3})})
	own := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t"})
	if own.Chain.Entries < 2 || own.Chain.Head == "" {
		t.Errorf("the school of the deleted document lost its chain: %+v", own.Chain)
	}
	other := e.evidence(EvidenceQuery{Doc: "d", Tenant: "other"})
	if other.Chain.Entries != 0 || other.Chain.Head != "" || other.Exists {
		t.Errorf("another school sees the deleted document's chain: exists %v, %+v", other.Exists, other.Chain)
	}
}
