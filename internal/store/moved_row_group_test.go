package store

import (
	"sync"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestAGroupWithAMovedRowAppliesTheOthersOnce: one group holds a
// keyed save of x (twice: a retry), a create of a new ID, and a sync step
// 1 of y, whose row the legacy application changed under the cached copy.
// The group fails and runs again; each request is applied and answered
// once, the retry as a replay of the first.
func TestAGroupWithAMovedRowAppliesTheOthersOnce(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "x", Tenant: "t", User: "u", Content: "x0"})
	e.submit(Request{Kind: KindCreate, Doc: "y", Tenant: "t", User: "u", Content: "y0"})
	if _, err := e.pool.Exec(t.Context(), `UPDATE documents SET content = 'y outside' WHERE doc_id = 'y'`); err != nil {
		t.Fatal(err)
	}
	xEntries, yEntries := len(e.entries("x")), len(e.entries("y"))
	reqs := []Request{
		{Kind: KindSave, Doc: "x", Tenant: "t", User: "u", Content: "x1", BaseRevision: 1, IdempotencyKey: "k"},
		{Kind: KindSync1, Doc: "y", Tenant: "t", User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})},
		{Kind: KindSave, Doc: "x", Tenant: "t", User: "u", Content: "x1", BaseRevision: 1, IdempotencyKey: "k"},
		{Kind: KindCreate, Doc: "z", Tenant: "t", User: "u", Content: "z0", IdempotencyKey: "kz"},
	}
	var mu sync.Mutex
	res := make([]Result, len(reqs))
	errs := make([]error, len(reqs))
	answers := make([]int, len(reqs))
	e.eng.SubmitEach(t.Context(), reqs, func(i int, r Result, err error, more bool) {
		mu.Lock()
		defer mu.Unlock()
		res[i], errs[i] = r, err
		answers[i]++
	})
	for i := range reqs {
		if errs[i] != nil || answers[i] != 1 {
			t.Errorf("request %d: %d answers, %v", i, answers[i], errs[i])
		}
	}
	if res[0].Revision != 2 || res[0].Replayed || res[2].Revision != 2 || !res[2].Replayed {
		t.Errorf("x's save and its retry: %+v / %+v", res[0], res[2])
	}
	if n := e.count(`SELECT count(*) FROM document_revisions WHERE doc_id = 'x'`); n != 2 {
		t.Errorf("x has %d revisions, want 2", n)
	}
	if n := len(e.entries("x")) - xEntries; n != 1 {
		t.Errorf("x's ledger got %d entries, want 1", n)
	}
	// y: repaired (the row captured), then the sync step 1 recorded.
	if n := len(e.entries("y")) - yEntries; n != 2 {
		t.Errorf("y's ledger got %d entries, want 2 (repair, state vector)", n)
	}
	if n := len(e.entries("z")); n != 1 {
		t.Errorf("z's ledger has %d entries, want 1", n)
	}
	if r := e.submit(reqs[0]); !r.Replayed || r.Revision != 2 {
		t.Errorf("x's save sent again: %+v", r)
	}
	if r := e.submit(reqs[3]); !r.Replayed {
		t.Errorf("z's create sent again: %+v", r)
	}
	for _, d := range []string{"x", "y", "z"} {
		if rep, err := e.eng.VerifyLedger(t.Context(), d); err != nil || !rep.OK {
			t.Errorf("ledger of %s: %+v %v", d, rep, err)
		}
	}
}
