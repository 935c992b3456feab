package store

import (
	"bytes"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestADocumentTheLegacyApplicationCreatesAgainStartsAnew: alice's essay
// (LocalFirst) holds a thought she typed and deleted again; the legacy
// application deletes its row and creates a row with the same ID for
// carol of the same school. The syncer took the new row for alice's
// document changed and merged carol's text into alice's Yjs history: a
// new editor of carol's got alice's essay inside its first sync (the
// server keeps deleted text), and alice's open editor went on merging
// into carol's document. Evidence already said the entries before were
// of the deleted document. Now the row starts a Yjs history of its own,
// once, as a row given to another school does: alice's editor is refused
// as a copy of a document gone from the ID, and carol's save on the row's
// revision 1 is applied.
func TestADocumentTheLegacyApplicationCreatesAgainStartsAnew(t *testing.T) {
	for _, cached := range []bool{true, false} {
		t.Run(map[bool]string{true: "in the syncer's memory", false: "after a restart"}[cached], func(t *testing.T) {
			e := setup(t)
			e.aliceEssay()
			alice := e.replicasOf("t", "d", 41)[0]
			var ups [][]byte
			alice.OnUpdate(func(u []byte) { ups = append(ups, u) })
			tx := alice.GetText(contract.YjsTextName)
			if err := tx.Insert(tx.Len(), " A private thought.", nil); err != nil {
				t.Fatal(err)
			}
			if err := tx.Delete(len("Alice's essay."), len(" A private thought.")); err != nil {
				t.Fatal(err)
			}
			for _, u := range ups {
				e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "alice", Update: u})
			}
			if !cached {
				e.restart()
			}
			if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
				t.Fatal(err)
			}
			e.recreate()

			first := e.opensAs("t", "Carol's text.")
			for _, s := range []string{"Alice", "private"} {
				if bytes.Contains(first, []byte(s)) {
					t.Errorf("carol's editor's first sync carries %q of the deleted document", s)
				}
			}
			// Alice's open editor types on: refused, not merged.
			ups = nil
			if err := tx.Insert(0, "Dear reader, ", nil); err != nil {
				t.Fatal(err)
			}
			_, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "alice", Update: ups[0]})
			if err == nil || AsError(err).Code != CodeForeignHistory {
				t.Errorf("alice's editor of the deleted document: %v, want %s", err, CodeForeignHistory)
			}
			r, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "carol", Content: "Carol's text, edited.", BaseRevision: 1})
			if err != nil || r.Outcome != OutcomeSaved {
				t.Fatalf("carol's save on her row's revision 1: %v %+v", err, r)
			}
			e.restart()
			e.opensAs("t", "Carol's text, edited.")
			anew := 0
			for _, en := range e.entries("d") {
				if en.Outcome == OutcomeRepairedAnew {
					anew++
					if !strings.Contains(en.Reason, "deleted the row and created it again") {
						t.Errorf("the new start's reason: %q", en.Reason)
					}
				}
			}
			if anew != 1 {
				t.Errorf("%d entries %s, want 1", anew, OutcomeRepairedAnew)
			}
			if v, err := e.eng.VerifyDocs(t.Context(), []string{"d"}); err != nil || len(v) != 1 || v[0].Verdict != VerifyMatch {
				t.Errorf("verify after the new start: %+v %v", v, err)
			}
			if rep, err := e.eng.VerifyLedger(t.Context(), "d"); err != nil || !rep.OK {
				t.Errorf("the ledger's chain after the new start: %+v %v", rep, err)
			}
		})
	}
}

// recreate has the legacy application create d again for school t
// (carol's), its row deleted before.
func (e *env) recreate() {
	e.t.Helper()
	if _, err := e.pool.Exec(e.t.Context(), `INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('d', 't', 'carol', 'Carol''s notes', 'Carol''s text.', 1, 0, now(), now())`); err != nil {
		e.t.Fatal(err)
	}
}

// TestADocumentCreatedAgainAfterItsDeletionWasSeenStartsAnew: at
// DualWrite the legacy application deletes alice's essay and the syncer
// records that the deletion stands (a request reached the document);
// then the legacy application creates the ID again for carol. The
// deleted document's Yjs history was taken up again with carol's text
// merged in, its deleted sentence included in carol's editor's first sync.
func TestADocumentCreatedAgainAfterItsDeletionWasSeenStartsAnew(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageDualWrite, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "Alice's essay."})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "alice", Content: "Alice's essay. A private thought."})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "alice", Content: "Alice's essay."})
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Read(t.Context(), "t", "d"); !isNotFound(err) {
		t.Fatalf("read of the deleted document: %v", err)
	}
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})}); err != nil {
		t.Fatal(err)
	}
	stands := false
	for _, en := range e.entries("d") {
		stands = stands || en.Outcome == OutcomeDeletionStands
	}
	if !stands {
		t.Fatalf("the deletion is not on the ledger: %+v", e.entries("d"))
	}
	e.recreate()
	if u := e.opensAs("t", "Carol's text."); bytes.Contains(u, []byte("private")) {
		t.Errorf("carol's editor's first sync carries the deleted document's text")
	}
}

// TestAnUpsertOfTheLegacyApplicationIsAnEditNotANewDocument: a legacy
// application that saves with INSERT ... ON CONFLICT DO UPDATE has the
// database log an INSERT for every save, the row there all along. Such a
// save is an edit: the document does not start anew, its open editor
// goes on, and this holds after a real replacement was taken in too.
func TestAnUpsertOfTheLegacyApplicationIsAnEditNotANewDocument(t *testing.T) {
	e := setup(t)
	e.aliceEssay()
	editor := e.replicasOf("t", "d", 41)[0]
	e.legacyUpsert("Alice's essay, from the old editor.")
	if err := e.typeAtStart(editor, "Title. "); err != nil {
		t.Errorf("the open editor after an upsert: %v", err)
	}
	if n := e.anewCount(); n != 0 {
		t.Errorf("an upsert started the document anew (%d)", n)
	}
	// A real replacement, taken in; then upserts again.
	if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	e.recreate()
	e.opensAs("t", "Carol's text.")
	editor = e.replicasOf("t", "d", 42)[0]
	e.legacyUpsert("Carol's text, from the old editor.")
	e.restart()
	if err := e.typeAtStart(editor, "Heading. "); err != nil {
		t.Errorf("carol's open editor after an upsert: %v", err)
	}
	if n := e.anewCount(); n != 1 {
		t.Errorf("%d new starts, want 1 (the replacement's)", n)
	}
}
