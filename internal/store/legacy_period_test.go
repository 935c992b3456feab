package store

import (
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestSaveRepairingALegacyPeriodWriteIsNotTheAttemptsMismatch: after a
// rollback the legacy application rewrites a row directly; the new
// attempt starts before verification saw it, and a student's save gets
// there first, repairing the document in its group. The divergence it
// records is counted under the Legacy epoch the write was made in, not
// the attempt's (it rolled the attempt back with maxMismatches 0); a
// write during the attempt still counts under the attempt's epoch.
func TestSaveRepairingALegacyPeriodWriteIsNotTheAttemptsMismatch(t *testing.T) {
	e := setup(t)
	st := e.cohort("c", dataplane.StageVerify, "t")
	rev := e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "first draft"}).Revision
	change := func(stage string, attempt int32, outcome string) {
		st = e.stageAttempt("c", st.Epoch, stage, attempt, outcome)
	}
	change(dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	legacyEpoch := st.Epoch
	if _, err := e.pool.Exec(t.Context(), `UPDATE documents SET content = 'first draft, edited in the legacy app', revision = revision + 1 WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	change(dataplane.StageDualWrite, 2, "")
	r := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", BaseRevision: rev + 1, Content: "first draft, edited in the legacy app, and by the student"})
	if r.Outcome != OutcomeSaved {
		t.Fatalf("save: %s", r.Outcome)
	}
	if got := e.count(`SELECT count(*) FROM divergences WHERE doc_id = 'd' AND epoch = $1`, st.Epoch); got != 0 {
		t.Errorf("%d divergences of d counted under attempt 2's epoch %d, for a write made at Legacy", got, st.Epoch)
	}
	if got := e.count(`SELECT count(*) FROM divergences WHERE doc_id = 'd' AND epoch = $1 AND resolved_at IS NOT NULL`, legacyEpoch); got != 1 {
		t.Errorf("%d resolved divergences of d under the Legacy epoch %d, want 1", got, legacyEpoch)
	}
	// A write during the attempt counts for it.
	if _, err := e.pool.Exec(t.Context(), `UPDATE documents SET content = 'written behind the gateway during attempt 2', revision = revision + 1 WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	cur, err := e.eng.Read(t.Context(), "t", "d")
	if err != nil {
		t.Fatal(err)
	}
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", BaseRevision: cur.Revision, Content: "written behind the gateway during attempt 2, and saved"})
	if got := e.count(`SELECT count(*) FROM divergences WHERE doc_id = 'd' AND epoch = $1`, st.Epoch); got != 1 {
		t.Errorf("%d divergences of d under attempt 2's epoch %d after a write during it, want 1", got, st.Epoch)
	}
}

// TestAnOutsideWriteExcusesOneDivergenceOnly: a write the legacy
// application made while the cohort was rolled back, once reconciled
// (claimed by the divergence its repair recorded), excuses nothing more:
// a later divergence in the next attempt that no outside write explains
// counts for the attempt. Nor does a write made before the cohort ever
// started. A rule that looked only at the document's latest outside
// write let either one hide the attempt's mismatches.
func TestAnOutsideWriteExcusesOneDivergenceOnly(t *testing.T) {
	e := setup(t)
	st := e.cohort("c", dataplane.StageVerify, "t")
	change := func(stage string, attempt int32, outcome string) {
		st = e.stageAttempt("c", st.Epoch, stage, attempt, outcome)
	}
	save := func(content string) {
		t.Helper()
		cur, err := e.eng.Read(t.Context(), "t", "d")
		if err != nil {
			t.Fatal(err)
		}
		e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", BaseRevision: cur.Revision, Content: content})
	}
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "first draft"})
	change(dataplane.StageLegacy, 1, dataplane.OutcomeRolledBack)
	if _, err := e.pool.Exec(t.Context(), `UPDATE documents SET content = 'edited in the legacy app', revision = revision + 1 WHERE doc_id = 'd'`); err != nil {
		t.Fatal(err)
	}
	save("edited in the legacy app, then by the student") // repaired at Legacy first: the write is claimed
	change(dataplane.StageDualWrite, 2, "")
	// A change no trigger logs (a session claiming to be the syncer),
	// seen once the document is loaded again.
	tx, err := e.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`SET LOCAL yawp.syncer = 'on'`, `UPDATE documents SET content = 'changed unlogged' WHERE doc_id = 'd'`} {
		if _, err := tx.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.eng.cache.evict("d")
	save("changed unlogged, and saved")
	if got := e.count(`SELECT count(*) FROM divergences WHERE doc_id = 'd' AND epoch = $1`, st.Epoch); got != 1 {
		t.Errorf("%d divergences of d under attempt 2's epoch %d, want 1: the Legacy-period write, already reconciled, excused it", got, st.Epoch)
	}
}
