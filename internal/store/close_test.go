package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestRequestsAroundCloseAreAllAnswered: a request made while or after the
// engine closes is answered (committed, or refused as closed), never left
// waiting. Submit chose at random between queueing on its lane and seeing
// the engine stopped, and a request queued after its lane's last drain was
// never answered: its caller waited until its context ended (a shutdown's
// background work with no deadline, for good). About half of the requests
// made after Close were.
func TestRequestsAroundCloseAreAllAnswered(t *testing.T) {
	e := setup(t)
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "a"})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	hung := make(chan string, 200)
	submit := func(i int) {
		defer wg.Done()
		req := Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "u", Content: fmt.Sprint("a", i)}
		if i%2 == 0 {
			if _, err := e.eng.Submit(ctx, req); ctx.Err() != nil {
				hung <- fmt.Sprintf("Submit %d: %v", i, err)
			}
			return
		}
		e.eng.SubmitEach(ctx, []Request{req}, func(_ int, _ Result, err error, _ bool) {
			if ctx.Err() != nil {
				hung <- fmt.Sprintf("SubmitEach %d: %v", i, err)
			}
		})
	}
	// Requests racing Close ...
	for i := range 60 {
		wg.Add(1)
		go submit(i)
	}
	e.eng.Close()
	// ... and made after it.
	for i := 60; i < 120; i++ {
		wg.Add(1)
		go submit(i)
	}
	wg.Wait()
	close(hung)
	for h := range hung {
		t.Error("not answered until its context ended: " + h)
	}
}
