package store

import (
	"fmt"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestPreservedContentOfADeletedDocumentIsReadWhereEvidenceSaysItIs: a
// student's save conflicts at LocalFirst (kept aside, preserved 1), the
// cohort rolls back and a teacher's stale save overwrites revisions 2 and
// 3, then the legacy application deletes the row and the deletion
// stands. The history stays (revisions and preserved text have no
// foreign key to the row), and evidence tells the school "its content is
// preserved" at /v1/documents/d/revisions/N or /preserved/1, but each of
// those reads joined the row and answered not_found: support could not
// read the student's text from where the evidence says it is.
func TestPreservedContentOfADeletedDocumentIsReadWhereEvidenceSaysItIs(t *testing.T) {
	e := setup(t)
	cs := e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "teacher", Content: "Task one."})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "peer", BaseRevision: 1, Content: "Task two."})
	if r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "stu", BaseRevision: 1, Content: "Task three."}); r.Outcome != OutcomeConflictPreserved {
		t.Fatalf("student's conflicting save: %+v", r)
	}
	e.stageAttempt("c", cs.Epoch, dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	if r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "teacher", BaseRevision: 1, Content: "Graded."}); r.Outcome != OutcomeOverwrittenPreserved {
		t.Fatalf("teacher's stale save: %+v", r)
	}
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "stu", BaseRevision: 4, Content: "x"}); err == nil {
		t.Fatal("save of a deleted document accepted")
	}
	paths := map[string]bool{}
	for _, q := range []EvidenceQuery{{}, {User: "stu"}, {User: "peer"}} {
		q.Doc, q.Tenant = "d", "t"
		for _, f := range e.evidence(q).Findings {
			if f.PreservedAt != "" {
				paths[f.PreservedAt] = true
			}
		}
	}
	if !paths["/v1/documents/d/preserved/1"] || !paths["/v1/documents/d/revisions/2"] {
		t.Fatalf("evidence names %v", paths)
	}
	for p := range paths {
		var n int64
		var err error
		var text string
		switch {
		case strings.HasPrefix(p, "/v1/documents/d/revisions/"):
			_, _ = fmt.Sscan(strings.TrimPrefix(p, "/v1/documents/d/revisions/"), &n)
			var r Revision
			r, err = e.eng.ReadRevision(t.Context(), "t", "d", n)
			text = r.Content
			if _, ferr := e.eng.ReadRevision(t.Context(), "other", "d", n); ferr == nil {
				t.Errorf("another school reads %s", p)
			}
		default:
			_, _ = fmt.Sscan(strings.TrimPrefix(p, "/v1/documents/d/preserved/"), &n)
			var r Preserved
			r, err = e.eng.ReadPreserved(t.Context(), "t", "d", n)
			text = r.Content
			if _, ferr := e.eng.ReadPreserved(t.Context(), "other", "d", n); ferr == nil {
				t.Errorf("another school reads %s", p)
			}
		}
		if err != nil || text == "" {
			t.Errorf("evidence says the content is preserved at %s; reading it: %q, %v", p, text, err)
		}
	}
}
