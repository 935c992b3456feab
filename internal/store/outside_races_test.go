package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestDivergenceClosedWhenASaveRepairedFirst follows the syncer's
// verification step (internal/syncer/integrity.go verifyPass -> repair):
// VerifyDocs finds a mismatch, then RecordDivergence, then Repair. A live
// save that reaches the document between the verification read and
// RecordDivergence repairs it itself (stale-row guard -> reload -> repair).
// The repair that follows finds it consistent and must close the
// divergence recorded meanwhile, or it stays open and fails the cohort's
// gate for good. Found by review.
func TestDivergenceClosedWhenASaveRepairedFirst(t *testing.T) {
	e := setup(t)
	cs := e.cohort("c", dataplane.StageVerify, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "alpha beta"})
	e.outOfBand("d", "alpha beta gamma", false)

	// verification pass reads the document: mismatch
	res, err := e.eng.VerifyDocs(t.Context(), []string{"d"})
	if err != nil || len(res) != 1 || res[0].Verdict != VerifyMismatch {
		t.Fatalf("verify: %+v %v", res, err)
	}
	// a student's save lands now (it repairs the document first)
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "alpha beta gamma delta"})
	// the syncer continues with the mismatch it found
	if err := e.eng.RecordDivergence(t.Context(), "d", DivergenceOutOfBand, "c", cs.Epoch, "verification: "+res[0].Detail); err != nil {
		t.Fatal(err)
	}
	rep, err := e.eng.Repair(t.Context(), "d", "verification")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("repair outcome: %s", rep.Outcome)
	// The document is consistent now ...
	if v, _ := e.eng.VerifyDocs(t.Context(), []string{"d"}); v[0].Verdict != VerifyMatch {
		t.Fatalf("still mismatched: %+v", v)
	}
	// ... but the cohort report keeps an open divergence forever.
	counts, err := e.dp.CohortDivergences(t.Context(), rollout, 0, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if c := counts["c"]; c.Open != 0 {
		t.Fatalf("consistent document, but the cohort reports %d open divergence(s) (gate MaxOpenDivergences -> rollback); repair said %q", c.Open, rep.Outcome)
	}
}

// TestReadAfterOutsideWriteAtLegacy: at Legacy no verification runs, so
// nothing reads outside_changes; a document the syncer has in memory must
// still not be served from memory once the legacy application changed its
// row, or a reader gets text and a revision the store no longer holds (and
// saves on that revision are then stale). Found by review.
func TestReadAfterOutsideWriteAtLegacy(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLegacy, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "student draft"})
	e.outOfBand("d", "teacher's correction", true)
	d, err := e.eng.Read(t.Context(), "t1", "d")
	if err != nil {
		t.Fatal(err)
	}
	if d.Content != "teacher's correction" {
		t.Fatalf("read returned %q (revision %d); the row holds %q (revision 2)", d.Content, d.Revision, "teacher's correction")
	}
}

// TestBackfillSkipsARowLockedOutside: the backfill holds every lane of the
// shard while it locks its rows. Had it waited for a row the legacy
// application's open transaction holds, every save and read of the shard
// would stop for as long as that transaction stays open; it skips the row
// instead, and a later pass takes the document. Found by review.
func TestBackfillSkipsARowLockedOutside(t *testing.T) {
	e := setup(t)
	cs := e.cohort("c", dataplane.StageLegacy, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "legacy-only", Tenant: "t1", User: "u", Content: "old essay"})
	e.submit(Request{Kind: KindCreate, Doc: "other", Tenant: "t2", User: "u", Content: "another school's essay"})
	cs = e.setStage("c", cs.Epoch, dataplane.StageDualWrite)
	cs = e.setStage("c", cs.Epoch, dataplane.StageBackfill)

	// The legacy application holds a row lock (an open transaction).
	tx, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(t.Context(), `UPDATE documents SET title = 'x' WHERE doc_id = 'legacy-only'`); err != nil {
		t.Fatal(err)
	}
	first := make(chan BackfillResult, 1)
	go func() {
		res, err := e.eng.Backfill(t.Context(), BackfillCheckpoint{Rollout: rollout, Cohort: "c", Epoch: cs.Epoch}, []string{"legacy-only"})
		if err != nil {
			t.Error(err)
		}
		first <- res
	}()
	time.Sleep(300 * time.Millisecond)
	// A save of an unrelated document of another tenant (not in any cohort).
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err = e.eng.Submit(ctx, Request{Kind: KindSave, Doc: "other", Tenant: "t2", User: "u", Content: "another school's essay, edited"})
	if err != nil {
		t.Fatalf("an unrelated save on the shard did not complete within %v while the backfill waited for another row: %v", time.Since(start).Round(time.Millisecond), err)
	}
	if res := <-first; res.Backfilled != 0 || res.Skipped != 1 {
		t.Errorf("backfill with the row held elsewhere: %+v, want it skipped", res)
	}
	// Once the other transaction ends, a later pass takes the document.
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	res, err := e.eng.Backfill(t.Context(), BackfillCheckpoint{Rollout: rollout, Cohort: "c", Epoch: cs.Epoch}, []string{"legacy-only"})
	if err != nil || res.Backfilled != 1 {
		t.Fatalf("backfill after the lock was released: %+v %v", res, err)
	}
	if v, err := e.eng.VerifyDocs(t.Context(), []string{"legacy-only"}); err != nil || v[0].Verdict != VerifyMatch {
		t.Errorf("verify after backfill: %+v %v", v, err)
	}
}

// TestRowDeletedOutside: a documents row deleted outside the gateway left
// its history behind, and the next save of the document tried to write
// revision 1 again and failed on every retry (found by review). Where the
// Yjs side is authoritative the row is made again from it, with the
// student's edit; where the legacy side is, the deletion stands and a new
// document may take the ID, numbered on from the history.
func TestRowDeletedOutside(t *testing.T) {
	t.Run("LocalFirst", func(t *testing.T) {
		e := setup(t)
		e.cohort("c", dataplane.StageLocalFirst, "t1")
		e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "one two"})
		// A student's editor holds the document's state.
		c := e.replicasOf("t1", "d", 7)[0]
		var u []byte
		c.OnUpdate(func(b []byte) { u = b })
		if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
			t.Fatal(err)
		}
		e.restart() // whatever the syncer had in memory
		// A legacy client still reading the document finds it, as the
		// authoritative Yjs side has it.
		if d, err := e.eng.Read(t.Context(), "t1", "d"); err != nil || d.Content != "one two" || d.Revision != 2 {
			t.Fatalf("read after the row was deleted: %+v %v", d, err)
		}
		e.restart()
		tx := c.GetText(contract.YjsTextName)
		if err := tx.Insert(tx.Len(), " three", nil); err != nil {
			t.Fatal(err)
		}
		r, err := e.eng.Submit(t.Context(), Request{Kind: KindYjs, Doc: "d", Tenant: "t1", User: "u", Update: u})
		if err != nil {
			t.Fatalf("the student's edit after the row was deleted: %v", err)
		}
		d, err := e.eng.Read(t.Context(), "t1", "d")
		if err != nil || d.Content != "one two three" || d.Owner != "u" || r.Revision != d.Revision || d.Revision != 3 {
			t.Fatalf("read after the edit: %+v %v (edit answered revision %d)", d, err, r.Revision)
		}
		ev, err := e.eng.Evidence(t.Context(), EvidenceQuery{Doc: "d", Tenant: "t1"})
		if err != nil || !ev.Chain.OK {
			t.Fatalf("evidence: %+v %v", ev.Chain, err)
		}
		var repaired bool
		for _, en := range ev.Timeline {
			repaired = repaired || (en.Kind == "repaired" && strings.Contains(en.Reason, "deleted outside the gateway"))
		}
		if !repaired {
			t.Errorf("no repaired entry says the row was deleted outside: %+v", ev.Timeline)
		}
		if n := e.count(`SELECT count(*) FROM divergences WHERE doc_id = 'd' AND resolved_at IS NULL`); n != 0 {
			t.Errorf("%d open divergences", n)
		}
	})
	t.Run("DualWrite", func(t *testing.T) {
		e := setup(t)
		e.cohort("c", dataplane.StageDualWrite, "t1")
		e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "u", Content: "one"})
		e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "one two", BaseRevision: 1})
		if _, err := e.pool.Exec(t.Context(), `DELETE FROM documents WHERE doc_id = 'd'`); err != nil {
			t.Fatal(err)
		}
		// The deletion stands, for readers as for savers...
		if _, err := e.eng.Read(t.Context(), "t1", "d"); AsError(err).Code != CodeNotFound {
			t.Errorf("read of the deleted document: %v", err)
		}
		if _, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t1", User: "u", Content: "x", BaseRevision: 2}); AsError(err).Code != CodeNotFound {
			t.Errorf("save of the deleted document: %v", err)
		}
		// ... and the ID can be taken again, without rewriting history.
		r, err := e.eng.Submit(t.Context(), Request{Kind: KindCreate, Doc: "d", Tenant: "t1", User: "v", Content: "fresh"})
		if err != nil || r.Revision != 3 {
			t.Fatalf("create after the deletion: %+v %v", r, err)
		}
		if v, err := e.eng.VerifyDocs(t.Context(), []string{"d"}); err != nil || v[0].Verdict != VerifyMatch {
			t.Errorf("verify: %+v %v", v, err)
		}
		if rep, err := e.eng.VerifyLedger(t.Context(), "d"); err != nil || !rep.OK {
			t.Errorf("ledger: %+v %v", rep, err)
		}
		d, err := e.eng.Read(t.Context(), "t1", "d")
		if err != nil || d.Content != "fresh" || d.Owner != "v" {
			t.Errorf("read: %+v %v", d, err)
		}
	})
}

// TestRowLockedOutsideHoldsUpOnlyItsDocument: a transaction outside the
// gateway that keeps a document's row locked (a legacy batch job, a
// session idle in transaction) made the group saving that document wait
// for it, and with it every document of its lane, up to the 30 s group
// timeout, after which they all failed. A group now gives up on the lock
// after LockTimeout, and one of several requests runs them one by one,
// each waiting briefly: the other documents are saved while the lock is
// still held, and only the locked document's saves are refused, as
// retryable. Found by review (of the backfill's version of it).
func TestRowLockedOutsideHoldsUpOnlyItsDocument(t *testing.T) {
	e := setup(t)
	e.restartWith(Config{Lanes: 1, LockTimeout: 300 * time.Millisecond})
	e.cohort("c", dataplane.StageDualWrite, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "locked", Tenant: "t1", User: "u", Content: "a"})
	e.submit(Request{Kind: KindCreate, Doc: "free", Tenant: "t1", User: "u", Content: "b"})
	e.submit(Request{Kind: KindSave, Doc: "locked", Tenant: "t1", User: "u", Content: "a1", BaseRevision: 1})
	e.submit(Request{Kind: KindSave, Doc: "free", Tenant: "t1", User: "u", Content: "b1", BaseRevision: 1}) // stages cached

	tx, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(t.Context(), `SELECT 1 FROM documents WHERE doc_id = 'locked' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	// A save of the locked document waits for its row; meanwhile another
	// save of it and one of the other document queue on the lane and
	// form the next group. Everything is answered while the lock is held.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	saveLocked := func(content string) chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := e.eng.Submit(ctx, Request{Kind: KindSave, Doc: "locked", Tenant: "t1", User: "u", Content: content, BaseRevision: 2})
			ch <- err
		}()
		return ch
	}
	first := saveLocked("a2")
	time.Sleep(100 * time.Millisecond)
	second := saveLocked("a3")
	r, err := e.eng.Submit(ctx, Request{Kind: KindSave, Doc: "free", Tenant: "t1", User: "u", Content: "b2", BaseRevision: 2})
	if err != nil || r.Revision != 3 {
		t.Fatalf("the other document's save while a row is locked outside: %+v %v", r, err)
	}
	for _, ch := range []chan error{first, second} {
		if err := <-ch; AsError(err).Code != CodeUnavailable || !strings.Contains(AsError(err).Message, "locked by a transaction outside the gateway") {
			t.Fatalf("a save of the locked document: %v", err)
		}
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Its retry goes through once the lock is gone; nothing was half-saved.
	r, err = e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "locked", Tenant: "t1", User: "u", Content: "a2", BaseRevision: 2})
	if err != nil || r.Revision != 3 {
		t.Fatalf("the retry: %+v %v", r, err)
	}
}

// TestAStageChangeHoldingTheStageRowsIsNamedAsSuch: a save that waited
// past the lanes' lock_timeout for its school's stage rows (held by a
// stage change that took its time) was refused as if a transaction
// outside the gateway held the document's row: whoever read it went
// looking for a legacy writer that was not there. Still retryable, it now
// says what held it.
func TestAStageChangeHoldingTheStageRowsIsNamedAsSuch(t *testing.T) {
	e := setup(t)
	e.restartWith(Config{Lanes: 1, LockTimeout: 300 * time.Millisecond})
	e.cohort("c", dataplane.StageDualWrite, "t1")
	e.submit(Request{Kind: KindCreate, Doc: "essay", Tenant: "t1", User: "u", Content: "a"})

	tx, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	// What a stage change holds while it waits for its own locks.
	if _, err := tx.Exec(t.Context(), `SELECT 1 FROM rollout_cohorts WHERE rollout = $1 AND cohort = 'c' FOR UPDATE`, rollout); err != nil {
		t.Fatal(err)
	}
	_, err = e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "essay", Tenant: "t1", User: "u", Content: "a1", BaseRevision: 1})
	if se := AsError(err); se.Code != CodeUnavailable || !strings.Contains(se.Message, "a stage change") {
		t.Fatalf("the save held by a stage change: %v", err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r := e.submit(Request{Kind: KindSave, Doc: "essay", Tenant: "t1", User: "u", Content: "a1", BaseRevision: 1}); r.Revision != 2 {
		t.Fatalf("the retry: revision %d", r.Revision)
	}
}
