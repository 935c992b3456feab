package syncer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/store"
)

// batchRig is a syncer (a real engine on PostgreSQL behind the internal
// API) whose first single apply is held until released, so that the
// applies after it wait for a call and travel together.
type batchRig struct {
	srv      *httptest.Server
	dsn      string
	release  chan struct{}
	held     atomic.Bool
	batches  atomic.Int64 // calls reaching the batch endpoint
	noBatch  bool         // answer the batch endpoint as a syncer without it does
	noStream atomic.Bool  // answer batches in one JSON answer, as a syncer of the previous version does
	direct   *Client      // no batching, nothing held
	batching *Client      // one call in flight, then batches
}

func newBatchRig(t *testing.T, noBatch bool) *batchRig {
	t.Helper()
	dsn := pgharness.ForTest(t)
	_, pool, err := dataplane.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	eng, err := store.Open(t.Context(), store.Config{Pool: pool, DSN: dsn, Shard: 0, Shards: 1, Rollout: "default/demo",
		Holder: "test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	rig := &batchRig{dsn: dsn, release: make(chan struct{}), noBatch: noBatch}
	h := Handler(eng, "tok")
	rig.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case PathApplyBatch:
			rig.batches.Add(1)
			if rig.noBatch {
				http.NotFound(w, r) // what a syncer's mux answers for a path it lacks
				return
			}
			if rig.noStream.Load() {
				r.Header.Del("Accept")
			}
		case PathApply:
			if r.Header.Get("X-Direct") == "" && rig.held.CompareAndSwap(false, true) {
				<-rig.release
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(rig.srv.Close)
	rig.direct = &Client{BaseURL: rig.srv.URL, Token: "tok", HTTP: &http.Client{Transport: directTransport{}, Timeout: 10 * time.Second}}
	rig.batching = &Client{BaseURL: rig.srv.URL, Token: "tok", HTTP: &http.Client{Timeout: 10 * time.Second}, Batch: &Batches{MaxInFlight: 1}}
	return rig
}

// directTransport marks the rig's set-up calls, which are never held.
type directTransport struct{}

func (directTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Direct", "1")
	return http.DefaultTransport.RoundTrip(r)
}

// hold starts an apply that takes the batching client's only call slot
// and stays in flight until the returned function is called; that
// function waits for its answer.
func (rig *batchRig) hold(t *testing.T, doc string) (releaseAndWait func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := rig.batching.Apply(context.Background(), store.Request{Kind: store.KindCreate, Doc: doc, Tenant: "t", User: "u", Content: "held"})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !rig.held.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the first apply never reached the syncer")
		}
		time.Sleep(time.Millisecond)
	}
	return func() {
		close(rig.release)
		if err := <-done; err != nil {
			t.Errorf("the held apply: %v", err)
		}
	}
}

// waitQueued waits until n applies wait for a call to the rig.
func (rig *batchRig) waitQueued(t *testing.T, n int) {
	t.Helper()
	waitWaiting(t, rig.batching.Batch.queue(rig.batching.BaseURL), n)
}

type applied struct {
	res store.Result
	err error
}

// TestConcurrentAppliesShareOneCallEachWithItsOwnAnswer: under load the
// gateway's applies to a syncer travel in one call. Each student's save
// is applied and answered as its own (its document, its content hash, its
// ledger receipt), and a refused one is refused alone.
func TestConcurrentAppliesShareOneCallEachWithItsOwnAnswer(t *testing.T) {
	rig := newBatchRig(t, false)
	ctx := t.Context()
	if _, err := rig.direct.Apply(ctx, store.Request{Kind: store.KindCreate, Doc: "theirs", Tenant: "other", User: "o", Content: "their essay"}); err != nil {
		t.Fatal(err)
	}
	finish := rig.hold(t, "held")
	const n = 20
	reqs := make([]store.Request, 0, n+2)
	for i := range n {
		reqs = append(reqs, store.Request{Kind: store.KindCreate, Doc: fmt.Sprintf("essay-%02d", i), Tenant: "t", User: fmt.Sprint("student-", i),
			Content: fmt.Sprintf("essay number %d", i), RequestID: fmt.Sprint("req-", i)})
	}
	// Another school's document, and one that does not exist.
	reqs = append(reqs, store.Request{Kind: store.KindSave, Doc: "theirs", Tenant: "t", User: "u", Content: "overwritten?"},
		store.Request{Kind: store.KindSave, Doc: "nope", Tenant: "t", User: "u", Content: "x"})
	got := make([]applied, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i].res, got[i].err = rig.batching.Apply(ctx, r)
		}()
	}
	rig.waitQueued(t, len(reqs))
	finish()
	wg.Wait()
	if c, b := rig.batching.Batch.Calls.Load(), rig.batching.Batch.Batched.Load(); c != 1 || b != int64(len(reqs)) {
		t.Fatalf("%d batch calls carrying %d applies, want 1 carrying %d", c, b, len(reqs))
	}
	for i := range n {
		r, a := reqs[i], got[i]
		if a.err != nil {
			t.Fatalf("%s: %v", r.Doc, a.err)
		}
		if a.res.Doc != r.Doc || a.res.Outcome != store.OutcomeCreated || a.res.ContentSHA256 != ledger.SHA256Hex([]byte(r.Content)) || a.res.Receipt == "" {
			t.Fatalf("%s was answered %+v", r.Doc, a.res)
		}
		d, err := rig.direct.Read(ctx, "t", r.Doc)
		if err != nil || d.Content != r.Content {
			t.Fatalf("%s reads %q (%v), want %q", r.Doc, d.Content, err, r.Content)
		}
		ev, err := rig.direct.Evidence(ctx, r.Doc, map[string][]string{"tenant": {"t"}, "request": {r.RequestID}})
		if err != nil || ev.Verdict != store.VerdictSynced {
			t.Fatalf("evidence of %s: %s (%v)", r.RequestID, ev.Verdict, err)
		}
	}
	for _, a := range got[n:] {
		var se *store.Error
		if !errors.As(a.err, &se) || se.Code != store.CodeNotFound || se.Status != http.StatusNotFound {
			t.Fatalf("a save to another school's or a missing document: %+v %v, want 404 %s", a.res, a.err, store.CodeNotFound)
		}
	}
	if d, err := rig.direct.Read(ctx, "other", "theirs"); err != nil || d.Content != "their essay" {
		t.Fatalf("the other school's document reads %q (%v)", d.Content, err)
	}
}

// TestAnApplyGivenUpBeforeItsCallIsNeverSent: a student's editor that
// disconnects while its save waits for a call is told so, and the save is
// not made behind its back.
func TestAnApplyGivenUpBeforeItsCallIsNeverSent(t *testing.T) {
	rig := newBatchRig(t, false)
	finish := rig.hold(t, "held")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := rig.batching.Apply(ctx, store.Request{Kind: store.KindCreate, Doc: "abandoned", Tenant: "t", User: "u", Content: "x"})
		done <- err
	}()
	rig.waitQueued(t, 1)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the abandoned apply: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the abandoned apply still waits for a call")
	}
	rig.waitQueued(t, 0)
	finish()
	var se *store.Error
	if _, err := rig.direct.Read(t.Context(), "t", "abandoned"); !errors.As(err, &se) || se.Code != store.CodeNotFound {
		t.Fatalf("the abandoned document: %v, want not_found", err)
	}
	if c := rig.batching.Batch.Calls.Load(); c != 0 {
		t.Fatalf("%d batch calls", c)
	}
}

// TestASyncerWithoutApplyBatchesGetsSingleCalls: during a rolling upgrade
// a new gateway calls a syncer of the previous version, which has no
// batch endpoint. The waiting saves are sent one by one, all applied, and
// the gateway does not keep asking.
func TestASyncerWithoutApplyBatchesGetsSingleCalls(t *testing.T) {
	rig := newBatchRig(t, true)
	ctx := t.Context()
	finish := rig.hold(t, "held")
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = rig.batching.Apply(ctx, store.Request{Kind: store.KindCreate, Doc: fmt.Sprint("old-", i), Tenant: "t", User: "u", Content: fmt.Sprint("text ", i)})
		}()
	}
	rig.waitQueued(t, len(errs))
	finish()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("old-%d: %v", i, err)
		}
		if d, err := rig.direct.Read(ctx, "t", fmt.Sprint("old-", i)); err != nil || d.Content != fmt.Sprint("text ", i) {
			t.Fatalf("old-%d reads %q (%v)", i, d.Content, err)
		}
	}
	if n := rig.batches.Load(); n != 1 {
		t.Fatalf("the batch endpoint was tried %d times, want once", n)
	}
	// The next crowd goes singly at once, without asking again.
	q := rig.batching.Batch.queue(rig.batching.BaseURL)
	q.mu.Lock()
	q.inFlight = q.max // as if a call were in flight
	q.mu.Unlock()
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = rig.batching.Apply(ctx, store.Request{Kind: store.KindCreate, Doc: fmt.Sprint("later-", i), Tenant: "t", User: "u", Content: "x"})
		}()
	}
	rig.waitQueued(t, 3)
	q.release(rig.batching)
	wg.Wait()
	for i, err := range errs[:3] {
		if err != nil {
			t.Fatalf("later-%d: %v", i, err)
		}
	}
	if n := rig.batches.Load(); n != 1 {
		t.Fatalf("the batch endpoint was tried %d times, want once", n)
	}
}

// TestABatchRefusesOnlyItsUndecodableRequest: the endpoint's own checks.
// A request in a batch that the apply endpoint would refuse as malformed
// is refused alone; a batch too large or empty is refused whole and
// changes nothing.
func TestABatchRefusesOnlyItsUndecodableRequest(t *testing.T) {
	rig := newBatchRig(t, false)
	ctx := t.Context()
	post := func(body string) (int, ApplyBatchAnswer, store.Error) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, rig.srv.URL+PathApplyBatch, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		var ans ApplyBatchAnswer
		var se store.Error
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(buf.Bytes(), &ans); err != nil {
				t.Fatalf("answer %q: %v", buf.String(), err)
			}
		} else if err := json.Unmarshal(buf.Bytes(), &se); err != nil {
			t.Fatalf("refusal %q: %v", buf.String(), err)
		}
		return resp.StatusCode, ans, se
	}
	create := func(doc string) string {
		return fmt.Sprintf(`{"kind":"create","doc":%q,"tenant":"t","user":"u","content":"hello"}`, doc)
	}
	status, ans, _ := post(`{"requests":[` + create("a") + `,{"kind":"create","doc":"b","tenant":"t","user":"u","colour":"red"},` + create("c") + `]}`)
	if status != http.StatusOK || len(ans.Results) != 3 {
		t.Fatalf("status %d, %d results", status, len(ans.Results))
	}
	if r := ans.Results[1]; r.Result != nil || r.Error == nil || r.Error.Status != http.StatusBadRequest || r.Error.Code != store.CodeInvalidRequest {
		t.Fatalf("the malformed request: %+v", r)
	}
	for _, i := range []int{0, 2} {
		if r := ans.Results[i]; r.Error != nil || r.Result == nil || r.Result.Outcome != store.OutcomeCreated {
			t.Fatalf("request %d: %+v %+v", i, r.Result, r.Error)
		}
	}
	many := make([]string, MaxApplyBatch+1)
	for i := range many {
		many[i] = create(fmt.Sprint("many-", i))
	}
	for _, body := range []string{`{"requests":[` + strings.Join(many, ",") + `]}`, `{"requests":[]}`, `{"requests":[` + create("x") + `],"extra":1}`} {
		if status, _, se := post(body); status != http.StatusBadRequest || se.Code != store.CodeInvalidRequest {
			t.Fatalf("a batch of %d bytes: %d %+v, want 400 %s", len(body), status, se, store.CodeInvalidRequest)
		}
	}
	var se *store.Error
	for _, doc := range []string{"many-0", "b", "x"} {
		if _, err := rig.direct.Read(ctx, "t", doc); !errors.As(err, &se) || se.Code != store.CodeNotFound {
			t.Fatalf("%s after a refused batch: %v, want not_found", doc, err)
		}
	}
}
