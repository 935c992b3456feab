package store

import (
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestEvidenceOfADocumentSavedBeforeTheLedger: support asks about a
// student's essay written before the rollout (the write-through store's
// row), untouched since or only backfilled. It exists, so it was
// persisted; evidence said never-persisted ("no trace at any layer"),
// next to a backfill entry.
func TestEvidenceOfADocumentSavedBeforeTheLedger(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	cs := e.cohort("pilot", dataplane.StageLegacy, "s1")
	if _, err := e.pool.Exec(ctx, `INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('old-essay', 's1', 'ada', 'Essay', 'written in 2025', 4, 0, now(), now())`); err != nil {
		t.Fatal(err)
	}
	ask := func(doc string) Evidence {
		t.Helper()
		ev, err := e.eng.Evidence(ctx, EvidenceQuery{Doc: doc, Tenant: "s1"})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	ev := ask("old-essay")
	if ev.Verdict != VerdictSynced || ev.Proof.Revision != 4 || !strings.Contains(ev.Proof.Summary, "saved before this ledger began") {
		t.Fatalf("untouched pre-existing document: %s (%+v)", ev.Verdict, ev.Proof)
	}
	// Asked about its revision, or one its history holds: the same; about
	// one it never had (or whose history is gone): no.
	if _, err := e.pool.Exec(ctx, `INSERT INTO document_revisions (doc_id, revision, title, content, saved_by, saved_at, stage, epoch, shard_epoch)
		VALUES ('old-essay', 3, 'Essay', 'draft of 2025', 'ada', now(), 'Legacy', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	for rev, want := range map[int64]string{4: VerdictSynced, 3: VerdictSynced, 5: VerdictNeverPersisted, 2: VerdictNeverPersisted} {
		ev, err := e.eng.Evidence(ctx, EvidenceQuery{Doc: "old-essay", Tenant: "s1", Revision: rev})
		if err != nil || ev.Verdict != want {
			t.Errorf("revision %d of the pre-existing document: %s %v, want %s", rev, ev.Verdict, err, want)
		}
	}

	cs = e.setStage("pilot", cs.Epoch, dataplane.StageDualWrite)
	cs = e.setStage("pilot", cs.Epoch, dataplane.StageBackfill)
	if r, err := e.eng.Backfill(ctx, BackfillCheckpoint{Rollout: rollout, Cohort: "pilot", Epoch: cs.Epoch}, []string{"old-essay"}); err != nil || r.Backfilled != 1 {
		t.Fatalf("backfill: %+v %v", r, err)
	}
	ev = ask("old-essay")
	if ev.Verdict != VerdictSynced || len(ev.Proof.Entries) != 1 || !strings.Contains(ev.Proof.Summary, "Yjs representation was made from it") {
		t.Fatalf("backfilled document: %s (%+v)", ev.Verdict, ev.Proof)
	}

	// An ID only announced in a sync step 1 (nothing lacking): no save,
	// and the summary does not deny the entry it shows.
	e.submit(Request{Kind: KindSync1, Doc: "nope-77", Tenant: "s1", User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})})
	ev = ask("nope-77")
	if ev.Verdict != VerdictNeverPersisted || len(ev.Timeline) != 1 || strings.Contains(ev.Proof.Summary, "no ledger entry") {
		t.Fatalf("announced only: %s %q, %d entries", ev.Verdict, ev.Proof.Summary, len(ev.Timeline))
	}
}
