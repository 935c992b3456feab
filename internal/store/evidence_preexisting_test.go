package store

import (
	"slices"
	"strings"
	"testing"
	"time"

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

// TestEvidenceOfAUsersSavesBeforeTheLedger: support asks what happened to
// one student's work on an essay written before the rollout. The
// write-through store's history names who saved each revision and when;
// evidence answered never-persisted for every user of such a document,
// and for the whole document asked since a day before the rollout.
func TestEvidenceOfAUsersSavesBeforeTheLedger(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	e.cohort("pilot", dataplane.StageLegacy, "s1")
	day := func(d int) time.Time { return time.Date(2025, 9, d, 12, 0, 0, 0, time.UTC) }
	if _, err := e.pool.Exec(ctx, `INSERT INTO documents (doc_id, tenant, owner, title, content, revision, shard, created_at, updated_at)
		VALUES ('old-essay', 's1', 'ada', 'Essay', 'final of 2025', 4, 0, $1, $2)`, day(1), day(25)); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		rev  int64
		by   string
		at   time.Time
		text string
	}{{2, "ada", day(5), "a draft"}, {3, "bob", day(20), "a draft, reviewed"}, {4, "ada", day(25), "final of 2025"}} {
		if _, err := e.pool.Exec(ctx, `INSERT INTO document_revisions (doc_id, revision, title, content, saved_by, saved_at, stage, epoch, shard_epoch)
			VALUES ('old-essay', $1, 'Essay', $4, $2, $3, 'Legacy', 0, 0)`, r.rev, r.by, r.at, r.text); err != nil {
			t.Fatal(err)
		}
	}
	ask := func(q EvidenceQuery) Evidence {
		t.Helper()
		q.Doc, q.Tenant = "old-essay", "s1"
		ev, err := e.eng.Evidence(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	expect := func(what string, q EvidenceQuery, verdict string, rev int64, says ...string) {
		t.Helper()
		ev := ask(q)
		if ev.Verdict != verdict || (rev != 0 && ev.Proof.Revision != rev) {
			t.Errorf("%s: %s at revision %d (%q), want %s at %d", what, ev.Verdict, ev.Proof.Revision, ev.Proof.Summary, verdict, rev)
			return
		}
		for _, s := range says {
			if !strings.Contains(ev.Proof.Summary, s) {
				t.Errorf("%s: summary %q does not say %q", what, ev.Proof.Summary, s)
			}
		}
	}
	expect("ada, the owner", EvidenceQuery{User: "ada"}, VerdictSynced, 4, "created the document on 2025-09-01", "2 revisions (2, 4)", "/revisions/4")
	expect("bob", EvidenceQuery{User: "bob"}, VerdictSynced, 3, "saved revision 3")
	expect("carol, who never saved it", EvidenceQuery{User: "carol"}, VerdictNeverPersisted, 0)
	expect("ada since the 10th", EvidenceQuery{User: "ada", Since: day(10)}, VerdictSynced, 4, "saved revision 4")
	expect("bob since the 21st", EvidenceQuery{User: "bob", Since: day(21)}, VerdictNeverPersisted, 0)
	expect("the document since the 15th", EvidenceQuery{Since: day(15)}, VerdictSynced, 4, "last saved 2025-09-25")
	expect("the document since the 26th", EvidenceQuery{Since: day(26)}, VerdictNeverPersisted, 0, "last saved on 2025-09-25", "not through the gateway")

	// Saves through the gateway: carol's is the ledger's; ada's earlier
	// saves are still the history's, and a later revision of the ledger
	// era is never taken for one of them.
	e.submit(Request{Kind: KindSave, Doc: "old-essay", Tenant: "s1", User: "carol", Content: "carol's edit", BaseRevision: 4})
	e.submit(Request{Kind: KindSave, Doc: "old-essay", Tenant: "s1", User: "bob", Content: "bob's edit", BaseRevision: 5})
	expect("carol after her save", EvidenceQuery{User: "carol"}, VerdictSynced, 5)
	expect("ada after the ledger began", EvidenceQuery{User: "ada"}, VerdictSynced, 4, "2 revisions (2, 4)")
	ev := ask(EvidenceQuery{User: "bob"})
	if ev.Verdict != VerdictSynced || ev.Proof.Revision != 6 || len(ev.Proof.Entries) == 0 {
		t.Errorf("bob after his save through the gateway: %s %+v, want the ledger's proof of revision 6", ev.Verdict, ev.Proof)
	}
	if !slices.ContainsFunc(ev.Findings, func(f Finding) bool {
		return f.Revision == 3 && strings.Contains(f.Summary, "before this ledger began")
	}) {
		t.Errorf("bob's save before the ledger is not among the findings: %+v", ev.Findings)
	}
	// Another school asking about the ID learns nothing of its users.
	ev, err := e.eng.Evidence(ctx, EvidenceQuery{Doc: "old-essay", Tenant: "s2", User: "ada"})
	if err != nil || ev.Verdict != VerdictNeverPersisted || strings.Contains(ev.Proof.Summary, "ada") {
		t.Errorf("another school asking about ada: %s %q %v", ev.Verdict, ev.Proof.Summary, err)
	}
}
