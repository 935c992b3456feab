package store

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
)

func TestGenesisIsDeterministic(t *testing.T) {
	for _, text := range []string{"", "hello", "héllo 👋 wörld\n"} {
		a, err := GenesisUpdate(text)
		if err != nil {
			t.Fatal(err)
		}
		b, err := GenesisUpdate(text)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%q: two geneses differ", text)
		}
		r := verifyOne("d", text, nil, nil, []int64{1, 1}, [][]byte{a, b})
		if r.Verdict != VerifyMatch {
			t.Errorf("%q: a genesis applied twice: %+v", text, r)
		}
	}
}

// TestBackfill: legacy-only documents get one genesis each, under the
// save discipline, only at backfill stages; running it again changes
// nothing; verification then matches, and an out-of-band write of a
// legacy row is a mismatch.
func TestBackfill(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	cs := e.cohort("pilot", dataplane.StageLegacy, "s1")
	var docs []string
	for i := range 30 {
		id := fmt.Sprintf("bf-%02d", i)
		docs = append(docs, id)
		e.submit(Request{Kind: KindCreate, Doc: id, Tenant: "s1", User: "u", Content: fmt.Sprintf("text of %d, ünïcödé 👋", i)})
	}
	e.submit(Request{Kind: KindSave, Doc: docs[0], Tenant: "s1", User: "u", Content: "edited at Legacy"})
	if n := e.count(`SELECT count(*) FROM yjs_snapshots`); n != 0 {
		t.Fatalf("%d documents have Yjs at Legacy", n)
	}
	res, err := e.eng.VerifyDocs(ctx, docs)
	if err != nil || len(res) != len(docs) || res[0].Verdict != VerifyNoYjs {
		t.Fatalf("verify before backfill: %v %+v", err, res)
	}
	// At Legacy the backfill does nothing.
	cp := BackfillCheckpoint{Rollout: rollout, Cohort: "pilot", Epoch: cs.Epoch}
	r, err := e.eng.Backfill(ctx, cp, docs)
	if err != nil || r.Backfilled != 0 || r.Skipped != len(docs) {
		t.Fatalf("backfill at Legacy: %+v %v", r, err)
	}
	cs = e.setStage("pilot", cs.Epoch, dataplane.StageDualWrite)
	cs = e.setStage("pilot", cs.Epoch, dataplane.StageBackfill)
	cp.Epoch = cs.Epoch
	// Two batches, the second overlapping the first.
	if r, err = e.eng.Backfill(ctx, cp, docs[:20]); err != nil || r.Backfilled != 20 {
		t.Fatalf("first batch: %+v %v", r, err)
	}
	if r, err = e.eng.Backfill(ctx, cp, docs[10:]); err != nil || r.Backfilled != 10 || r.Skipped != 10 {
		t.Fatalf("second batch: %+v %v", r, err)
	}
	got, err := e.eng.LoadBackfillCheckpoint(ctx, rollout, "pilot")
	if err != nil || got.AfterDoc != docs[len(docs)-1] || got.Backfilled != 30 || got.Epoch != cs.Epoch {
		t.Fatalf("checkpoint: %+v %v", got, err)
	}
	if n := e.count(`SELECT count(*) FROM yjs_updates WHERE origin = $1`, OriginBackfill); n != 30 {
		t.Fatalf("%d geneses for 30 documents", n)
	}
	for _, id := range docs {
		d, err := e.eng.Read(ctx, "s1", id)
		if err != nil || !d.HasYjs || d.Generation != 1 || d.LegacyContent != nil {
			t.Fatalf("%s after backfill: %+v %v", id, d, err)
		}
		ens := e.entries(id)
		last := ens[len(ens)-1]
		if last.Kind != ledger.KindBackfill || last.Stage != dataplane.StageBackfill || last.Epoch != cs.Epoch ||
			last.ContentSHA256 != ledger.SHA256Hex([]byte(d.Content)) {
			t.Fatalf("%s: ledger entry %+v", id, last)
		}
		if rep, err := e.eng.VerifyLedger(ctx, id); err != nil || !rep.OK {
			t.Fatalf("%s: ledger chain %+v %v", id, rep, err)
		}
	}
	// A save after the backfill edits the genesis, it does not replace it.
	e.submit(Request{Kind: KindSave, Doc: docs[1], Tenant: "s1", User: "u", Content: "text of 1, edited"})
	if n := e.count(`SELECT count(*) FROM yjs_updates WHERE doc_id = $1`, docs[1]); n != 2 {
		t.Fatalf("%d updates after a save on a backfilled document", n)
	}
	res, err = e.eng.VerifyDocs(ctx, docs)
	if err != nil || len(res) != len(docs) {
		t.Fatal(err, len(res))
	}
	for _, v := range res {
		if v.Verdict != VerifyMatch {
			t.Fatalf("%+v", v)
		}
	}
	// An out-of-band write of a legacy row.
	if _, err := e.pool.Exec(ctx, `UPDATE documents SET content = 'changed behind our back' WHERE doc_id = $1`, docs[5]); err != nil {
		t.Fatal(err)
	}
	res, err = e.eng.VerifyDocs(ctx, docs[5:6])
	if err != nil || len(res) != 1 || res[0].Verdict != VerifyMismatch {
		t.Fatalf("after an out-of-band write: %+v %v", res, err)
	}
}
