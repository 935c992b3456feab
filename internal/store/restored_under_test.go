package store

import (
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestADatabaseRestoredUnderARunningSyncerKeepsEachChainWhole: the
// database is restored from a backup taken two saves ago while the
// syncer runs (its shard's lease and the row's change_seq are as they
// were then, so neither fence nor row guard notices). The syncer's copy
// of the document was two ledger entries and two revisions ahead: its
// next save wrote entry 5 after the database's 3, and the ledger of the
// document failed evidence verify for good. The ledger insert checks
// that each chain goes on from the database's last entry, and the group
// is run again from the document as the database has it.
func TestADatabaseRestoredUnderARunningSyncerKeepsEachChainWhole(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("c", dataplane.StageDualWrite, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "one"})
	backup := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", BaseRevision: 1, Content: "one two"})
	var content string
	var rev int64
	if err := e.pool.QueryRow(ctx, `SELECT content, revision FROM documents WHERE doc_id = 'd'`).Scan(&content, &rev); err != nil {
		t.Fatal(err)
	}
	var ySeq int64
	if err := e.pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM yjs_updates WHERE doc_id = 'd'`).Scan(&ySeq); err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", BaseRevision: 2, Content: "one two three"})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", BaseRevision: 3, Content: "one two three four"})

	// The restore, as it leaves this document: what was written after
	// the backup is gone (replica mode: the ledger's triggers refuse
	// deletions, and the row's change_seq stays as it was).
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		q    string
		args []any
	}{
		{`SET LOCAL session_replication_role = replica`, nil},
		{`DELETE FROM save_ledger WHERE doc_id = 'd' AND seq > $1`, []any{backup.LedgerSeq}},
		{`DELETE FROM document_revisions WHERE doc_id = 'd' AND revision > $1`, []any{rev}},
		{`DELETE FROM yjs_updates WHERE doc_id = 'd' AND seq > $1`, []any{ySeq}},
		{`DELETE FROM yjs_snapshots WHERE doc_id = 'd' AND upto_seq > $1`, []any{ySeq}},
		{`UPDATE documents SET content = $1, revision = $2 WHERE doc_id = 'd'`, []any{content, rev}},
	} {
		if _, err := tx.Exec(ctx, w.q, w.args...); err != nil {
			t.Fatalf("%s: %v", w.q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// The student, whose editor had the text before the backup, saves.
	r, err := e.eng.Submit(ctx, Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", BaseRevision: rev, Content: "one two, again"})
	if err != nil {
		t.Fatalf("save after the restore: %v", err)
	}
	if r.LedgerSeq != backup.LedgerSeq+1 || r.Revision != rev+1 {
		t.Errorf("save after the restore: ledger entry %d revision %d; want %d and %d, going on from the restored database", r.LedgerSeq, r.Revision, backup.LedgerSeq+1, rev+1)
	}
	rep, err := e.eng.VerifyLedger(ctx, "d")
	if err != nil || !rep.OK {
		t.Errorf("the document's ledger after the restore: %+v %v", rep, err)
	}
	if d, err := e.eng.Read(ctx, "t", "d"); err != nil || d.Content != "one two, again" {
		t.Errorf("read after the restore: %q %v", d.Content, err)
	}
	if v, err := e.eng.VerifyDocs(ctx, []string{"d"}); err != nil || len(v) != 1 || v[0].Verdict != VerifyMatch {
		t.Errorf("verify after the restore: %+v %v", v, err)
	}
}
