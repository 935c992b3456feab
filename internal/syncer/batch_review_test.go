package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/store"
)

// fakeSyncer answers apply and apply-batch without an engine; stall, when
// set, holds the named path until the test ends.
func fakeSyncer(t *testing.T, stall map[string]bool) (*httptest.Server, chan struct{}) {
	t.Helper()
	held := make(chan struct{}, 16)
	quit := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stall[r.URL.Path] {
			held <- struct{}{}
			select {
			case <-quit:
			case <-r.Context().Done():
			}
			return
		}
		switch r.URL.Path {
		case PathApply:
			var req store.Request
			_ = json.NewDecoder(r.Body).Decode(&req)
			WriteJSON(w, http.StatusOK, store.Result{Doc: req.Doc, Outcome: store.OutcomeSaved})
		case PathApplyBatch:
			var in ApplyBatch
			_ = json.NewDecoder(r.Body).Decode(&in)
			out := ApplyBatchAnswer{Results: make([]BatchResult, len(in.Requests))}
			for i, raw := range in.Requests {
				var req store.Request
				_ = json.Unmarshal(raw, &req)
				out.Results[i].Result = &store.Result{Doc: req.Doc, Outcome: store.OutcomeSaved}
			}
			WriteJSON(w, http.StatusOK, out)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(func() { close(quit); srv.Close() })
	return srv, held
}

func waitWaiting(t *testing.T, q *applyQueue, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		q.mu.Lock()
		got := len(q.waiting)
		q.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiting, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDrainedAppliesAreNotKeptAlive: once a crowd of applies has been
// answered, the queue keeps none of them (nor their updates) reachable.
func TestDrainedAppliesAreNotKeptAlive(t *testing.T) {
	srv, _ := fakeSyncer(t, nil)
	c := &Client{BaseURL: srv.URL, Token: "tok", HTTP: &http.Client{Timeout: 10 * time.Second}, Batch: &Batches{MaxInFlight: 1}}
	q := c.Batch.queue(c.BaseURL)
	q.mu.Lock()
	q.inFlight = q.max // a call in flight: the applies below wait
	q.mu.Unlock()
	var wg sync.WaitGroup
	const n = 100 // more than one batch
	ctx, cancel := context.WithCancel(t.Context())
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			actx := t.Context()
			if i == n-1 {
				actx = ctx
			}
			_, _ = c.Apply(actx, store.Request{Kind: store.KindYjs, Doc: "d", Tenant: "t", Update: make([]byte, 1000)})
		}()
	}
	waitWaiting(t, q, n)
	cancel() // the last one gives up while waiting
	waitWaiting(t, q, n-1)
	q.release(c)
	wg.Wait()
	waitWaiting(t, q, 0)
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, p := range q.waiting[:cap(q.waiting)] {
		if p != nil {
			t.Fatalf("slot %d of the emptied queue still holds an answered apply (%d bytes of update)", i, len(p.req.Update))
		}
	}
}

// TestABatchNobodyWaitsForDoesNotHoldItsSlot: with an HTTP client without
// a timeout (Client.HTTP nil is http.DefaultClient), a batch call to a
// syncer that never answers must not keep the call slot forever once
// every apply in it gave up; a single call would have ended with its
// caller's context.
func TestABatchNobodyWaitsForDoesNotHoldItsSlot(t *testing.T) {
	srv, held := fakeSyncer(t, map[string]bool{PathApplyBatch: true})
	c := &Client{BaseURL: srv.URL, Token: "tok", HTTP: &http.Client{}, Batch: &Batches{MaxInFlight: 1}}
	q := c.Batch.queue(c.BaseURL)
	q.mu.Lock()
	q.inFlight = q.max
	q.mu.Unlock()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			_, err := c.Apply(ctx, store.Request{Kind: store.KindYjs, Doc: "d", Tenant: "t", Update: []byte{1}})
			var se *store.Error
			if !errors.As(err, &se) || se.Code != store.CodeUnavailable {
				t.Errorf("an apply sent but unanswered: %v, want unavailable (in doubt)", err)
			}
		}()
	}
	waitWaiting(t, q, 3)
	q.release(c)
	<-held
	wg.Wait()
	// Every caller gave up: the next apply goes at once.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	res, err := c.Apply(ctx, store.Request{Kind: store.KindYjs, Doc: "next", Tenant: "t", Update: []byte{1}})
	if err != nil || res.Doc != "next" {
		t.Fatalf("the next apply: %+v %v (the slot is still held by an abandoned batch)", res, err)
	}
}
