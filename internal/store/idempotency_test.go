package store

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestIdempotencyKeyReusedForAnotherSave: a key answers only the request
// that used it first. A different save reusing it (a client that keeps one
// key per session) is refused with a recorded 422, not answered "saved,
// replayed" with its text dropped; the original's retry is still a replay.
func TestIdempotencyKeyReusedForAnotherSave(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "v1"})
	first := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "v2", BaseRevision: 1, IdempotencyKey: "K"})
	_, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "something else", BaseRevision: 2, IdempotencyKey: "K"})
	var se *Error
	if !errors.As(err, &se) || se.Status != http.StatusUnprocessableEntity || se.Code != CodeIdempotencyReuse {
		t.Fatalf("a different save with the same key: %v; want 422 %s", err, CodeIdempotencyReuse)
	}
	retry := e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "v2", BaseRevision: 1, IdempotencyKey: "K"})
	if !retry.Replayed || retry.Revision != first.Revision || retry.Content == nil || *retry.Content != "v2" {
		t.Errorf("the original's retry: %+v", retry)
	}
	if d, err := e.eng.Read(t.Context(), "t", "d"); err != nil || d.Content != "v2" || d.Revision != 2 {
		t.Errorf("document: %+v, %v", d, err)
	}
	if n := e.count(`SELECT count(*) FROM save_ledger WHERE doc_id = 'd' AND kind = 'rejected'`); n != 1 {
		t.Errorf("%d refusals recorded, want 1", n)
	}
}

// TestSameKeyInOneGroup: requests sharing a key in one group commit are
// one request only if they are the same request of the same tenant. The
// owner's save and another tenant's, in either order, are each answered
// on their own: the other tenant never sees the owner's result, the
// owner's save is applied.
func TestSameKeyInOneGroup(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "owner", User: "alice", Content: "private essay"})
	l := e.eng.laneOf("d")
	run := func(reqs ...Request) []*op {
		var ops []*op
		for _, r := range reqs {
			ops = append(ops, &op{req: r, done: make(chan struct{})})
		}
		e.eng.runBatch(l, ops)
		return ops
	}
	for i, ownerFirst := range []bool{true, false} {
		k := fmt.Sprint("K", i)
		own := Request{Kind: KindSave, Doc: "d", Tenant: "owner", User: "alice", Content: fmt.Sprint("draft ", i), IdempotencyKey: k}
		other := Request{Kind: KindSave, Doc: "d", Tenant: "mallory-school", User: "mallory", Content: "x", IdempotencyKey: k}
		reqs, oi := []Request{own, other}, 0
		if !ownerFirst {
			reqs, oi = []Request{other, own}, 1
		}
		ops := run(reqs...)
		var se *Error
		if o := ops[1-oi]; !errors.As(o.err, &se) || se.Code != CodeNotFound || o.res.Content != nil {
			t.Errorf("owner first %v: the other tenant got %+v, %v", ownerFirst, o.res, o.err)
		}
		if o := ops[oi]; o.err != nil || o.res.Replayed {
			t.Errorf("owner first %v: the owner's save: %+v, %v", ownerFirst, o.res, o.err)
		}
		if d, err := e.eng.Read(t.Context(), "owner", "d"); err != nil || d.Content != own.Content {
			t.Errorf("owner first %v: document %+v, %v", ownerFirst, d, err)
		}
	}
	// The same request twice in a group is one save; a different one with
	// the same key is refused.
	same := Request{Kind: KindSave, Doc: "d", Tenant: "owner", User: "alice", Content: "final", IdempotencyKey: "K9"}
	diff := same
	diff.Content = "not final"
	ops := run(same, same, diff)
	if ops[0].err != nil || ops[1].err != nil || !ops[1].res.Replayed || ops[1].res.Revision != ops[0].res.Revision {
		t.Errorf("a request repeated in its group: %+v %v / %+v %v", ops[0].res, ops[0].err, ops[1].res, ops[1].err)
	}
	var se *Error
	if !errors.As(ops[2].err, &se) || se.Code != CodeIdempotencyReuse {
		t.Errorf("a different request with the group's key: %+v, %v", ops[2].res, ops[2].err)
	}
}

// TestKeyOfARefusedRequest: a request refused in a group records nothing
// under its key, so a different request with the key later in the same
// group runs on its own, as it would in the next group.
func TestKeyOfARefusedRequest(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "v1"})
	l := e.eng.laneOf("d")
	refused := Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "x", Title: ptr(strings.Repeat("t", 600)), IdempotencyKey: "K"}
	good := Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: "v2", IdempotencyKey: "K"}
	ops := []*op{{req: refused, done: make(chan struct{})}, {req: good, done: make(chan struct{})}}
	e.eng.runBatch(l, ops)
	var se *Error
	if !errors.As(ops[0].err, &se) || se.Code != CodeTooLarge {
		t.Fatalf("the oversize title: %+v, %v", ops[0].res, ops[0].err)
	}
	if ops[1].err != nil || ops[1].res.Revision != 2 {
		t.Fatalf("the next request with the key: %+v, %v", ops[1].res, ops[1].err)
	}
	if r := e.submit(good); !r.Replayed || r.Revision != 2 {
		t.Errorf("its retry: %+v", r)
	}
}

// TestReplayOfADamagedRevision: a replay answers with its revision's text,
// but a revision that cannot be rebuilt (its splice altered) does not fail
// the retry: it is answered as the replay it is, without the text.
func TestReplayOfADamagedRevision(t *testing.T) {
	e := setup(t)
	long := strings.Repeat("a sentence of an essay. ", 100) // splices need 1 KiB
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: long})
	save := Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: long + "More.", BaseRevision: 1, IdempotencyKey: "K"}
	first := e.submit(save)
	if n := e.count(`SELECT count(*) FROM document_revisions WHERE doc_id = 'd' AND revision = 2 AND splice_text IS NOT NULL`); n != 1 {
		t.Fatalf("revision 2 is not a splice")
	}
	if _, err := e.pool.Exec(t.Context(), `UPDATE document_revisions SET splice_text = splice_text || 'Z' WHERE doc_id = 'd' AND revision = 2`); err != nil {
		t.Fatal(err)
	}
	r, err := e.eng.Submit(t.Context(), save)
	if err != nil || !r.Replayed || r.Revision != first.Revision || r.Content != nil {
		t.Fatalf("retry of a save whose revision is damaged: %+v, %v", r, err)
	}
}

// TestAnotherTenantsSaveWithAUsedKeyIsOnRecord: another school's save of a
// document is refused and recorded in the document's ledger (I6), whatever
// key it carries. With the key of one of the owner's saves it was refused
// where the stored answers are looked up, before anything was recorded:
// the attempt left no trace, and the evidence of the document could not
// show who tried to reach it.
func TestAnotherTenantsSaveWithAUsedKeyIsOnRecord(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "owner", User: "alice", Content: "private essay"})
	e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "owner", User: "alice", Content: "private essay, longer", BaseRevision: 1, IdempotencyKey: "K"})
	for _, key := range []string{"new-key", "K"} {
		_, err := e.eng.Submit(t.Context(), Request{Kind: KindSave, Doc: "d", Tenant: "mallory-school", User: "mallory", Content: "x", IdempotencyKey: key})
		if AsError(err).Code != CodeNotFound {
			t.Fatalf("another tenant's save with key %q: %v", key, err)
		}
	}
	if n := e.count(`SELECT count(*) FROM save_ledger WHERE doc_id = 'd' AND kind = 'rejected' AND tenant = 'mallory-school'`); n != 2 {
		t.Errorf("%d of another tenant's 2 refused saves are on record", n)
	}
	if d, err := e.eng.Read(t.Context(), "owner", "d"); err != nil || d.Content != "private essay, longer" || d.Revision != 2 {
		t.Errorf("document: %+v, %v", d, err)
	}
	if rep, err := e.eng.VerifyLedger(t.Context(), "d"); err != nil || !rep.OK {
		t.Errorf("ledger: %+v %v", rep, err)
	}
}
