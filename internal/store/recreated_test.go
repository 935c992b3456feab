package store

import (
	"bytes"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
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
			for _, s := range []string{`DELETE FROM documents WHERE doc_id = 'd'`,
				`INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
				 VALUES ('d', 't', 'carol', 'Carol''s notes', 'Carol''s text.', 1, 0, now(), now())`} {
				if _, err := e.pool.Exec(t.Context(), s); err != nil {
					t.Fatal(err)
				}
			}

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
