package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestSubmitEachAnswersEveryRequestOnceAsItIsAnswered: SubmitEach (the
// syncer's streamed apply batches) answers a request as soon as its group
// commits, not held back by one waiting for a row another transaction
// holds; a caller giving up answers the waiting ones with its error; and
// every request is answered exactly once.
func TestSubmitEachAnswersEveryRequestOnceAsItIsAnswered(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	// Two documents in different lanes.
	locked := "essay-a"
	var free string
	for i := 0; free == ""; i++ {
		if d := fmt.Sprint("essay-b", i); e.eng.laneOf(d) != e.eng.laneOf(locked) {
			free = d
		}
	}
	for _, d := range []string{locked, free} {
		e.submit(Request{Kind: KindCreate, Doc: d, Tenant: "t", User: "u", Content: "draft"})
	}
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, `SELECT 1 FROM documents WHERE doc_id = $1 FOR UPDATE`, locked); err != nil {
		t.Fatal(err)
	}
	reqs := []Request{
		{Kind: KindSave, Doc: locked, Tenant: "t", User: "u", Content: "final"},
		{Kind: KindSave, Doc: free, Tenant: "t", User: "u", Content: "final"},
		{Kind: KindSave, Doc: "nope", Tenant: "t", User: "u", Content: "x"},
	}
	wait, giveUp := context.WithCancel(ctx)
	defer giveUp()
	var order []int
	errs := map[int]error{}
	e.eng.SubmitEach(wait, reqs, func(i int, res Result, err error, _ bool) {
		if _, twice := errs[i]; twice {
			t.Errorf("request %d answered twice", i)
		}
		order, errs[i] = append(order, i), err
		if i == 1 && (err != nil || res.Revision != 2) {
			t.Errorf("the free save: revision %d, %v", res.Revision, err)
		}
		if len(order) == 2 {
			giveUp() // the free save and the missing document are answered; the locked one waits
		}
	})
	if len(order) != 3 || order[2] != 0 {
		t.Fatalf("answered in the order %v; want the locked save last", order)
	}
	if AsError(errs[2]).Code != CodeNotFound {
		t.Errorf("the missing document: %v", errs[2])
	}
	if !errors.Is(errs[0], context.Canceled) {
		t.Errorf("the locked save, given up on: %v; want context.Canceled", errs[0])
	}
}
