package store

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// Cases of a row the legacy application deletes, creates again, puts
// back or upserts, around documents the syncer holds (an adversarial
// review's; those marked "was" failed until migration 00020 logged new
// documents from an AFTER INSERT trigger, apart from the rows put back,
// and the record that a deletion stands stopped counting as the
// document's own entry).

// anewCount counts d's repaired-anew entries.
func (e *env) anewCount() int {
	e.t.Helper()
	n := 0
	for _, en := range e.entries("d") {
		if en.Outcome == OutcomeRepairedAnew {
			n++
		}
	}
	return n
}

// typeAtStart has editor type s at the start of its text and submits the
// update as tenant t's alice; it returns the engine's error.
func (e *env) typeAtStart(editor *yjs.Doc, s string) error {
	e.t.Helper()
	sv := editor.StateVector()
	if err := editor.GetText(contract.YjsTextName).Insert(0, s, nil); err != nil {
		e.t.Fatal(err)
	}
	_, err := e.eng.Submit(e.t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "alice", Update: editor.EncodeStateAsUpdate(sv)})
	return err
}

// legacyUpsert is a legacy save of d as INSERT ... ON CONFLICT DO UPDATE
// (a legacy application may save so).
func (e *env) legacyUpsert(text string) {
	e.t.Helper()
	if _, err := e.pool.Exec(e.t.Context(), `INSERT INTO documents AS d (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('d', 't', 'alice', '', $1, 1, 0, now(), now())
		ON CONFLICT (doc_id) DO UPDATE SET content = EXCLUDED.content, revision = d.revision + 1, updated_at = now()`, text); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) exec(sql string) {
	e.t.Helper()
	if _, err := e.pool.Exec(e.t.Context(), sql); err != nil {
		e.t.Fatal(err)
	}
}

// Was a false new start. LocalFirst: the legacy application deletes
// alice's row; the syncer makes it again from the Yjs side (its own
// INSERT, not logged). The legacy application's next save is an upsert:
// its BEFORE INSERT trigger logs an INSERT, the first after the DELETE,
// with ledger_seq = the ledger's head, so load takes the row, there all
// along, for one created again: the document started anew and alice's
// open editor was refused foreign_history, and evidence said the row was
// replaced. An upsert that finds the row logs no new document now.
func TestAnUpsertAfterTheSyncerMadeTheRowAgainIsAnEdit(t *testing.T) {
	e := setup(t)
	e.aliceEssay()
	editor := e.replicasOf("t", "d", 41)[0]
	e.exec(`DELETE FROM documents WHERE doc_id = 'd'`)
	if err := e.typeAtStart(editor, "Title. "); err != nil {
		t.Fatalf("alice types after the deletion: %v", err)
	}
	if n := e.count(`SELECT count(*) FROM documents WHERE doc_id = 'd'`); n != 1 {
		t.Fatalf("the syncer did not make the row again (%d rows)", n)
	}
	e.legacyUpsert("Title. Alice's essay, saved in the old app.")
	if err := e.typeAtStart(editor, "More. "); err != nil {
		t.Errorf("alice's open editor after the legacy app's upsert: %v", err)
	}
	if n := e.anewCount(); n != 0 {
		t.Errorf("the upsert started the document anew (%d %s entries)", n, OutcomeRepairedAnew)
	}
	ev := e.evidence(EvidenceQuery{Doc: "d", Tenant: "t"})
	t.Logf("evidence: %s %q", ev.Verdict, ev.Proof.Summary)
	for _, f := range ev.Findings {
		t.Logf("finding %v %s: %q", f.Entries, f.Verdict, f.Summary)
		if strings.Contains(f.Summary, "replaced outside the gateway") || strings.Contains(f.Summary, "created again outside the gateway") {
			t.Errorf("evidence says the row was replaced: %q", f.Summary)
		}
	}
}

// Was a false new start, the same through a gateway create: at
// DualWrite the legacy application deletes d and the deletion stands; at
// LocalFirst alice creates d again through the gateway (not logged) and
// edits it; the legacy application's upsert started her document anew.
func TestAnUpsertAfterAGatewayCreateOnADeletedIDIsAnEdit(t *testing.T) {
	e := setup(t)
	cs := e.cohort("c", dataplane.StageDualWrite, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "Old essay."})
	e.exec(`DELETE FROM documents WHERE doc_id = 'd'`)
	if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})}); err != nil {
		t.Fatal(err)
	}
	e.setStage("c", cs.Epoch, dataplane.StageLocalFirst)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "New essay."})
	editor := e.replicasOf("t", "d", 41)[0]
	if err := e.typeAtStart(editor, "Title. "); err != nil {
		t.Fatalf("alice types in her new document: %v", err)
	}
	e.legacyUpsert("Title. New essay, saved in the old app.")
	if err := e.typeAtStart(editor, "More. "); err != nil {
		t.Errorf("alice's open editor after the legacy app's upsert: %v", err)
	}
	if n := e.anewCount(); n != 0 {
		t.Errorf("the upsert started the document anew (%d %s entries)", n, OutcomeRepairedAnew)
	}
}

// Was missed (a race). DualWrite: the legacy application
// deletes alice's essay; in a transaction it creates the ID again for
// carol, and while that transaction is open the syncer records that the
// deletion stands (entry N+1). The trigger read ledger_head = N (N+1
// not committed): N < the last entry N+1, so the new row was taken for
// the old document changed, its Yjs history (deleted text included)
// handed to carol's editor. The record that the deletion stands is not
// the document's own entry: it says nothing of a row created after it.
func TestARowCreatedWhileTheDeletionIsRecordedStartsAnew(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageDualWrite, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "Alice's essay."})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "alice", Content: "Alice's essay. A private thought."})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "alice", Content: "Alice's essay."})
	e.exec(`DELETE FROM documents WHERE doc_id = 'd'`)
	tx, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(t.Context(), `INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('d', 't', 'carol', 'Carol''s notes', 'Carol''s text.', 1, 0, now(), now())`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := e.eng.Submit(ctx, Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	stands := false
	for _, en := range e.entries("d") {
		stands = stands || en.Outcome == OutcomeDeletionStands
	}
	if !stands {
		t.Fatalf("the deletion was not recorded meanwhile: %+v", e.entries("d"))
	}
	if u := e.opensAs("t", "Carol's text."); bytes.Contains(u, []byte("private")) {
		t.Errorf("carol's editor's first sync carries the deleted document's text")
	}
	if n := e.anewCount(); n != 1 {
		t.Errorf("%d %s entries, want 1", n, OutcomeRepairedAnew)
	}
}

// Was a false new start at every save: a legacy application whose save
// is DELETE + INSERT of the same row in one transaction (same school,
// owner, created_at). A row put back with its school and created_at is
// the same document.
func TestADeleteAndInsertInOneTransactionAsASaveIsAnEdit(t *testing.T) {
	e := setup(t)
	e.aliceEssay()
	editor := e.replicasOf("t", "d", 41)[0]
	for i, text := range []string{"Alice's essay, saved in the old app.", "Alice's essay, saved in the old app again."} {
		tx, err := e.pool.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(t.Context(), `CREATE TEMP TABLE old ON COMMIT DROP AS SELECT * FROM documents WHERE doc_id = 'd'`); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(t.Context(), `INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
			SELECT doc_id, tenant, owner, title, $1, revision + 1, shard, created_at, now() FROM old`, text); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := e.typeAtStart(editor, "x"); err != nil {
			t.Errorf("save %d: alice's open editor: %v", i+1, err)
			editor = e.replicasOf("t", "d", uint64(50+i))[0]
		}
	}
	if n := e.anewCount(); n != 0 {
		t.Errorf("%d %s entries for two legacy saves", n, OutcomeRepairedAnew)
	}
}

// DELETE, INSERT and UPDATE in one transaction (a document
// created again and edited at once) start the document anew exactly once,
// across a restart and later legacy edits; the old editor is refused, the
// new editor gets none of the old text.
func TestDeleteInsertUpdateInOneTransactionStartsAnewOnce(t *testing.T) {
	e := setup(t)
	e.aliceEssay()
	editor := e.replicasOf("t", "d", 41)[0]
	tx, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`DELETE FROM documents WHERE doc_id = 'd'`,
		`INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		 VALUES ('d', 't', 'carol', 'Carol''s notes', 'Carol''s text.', 1, 0, now(), now())`,
		`UPDATE documents SET content = 'Carol''s text, edited.', revision = 2 WHERE doc_id = 'd'`} {
		if _, err := tx.Exec(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := e.typeAtStart(editor, "x"); err == nil || AsError(err).Code != CodeForeignHistory {
		t.Errorf("the deleted document's editor: %v, want %s", err, CodeForeignHistory)
	}
	if u := e.opensAs("t", "Carol's text, edited."); bytes.Contains(u, []byte("Alice")) {
		t.Errorf("the new editor's first sync carries the deleted text")
	}
	e.restart()
	e.exec(`UPDATE documents SET content = 'Carol''s text, edited twice.', revision = 3 WHERE doc_id = 'd'`)
	e.opensAs("t", "Carol's text, edited twice.")
	e.restart()
	e.opensAs("t", "Carol's text, edited twice.")
	if n := e.anewCount(); n != 1 {
		t.Errorf("%d %s entries, want 1", n, OutcomeRepairedAnew)
	}
}

// the legacy application replaces the row while the cohort is
// rolled back to Legacy (no request reaches the syncer), twice; once the
// cohort is at LocalFirst again the document starts anew once, from the
// last row, and stays so across restarts.
func TestReplacementsAtLegacyStartAnewOnceLater(t *testing.T) {
	e := setup(t)
	cs := e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "Alice's essay."})
	cs = e.stageAttempt("c", cs.Epoch, dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	for _, c := range []string{"first", "second"} {
		e.exec(`DELETE FROM documents WHERE doc_id = 'd'`)
		e.exec(`INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
			VALUES ('d', 't', 'carol', '', 'Carol''s ` + c + ` text.', 1, 0, now(), now())`)
	}
	e.stageAttempt("c", cs.Epoch, dataplane.StageLocalFirst, 2, "")
	if u := e.opensAs("t", "Carol's second text."); bytes.Contains(u, []byte("Alice")) {
		t.Errorf("the new editor's first sync carries the deleted text")
	}
	e.restart()
	e.opensAs("t", "Carol's second text.")
	if n := e.anewCount(); n != 1 {
		t.Errorf("%d %s entries, want 1", n, OutcomeRepairedAnew)
	}
}

// a row deleted and created again outside the gateway before the
// ID has any ledger entry, then backfilled, is not started anew (the
// backfill entry is after the creation).
func TestARowReplacedBeforeTheLedgerThenBackfilledIsNotStartedAnew(t *testing.T) {
	e := setup(t)
	cs := e.cohort("c", dataplane.StageLegacy, "t")
	e.exec(`INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('d', 't', 'alice', '', 'Alice''s essay.', 1, 0, now(), now())`)
	e.exec(`DELETE FROM documents WHERE doc_id = 'd'`)
	e.exec(`INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('d', 't', 'carol', '', 'Carol''s text.', 1, 0, now(), now())`)
	cs = e.setStage("c", cs.Epoch, dataplane.StageDualWrite)
	cs = e.setStage("c", cs.Epoch, dataplane.StageBackfill)
	if r, err := e.eng.Backfill(t.Context(), BackfillCheckpoint{Rollout: rollout, Cohort: "c", Epoch: cs.Epoch}, []string{"d"}); err != nil || r.Backfilled != 1 {
		t.Fatalf("backfill: %+v %v", r, err)
	}
	cs = e.setStage("c", cs.Epoch, dataplane.StageVerify)
	e.setStage("c", cs.Epoch, dataplane.StageLocalFirst)
	editor := e.replicasOf("t", "d", 41)[0]
	e.restart()
	if err := e.typeAtStart(editor, "x"); err != nil {
		t.Errorf("the editor of the backfilled document: %v", err)
	}
	if n := e.anewCount(); n != 0 {
		t.Errorf("%d %s entries, want 0", n, OutcomeRepairedAnew)
	}
}

// a legacy INSERT ... ON CONFLICT DO NOTHING on a row the legacy
// application never deleted logs an INSERT but no DELETE precedes it:
// not a new document.
func TestAnInsertOnConflictDoNothingIsNotANewDocument(t *testing.T) {
	e := setup(t)
	e.aliceEssay()
	editor := e.replicasOf("t", "d", 41)[0]
	e.exec(`INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('d', 't', 'carol', '', 'x', 1, 0, now(), now()) ON CONFLICT DO NOTHING`)
	if err := e.typeAtStart(editor, "x"); err != nil {
		t.Errorf("alice's open editor: %v", err)
	}
	if n := e.anewCount(); n != 0 {
		t.Errorf("%d %s entries, want 0", n, OutcomeRepairedAnew)
	}
}

// Was missed, then a late false new start. The legacy
// application replaces the row in ONE statement (a data-modifying CTE):
// the BEFORE INSERT trigger logs the INSERT during the statement, the
// AFTER DELETE trigger logs the DELETE at its end, so the DELETE's id was
// the larger and no INSERT followed it: the new document took the old
// one's Yjs history. Its next upsert was then "the first INSERT after the
// deletion" and started the document anew, refusing its editors. The new
// document is logged by itself now, whatever the order.
func TestAReplacementInOneStatementStartsAnewAtOnce(t *testing.T) {
	e := setup(t)
	e.aliceEssay()
	e.exec(`WITH old AS (DELETE FROM documents WHERE doc_id = 'd' RETURNING shard)
		INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		SELECT 'd', 't', 'carol', 'Carol''s notes', 'Carol''s text.', 1, shard, now(), now() FROM old`)
	var order string
	if err := e.pool.QueryRow(t.Context(), `SELECT string_agg(op, ',' ORDER BY id) FROM outside_changes WHERE doc_id = 'd'`).Scan(&order); err != nil {
		t.Fatal(err)
	}
	t.Logf("logged: %s", order)
	if u := e.opensAs("t", "Carol's text."); bytes.Contains(u, []byte("Alice")) {
		t.Errorf("carol's editor's first sync carries the deleted document's text")
	}
	editor := e.replicasOf("t", "d", 43)[0]
	e.legacyUpsert("Carol's text, saved in the old app.")
	if err := e.typeAtStart(editor, "x"); err != nil {
		t.Errorf("carol's open editor after an upsert: %v", err)
	}
	if n := e.anewCount(); n != 1 {
		t.Errorf("%d %s entries, want 1 (at the replacement)", n, OutcomeRepairedAnew)
	}
}
