package store

import (
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestEvidenceOfAUsersSaveInTheLegacyAppAfterARollback: a cohort is
// rolled back to Legacy (I5) after its documents have ledger entries, and
// a student saves her essay in the legacy application, which writes the
// row and its history (document_revisions, saved_by, saved_at) as it
// always did. Support asks what happened to her save: the history holds
// it as revision 2, yet evidence said never-persisted, "no trace at any
// layer", because the history was read only up to the ledger's first
// entry.
func TestEvidenceOfAUsersSaveInTheLegacyAppAfterARollback(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("pilot", dataplane.StageLegacy, "s1")
	e.submit(Request{Kind: KindCreate, Doc: "essay", Tenant: "s1", User: "teacher", Content: "Write about your summer."})
	// The legacy application, writing behind the gateway.
	if _, err := e.pool.Exec(ctx, `UPDATE documents SET content = 'My summer was long.', revision = 2, updated_at = now() WHERE doc_id = 'essay'`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `INSERT INTO document_revisions (doc_id, revision, title, content, saved_by, saved_at, stage, epoch, shard_epoch)
		VALUES ('essay', 2, '', 'My summer was long.', 'ada', now(), 'Legacy', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	ev, err := e.eng.Evidence(ctx, EvidenceQuery{Doc: "essay", Tenant: "s1", User: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != VerdictSynced || ev.Proof.Revision != 2 {
		t.Errorf("ada's save in the legacy app: %s at revision %d (%q), want synced at revision 2 (the history holds it)",
			ev.Verdict, ev.Proof.Revision, ev.Proof.Summary)
	}
	// The teacher's creation is the ledger's, not counted twice.
	ev, err = e.eng.Evidence(ctx, EvidenceQuery{Doc: "essay", Tenant: "s1", User: "teacher"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range ev.Findings {
		if strings.Contains(f.Summary, "write-through store") {
			t.Errorf("the teacher's creation through the gateway is also reported from the history: %q", f.Summary)
		}
	}
}

// TestEvidenceDoesNotCreditTheOwnerWithAnotherUsersFirstRevision: a
// teacher wrote an assignment in the legacy application and handed it to
// a student (the row's owner). The history holds revision 1, saved by the
// teacher. Asked about the student, evidence said she "created the
// document", which the history contradicts: the owner's creation is meant
// only for when the history does not go back that far.
func TestEvidenceDoesNotCreditTheOwnerWithAnotherUsersFirstRevision(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("pilot", dataplane.StageLegacy, "s1")
	if _, err := e.pool.Exec(ctx, `INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('assignment', 's1', 'ada', 'Task', 'Write about your summer.', 1, 0, now() - interval '30 days', now() - interval '30 days')`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `INSERT INTO document_revisions (doc_id, revision, title, content, saved_by, saved_at, stage, epoch, shard_epoch)
		VALUES ('assignment', 1, 'Task', 'Write about your summer.', 'teacher', now() - interval '30 days', 'Legacy', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	ev, err := e.eng.Evidence(ctx, EvidenceQuery{Doc: "assignment", Tenant: "s1", User: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != VerdictNeverPersisted {
		t.Errorf("ada, who never saved the teacher's assignment: %s (%q), want never-persisted", ev.Verdict, ev.Proof.Summary)
	}
}
