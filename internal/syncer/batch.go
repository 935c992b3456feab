package syncer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/store"
)

// Apply batches: under load, a gateway's concurrent applies to one syncer
// travel together, one call for many saves and updates, instead of one
// HTTP exchange each. The exchange, not the save, was most of the
// gateway's CPU per Yjs update (make bench-gateway profiles: 40% in the
// HTTP client for single applies), and a third of the syncer's. The
// syncer queues a batch's requests on their lanes at once, so they share
// group commits as concurrent calls did; each request keeps its own
// answer or refusal, and nothing about a request changes by travelling
// in a batch.
//
// Below Batches.MaxInFlight calls in flight to a syncer, an apply is a
// call of its own, at once: a lone save never waits for company.

// PathApplyBatch answers POST ApplyBatch with ApplyBatchAnswer.
const PathApplyBatch = contract.PathInternal + "apply-batch"

// MaxApplyBatch bounds the requests of one batch (the syncer refuses
// more).
const MaxApplyBatch = 64

// maxBatchBytes bounds the Yjs update and content bytes a gateway puts in
// one batch; a request over it alone goes in a call of its own.
const maxBatchBytes = 1 << 20

// ApplyBatch is the body of an apply batch: requests as the apply
// endpoint takes them.
type ApplyBatch struct {
	Requests []json.RawMessage `json:"requests"`
}

// ApplyBatchAnswer answers an apply batch: Results[i] answers
// Requests[i], with exactly one of Result and Error.
type ApplyBatchAnswer struct {
	Results []BatchResult `json:"results"`
}

// BatchResult is one request's answer in a batch.
type BatchResult struct {
	Result *store.Result `json:"result,omitempty"`
	Error  *BatchError   `json:"error,omitempty"`
}

// BatchStreamType is the answer's content type when the gateway asks for
// it (Accept): one BatchLine per request, each written as soon as that
// request is answered, in the order they are answered. In one JSON
// answer, a request waiting for a row lock (up to the lanes'
// lock_timeout) held back the answers of the batch's others, committed
// in other groups long before. A syncer of an earlier version answers
// ApplyBatchAnswer whatever the Accept header says.
const BatchStreamType = "application/x-ndjson"

// BatchLine is one line of a streamed batch answer: the answer to
// Requests[Index].
type BatchLine struct {
	Index int `json:"index"`
	BatchResult
}

// BatchError is a refusal in a batch: what the apply endpoint would have
// answered, its HTTP status included.
type BatchError struct {
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorOf is the refusal err stands for, with its HTTP status.
func errorOf(err error) *store.Error {
	e := store.AsError(err)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		e = &store.Error{Status: http.StatusRequestEntityTooLarge, Code: store.CodeTooLarge, Message: "request body too large"}
	}
	if e.Status == 0 {
		e = &store.Error{Status: http.StatusInternalServerError, Code: e.Code, Message: e.Message}
	}
	return e
}

// serveApplyBatch is the syncer's apply-batch endpoint. A request that
// does not decode is refused alone (invalid_request), as the apply
// endpoint would refuse it; the others are applied.
func serveApplyBatch(eng *store.Engine) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var in ApplyBatch
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 2*contract.MaxUpdateBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			WriteError(w, &store.Error{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest, Message: "bad request body: " + err.Error()})
			return
		}
		if len(in.Requests) == 0 || len(in.Requests) > MaxApplyBatch {
			WriteError(w, &store.Error{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest,
				Message: fmt.Sprintf("a batch holds 1 to %d requests, not %d", MaxApplyBatch, len(in.Requests))})
			return
		}
		out := ApplyBatchAnswer{Results: make([]BatchResult, len(in.Requests))}
		reqs, at := make([]store.Request, 0, len(in.Requests)), make([]int, 0, len(in.Requests))
		var undecodable []int
		for i, raw := range in.Requests {
			var req store.Request
			d := json.NewDecoder(bytes.NewReader(raw))
			d.DisallowUnknownFields()
			if err := d.Decode(&req); err != nil {
				out.Results[i].Error = &BatchError{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest, Message: "bad request body: " + err.Error()}
				undecodable = append(undecodable, i)
				continue
			}
			reqs, at = append(reqs, req), append(at, i)
		}
		answer := func(j int, res store.Result, err error) {
			requestDuration.WithLabelValues(requestKind(reqs[j].Kind)).Observe(time.Since(start).Seconds())
			i := at[j]
			if err != nil {
				e := errorOf(err)
				out.Results[i].Error = &BatchError{Status: e.Status, Code: e.Code, Message: e.Message}
				return
			}
			out.Results[i].Result = &res
		}
		if !acceptsStream(r) {
			eng.SubmitEach(r.Context(), reqs, func(j int, res store.Result, err error, _ bool) { answer(j, res, err) })
			WriteJSON(w, http.StatusOK, out)
			return
		}
		w.Header().Set("Content-Type", BatchStreamType)
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		enc := json.NewEncoder(w)
		// A gateway gone mid-answer stops the writing, not the requests:
		// SubmitEach answers each of them still, as it commits or fails.
		var gone error
		write := func(i int, more bool) {
			if gone == nil {
				gone = enc.Encode(BatchLine{Index: i, BatchResult: out.Results[i]})
			}
			if gone == nil && !more {
				gone = rc.Flush()
			}
		}
		for k, i := range undecodable {
			write(i, k < len(undecodable)-1 || len(reqs) > 0)
		}
		eng.SubmitEach(r.Context(), reqs, func(j int, res store.Result, err error, more bool) {
			answer(j, res, err)
			write(at[j], more)
		})
	}
}

// acceptsStream reports whether r asks for a streamed batch answer.
func acceptsStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			if mt, _, _ := strings.Cut(strings.TrimSpace(part), ";"); strings.EqualFold(mt, BatchStreamType) {
				return true
			}
		}
	}
	return false
}

// Batches groups a gateway's concurrent applies, per syncer. The zero
// value is ready to use; share one among the gateway's Clients.
type Batches struct {
	// MaxInFlight is how many calls to one syncer may be in flight before
	// further applies wait and go together in the next call (0: 4).
	MaxInFlight int

	// Calls and Batched count the calls that carried more than one
	// request, and the requests they carried.
	Calls, Batched atomic.Int64

	mu     sync.Mutex
	queues map[string]*applyQueue
}

func (b *Batches) queue(base string) *applyQueue {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[base]
	if q == nil {
		if b.queues == nil {
			b.queues = map[string]*applyQueue{}
		}
		max := b.MaxInFlight
		if max <= 0 {
			max = 4
		}
		q = &applyQueue{b: b, max: max}
		b.queues[base] = q
	}
	return q
}

// applyQueue holds the applies to one syncer waiting for a call.
type applyQueue struct {
	b   *Batches
	max int

	mu       sync.Mutex
	inFlight int
	waiting  []*pendingApply
	// singly: until then the syncer is taken not to know apply batches
	// (a syncer of an earlier version, during a rolling upgrade).
	singly time.Time
}

type pendingApply struct {
	ctx  context.Context
	req  store.Request
	size int
	sent bool // under applyQueue.mu: taken into a call
	done chan struct{}
	res  store.Result
	err  error
}

// sizeOf estimates what a request adds to a batch's body: bytes in
// base64, text escaped, and room for the other fields.
func sizeOf(r store.Request) int {
	n := (len(r.Update)+len(r.StateVector))*4/3 + 2*(len(r.Content)+len(r.Reason)) + 512
	if r.Title != nil {
		n += 2 * len(*r.Title)
	}
	return n
}

func (q *applyQueue) apply(ctx context.Context, c *Client, r store.Request) (store.Result, error) {
	q.mu.Lock()
	if q.inFlight < q.max {
		q.inFlight++
		q.mu.Unlock()
		res, err := c.applyOne(ctx, r)
		q.release(c)
		return res, err
	}
	p := &pendingApply{ctx: ctx, req: r, size: sizeOf(r), done: make(chan struct{})}
	q.waiting = append(q.waiting, p)
	q.mu.Unlock()
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
	}
	q.mu.Lock()
	sent := p.sent
	if !sent {
		if i := slices.Index(q.waiting, p); i >= 0 {
			// slices.Delete clears the vacated slot: the queue keeps no
			// reference to a request given up.
			q.waiting = slices.Delete(q.waiting, i, i+1)
		}
	}
	q.mu.Unlock()
	if !sent {
		// Never sent: nothing was done.
		return store.Result{}, ctx.Err()
	}
	select {
	case <-p.done:
		return p.res, p.err
	default:
		return store.Result{}, inDoubt(ctx.Err())
	}
}

// release gives back a call slot, or keeps it for the applies waiting.
func (q *applyQueue) release(c *Client) {
	q.mu.Lock()
	if len(q.waiting) == 0 {
		q.inFlight--
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	go q.drain(c)
}

// drain sends what waits, call after call, then gives back its slot.
func (q *applyQueue) drain(c *Client) {
	for {
		q.mu.Lock()
		n, size := 0, 0
		for n < len(q.waiting) && n < MaxApplyBatch && (n == 0 || size+q.waiting[n].size <= maxBatchBytes) {
			size += q.waiting[n].size
			n++
		}
		if n == 0 {
			q.inFlight--
			q.mu.Unlock()
			return
		}
		batch := make([]*pendingApply, n)
		copy(batch, q.waiting)
		// The slots vacated are cleared: an answered apply (its update
		// up to MaxUpdateBytes) must not stay reachable from the queue.
		rest := copy(q.waiting, q.waiting[n:])
		clear(q.waiting[rest:])
		q.waiting = q.waiting[:rest]
		for _, p := range batch {
			p.sent = true
		}
		singly := time.Now().Before(q.singly)
		q.mu.Unlock()
		switch {
		case len(batch) == 1:
			p := batch[0]
			p.res, p.err = c.applyOne(p.ctx, p.req)
			close(p.done)
		case singly:
			q.sendSingly(c, batch)
		default:
			q.send(c, batch)
		}
	}
}

// sendSingly sends each request in a call of its own, at once.
func (q *applyQueue) sendSingly(c *Client, batch []*pendingApply) {
	var wg sync.WaitGroup
	for _, p := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.res, p.err = c.applyOne(p.ctx, p.req)
			close(p.done)
		}()
	}
	wg.Wait()
}

// send makes one call for the batch and hands each request its answer.
func (q *applyQueue) send(c *Client, batch []*pendingApply) {
	body := ApplyBatch{Requests: make([]json.RawMessage, 0, len(batch))}
	kept := batch[:0:0]
	for _, p := range batch {
		raw, err := json.Marshal(p.req)
		if err != nil {
			p.err = &store.Error{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest, Message: "request cannot be encoded: " + err.Error()}
			close(p.done)
			continue
		}
		body.Requests, kept = append(body.Requests, raw), append(kept, p)
	}
	if batch = kept; len(batch) == 0 {
		return
	}
	// Not one waiter's context: the call carries the others too. The
	// HTTP client's timeout bounds it, and so do its waiters: once every
	// one of them has given up (each told its apply is in doubt), nobody
	// waits for the answer, and the call no longer holds its slot (an
	// HTTP client without a timeout would hold it forever).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waiting atomic.Int64
	waiting.Store(int64(len(batch)))
	for _, p := range batch {
		stop := context.AfterFunc(p.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	resp, err := c.call(ctx, http.MethodPost, PathApplyBatch, nil, body, BatchStreamType+", application/json")
	if err == nil {
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK && isStream(resp) {
			q.b.Calls.Add(1)
			q.b.Batched.Add(int64(len(batch)))
			q.readStream(c, resp.Body, batch)
			return
		}
	}
	var status int
	var statusText string
	var raw []byte
	if err == nil {
		status, statusText = resp.StatusCode, resp.Status
		raw, err = c.readAnswer(PathApplyBatch, resp.Body)
	}
	if err == nil && (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) && !isStoreError(raw) {
		// A syncer that does not know the endpoint (the mux's own
		// answer, not a refusal of ours): send singly, and keep doing
		// so for a while.
		if c.Log != nil {
			c.Log.Info("syncer does not take apply batches; sending applies singly", "syncer", c.BaseURL, "for", singlyFor)
		}
		q.mu.Lock()
		q.singly = time.Now().Add(singlyFor)
		q.mu.Unlock()
		q.sendSingly(c, batch)
		return
	}
	q.b.Calls.Add(1)
	q.b.Batched.Add(int64(len(batch)))
	var ans ApplyBatchAnswer
	if err == nil {
		err = c.answer(PathApplyBatch, status, statusText, raw, &ans)
	}
	if err == nil && len(ans.Results) != len(batch) {
		err = &store.Error{Status: http.StatusBadGateway, Code: store.CodeUnavailable,
			Message: fmt.Sprintf("the syncer answered %d of %d requests; they may have been applied", len(ans.Results), len(batch))}
	}
	for i, p := range batch {
		switch {
		case err != nil:
			p.err = err
		default:
			p.res, p.err = ans.Results[i].answer()
		}
		close(p.done)
	}
}

// answer is what a batch result says: a result, or the refusal.
func (r BatchResult) answer() (store.Result, error) {
	switch {
	case r.Error != nil:
		return store.Result{}, &store.Error{Status: r.Error.Status, Code: r.Error.Code, Message: r.Error.Message}
	case r.Result != nil:
		return *r.Result, nil
	}
	return store.Result{}, &store.Error{Status: http.StatusBadGateway, Code: store.CodeUnavailable,
		Message: "the syncer's answer to a request is empty; it may have been applied"}
}

func isStream(resp *http.Response) bool {
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(mt), BatchStreamType)
}

// readStream hands each request its answer as its line arrives. A
// request the stream ends without answering (the syncer stopped, the
// connection broke, or a line does not read) may have been applied: it is
// in doubt, as a call cut short is.
func (q *applyQueue) readStream(c *Client, body io.Reader, batch []*pendingApply) {
	answered := make([]bool, len(batch))
	left := len(batch)
	dec := json.NewDecoder(io.LimitReader(body, maxAnswer))
	var cut error
	for left > 0 {
		var line BatchLine
		if err := dec.Decode(&line); err != nil {
			cut = err
			break
		}
		if line.Index < 0 || line.Index >= len(batch) || answered[line.Index] {
			cut = fmt.Errorf("answer for request %d of %d, or twice", line.Index, len(batch))
			break
		}
		p := batch[line.Index]
		p.res, p.err = line.answer()
		answered[line.Index] = true
		left--
		close(p.done)
	}
	if left == 0 {
		return
	}
	if errors.Is(cut, io.EOF) {
		cut = io.ErrUnexpectedEOF
	}
	err := c.unreachable(PathApplyBatch, fmt.Sprintf("answer cut short after %d of %d requests; the others may have been applied", len(batch)-left, len(batch)), cut)
	for i, p := range batch {
		if !answered[i] {
			p.err = err
			close(p.done)
		}
	}
}

// singlyFor is how long a syncer that refused the batch endpoint gets
// single calls before it is tried again.
const singlyFor = time.Minute

func isStoreError(raw []byte) bool {
	var e store.Error
	return json.Unmarshal(raw, &e) == nil && e.Code != ""
}
