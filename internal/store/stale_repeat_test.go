package store

import (
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestStaleAutosaveAfterALostAnswerIsNotRepeated: a legacy client's save
// is committed but its answer is lost; the editor, still holding base
// revision 1, sends its next autosave (more text, a new Idempotency-Key).
// In the legacy-authoritative stages that save replaces the text; in the
// Yjs-authoritative stages it is merged, and the first save's paragraph,
// which the second holds, appears once (it appeared twice, "merged"
// cleanly).
func TestStaleAutosaveAfterALostAnswerIsNotRepeated(t *testing.T) {
	e := setup(t)
	e.fromVerifyOn(t, func(t *testing.T, stage, tenant, doc string) {
		e.submit(Request{Kind: KindCreate, Doc: doc, Tenant: tenant, User: "s", Content: "Intro.\n"})
		// Autosave 1: committed, but its answer never reached the editor.
		e.submit(Request{Kind: KindSave, Doc: doc, Tenant: tenant, User: "s", BaseRevision: 1, IdempotencyKey: "a1",
			Content: "Intro.\nThe river is long.\n"})
		// Autosave 2: the same editor, still on base 1, with more text.
		r := e.submit(Request{Kind: KindSave, Doc: doc, Tenant: tenant, User: "s", BaseRevision: 1, IdempotencyKey: "a2",
			Content: "Intro.\nThe river is long.\nIt floods.\n"})
		d, err := e.eng.Read(t.Context(), tenant, doc)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(d.Content, "The river is long."); n != 1 || d.Content != "Intro.\nThe river is long.\nIt floods.\n" {
			t.Errorf("stage %s: outcome %s, document text %q holds the first save's sentence %d times", stage, r.Outcome, d.Content, n)
		}
	})
}

// TestUnkeyedRetryOfAStaleSaveIsNotRepeated: a legacy client (no
// Idempotency-Key, which docs/api.md makes optional) retries a stale save
// whose answer it did not get. In a legacy-authoritative stage the retry
// writes the same text again; in a Yjs-authoritative stage the same save,
// merged a second time, leaves the text as the first made it (it appended
// the student's sentence again).
func TestUnkeyedRetryOfAStaleSaveIsNotRepeated(t *testing.T) {
	e := setup(t)
	e.fromVerifyOn(t, func(t *testing.T, stage, tenant, doc string) {
		e.submit(Request{Kind: KindCreate, Doc: doc, Tenant: tenant, User: "s", Content: "My essay."})
		e.submit(Request{Kind: KindSave, Doc: doc, Tenant: tenant, User: "teacher", BaseRevision: 1, Content: "My essay. Teacher note."})
		save := Request{Kind: KindSave, Doc: doc, Tenant: tenant, User: "s", BaseRevision: 1, Content: "My essay. Rivers flow."}
		first := e.submit(save)
		again := e.submit(save) // the same request, retried
		if *again.Content != *first.Content {
			t.Errorf("stage %s: the same save applied twice: first %s %q, then %s %q", stage, first.Outcome, *first.Content, again.Outcome, *again.Content)
		}
	})
}

// fromVerifyOn runs f for each stage from Verify on (the last
// legacy-authoritative one and the Yjs-authoritative ones), each on a
// tenant of its own in a cohort at that stage, with a document ID for it.
func (e *env) fromVerifyOn(t *testing.T, f func(t *testing.T, stage, tenant, doc string)) {
	for _, stage := range []string{dataplane.StageVerify, dataplane.StageLocalFirst, dataplane.StageComplete, dataplane.StageLegacyRetired} {
		t.Run(stage, func(t *testing.T) {
			tenant := "t-" + strings.ToLower(stage)
			e.cohort("c-"+strings.ToLower(stage), stage, tenant)
			f(t, stage, tenant, "essay-"+tenant)
		})
	}
}

// TestStaleSaveOfTheCurrentTextOverwritesNothing: in a
// legacy-authoritative stage, a save whose base is stale but whose text
// and title are exactly the document's current ones (typically an unkeyed
// retry of a save whose answer was lost) overwrites nothing: it is saved,
// and evidence of the earlier save says synced (it said the earlier save
// was overwritten, outcome overwritten-preserved).
func TestStaleSaveOfTheCurrentTextOverwritesNothing(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageVerify, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "s", Content: "draft"})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "s", BaseRevision: 1, Content: "draft, finished", RequestID: "r1"})
	r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "s", BaseRevision: 1, Content: "draft, finished", RequestID: "r1-retry"})
	ev, err := e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t", Request: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != VerdictSynced || r.Outcome != OutcomeSaved || r.SupersededRevision != 0 {
		t.Errorf("a stale save of the current text: outcome %s (superseded %d); evidence of the earlier save: %s %q",
			r.Outcome, r.SupersededRevision, ev.Verdict, ev.Proof.Summary)
	}
}

// TestStaleSaveOnABaseTheHistoryLacksIsKeptAside: a save whose base
// revision the history does not hold (the document predates it) has
// nothing to merge against, so in a Yjs-authoritative stage its text is
// kept aside whole, empty text included (a save emptying the document was
// answered merged and changed nothing: its base was read as "", so the
// merge took the current text).
func TestStaleSaveOnABaseTheHistoryLacksIsKeptAside(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "s", Content: "first draft"})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "s", BaseRevision: 1, Content: "first draft, longer"})
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM document_revisions WHERE doc_id = 'd' AND revision = 1`); err != nil {
		t.Fatal(err)
	}
	for _, content := range []string{"", "first draft, other"} {
		r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "s", BaseRevision: 1, Content: content})
		d, err := e.eng.Read(t.Context(), "t", "d")
		if err != nil {
			t.Fatal(err)
		}
		if r.Outcome != OutcomeConflictPreserved || r.PreservedID == 0 || d.Content != "first draft, longer" {
			t.Errorf("save of %q on a base the history lacks: outcome %s (preserved %d), document %q", content, r.Outcome, r.PreservedID, d.Content)
		}
	}
}

// TestLostAnswerAutosaveAcrossTheFlipIsNotRepeated: a legacy editor's
// autosave reaches the server in Verify but its answer is lost; the
// cohort flips to LocalFirst; a local-first client appends a sentence;
// the editor's next autosave, still on the old base, holds the first
// save's sentence and one more. It is merged against the first save (the
// latest revision whose changes it holds), so the shared sentence is
// written once and both new ones are kept. Merged against its stated
// base, "Second sentence." was in the document twice. Found by review.
func TestLostAnswerAutosaveAcrossTheFlipIsNotRepeated(t *testing.T) {
	e := setup(t)
	cs := e.cohort("c", dataplane.StageVerify, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "stud", Content: "My essay begins here."})
	// Verify: the autosave commits, its answer never reaches the editor.
	if r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "stud", Content: "My essay begins here. Second sentence.", BaseRevision: 1}); r.Revision != 2 {
		t.Fatalf("first autosave: %+v", r)
	}
	e.setStage("c", cs.Epoch, dataplane.StageLocalFirst)
	// LocalFirst: a local-first client (the student's other device) appends.
	e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "stud", Update: e.clientEdit("t1", "d", 55, " Third.")})
	// The editor's next autosave, still on base revision 1.
	r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "stud", Content: "My essay begins here. Second sentence. Fourth.", BaseRevision: 1})
	if want := "My essay begins here. Second sentence. Third. Fourth."; r.Outcome != OutcomeMerged || *r.Content != want {
		t.Fatalf("stale autosave after the flip: %s %q, want merged %q", r.Outcome, *r.Content, want)
	}
}
