package syncer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"

	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/store"
)

const qTenant = "tenant"

// Client calls a syncer's internal API.
type Client struct {
	// BaseURL is the syncer's address, e.g. http://127.0.0.1:8081.
	BaseURL string
	Token   string
	HTTP    *http.Client
	// Log receives what went wrong on the way to the syncer (its address
	// included), which the error handed to clients leaves out; nil: none.
	Log *slog.Logger
	// Batch, when set, groups concurrent applies to one syncer under
	// load (see Batches); nil: every apply is a call of its own.
	Batch *Batches
}

// unreachable is the error for a call that did not get an answer: the
// client (a student's editor) is told to retry, not where the internal
// API lives; the cause goes to the log.
func (c *Client) unreachable(path, what string, err error) error {
	if c.Log != nil {
		c.Log.Warn("syncer call failed", "syncer", c.BaseURL, "path", path, "step", what, "err", err)
	}
	return &store.Error{Status: http.StatusServiceUnavailable, Code: store.CodeUnavailable,
		Message: "the document's syncer could not be reached (" + what + "); retry"}
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	status, statusText, raw, err := c.exchange(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	return c.answer(path, status, statusText, raw, out)
}

// exchange sends one call and reads its answer: an error means no usable
// answer (none, cut short, or over maxAnswer).
func (c *Client) exchange(ctx context.Context, method, path string, q url.Values, body any) (status int, statusText string, raw []byte, err error) {
	resp, err := c.call(ctx, method, path, q, body, "")
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	raw, err = c.readAnswer(path, resp.Body)
	if err != nil {
		return 0, "", nil, err
	}
	return resp.StatusCode, resp.Status, raw, nil
}

// call sends one call (asking for accept, if not "") and returns the
// response, whose body the caller closes.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, body any, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := c.BaseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up (its client disconnected, or a deadline):
			// not the syncer's failure.
			return nil, inDoubt(ctx.Err())
		}
		return nil, c.unreachable(path, "no answer", err)
	}
	return resp, nil
}

// readAnswer reads an answer's body whole, up to maxAnswer.
func (c *Client) readAnswer(path string, body io.Reader) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(body, maxAnswer+1))
	if err != nil {
		return nil, c.unreachable(path, "answer cut short", err)
	}
	if len(raw) > maxAnswer {
		// Not cut short silently: a truncated answer does not decode,
		// and would read as if nothing had been done.
		return nil, &store.Error{Status: http.StatusBadGateway, Code: store.CodeUnavailable,
			Message: fmt.Sprintf("the syncer's answer is over %d MiB (the document's Yjs history is too large to send at once); the request may have been applied", maxAnswer>>20)}
	}
	return raw, nil
}

// inDoubt is the error for a call its caller stopped waiting for: it may
// still be applied.
func inDoubt(cause error) error {
	return fmt.Errorf("%w: %w", &store.Error{Status: http.StatusServiceUnavailable, Code: store.CodeUnavailable,
		Message: "the request ended before the syncer answered"}, cause)
}

// answer decodes a syncer's answer into out, or the error it stands for.
func (c *Client) answer(path string, status int, statusText string, raw []byte, out any) error {
	if status != http.StatusOK {
		e := &store.Error{}
		if json.Unmarshal(raw, e) != nil || e.Code == "" {
			return &store.Error{Status: http.StatusBadGateway, Code: store.CodeUnavailable, Message: fmt.Sprintf("syncer answered %s", statusText)}
		}
		if status == http.StatusUnauthorized {
			// The internal API's only 401: this gateway's internal token
			// is not the syncer's. Pods derive it from the token key, so
			// while a rotated key rolls out, pods of either key refuse
			// each other. Nothing was done, and the client is not at
			// fault: unavailable, retry (and an unconfirmed save's trace
			// waits instead of being dropped as refused).
			return c.unreachable(path, "internal token refused; pods with different token keys, as while a rotated key rolls out", errors.New(e.Message))
		}
		e.Status = status
		return e
	}
	if err := json.Unmarshal(raw, out); err != nil {
		// The syncer answered 200: the request was applied, but its
		// answer cannot be read. In doubt, not refused.
		return &store.Error{Status: http.StatusBadGateway, Code: store.CodeUnavailable,
			Message: "the syncer's answer cannot be read (" + err.Error() + "); the request may have been applied"}
	}
	return nil
}

// maxAnswer bounds an answer of the syncer read into memory: a sync step 1
// answers with a document's whole Yjs history.
const maxAnswer = 256 << 20

// Apply submits a save request. With c.Batch set, applies to one syncer
// beyond Batches.MaxInFlight at once wait and go together in one call.
func (c *Client) Apply(ctx context.Context, r store.Request) (store.Result, error) {
	if c.Batch != nil && r.Kind != store.KindSync1 {
		return c.Batch.queue(c.BaseURL).apply(ctx, c, r)
	}
	return c.applyOne(ctx, r)
}

// applyOne submits one save request in a call of its own.
func (c *Client) applyOne(ctx context.Context, r store.Request) (store.Result, error) {
	var out store.Result
	err := c.do(ctx, http.MethodPost, PathApply, nil, r, &out)
	return out, err
}

// Read reads a tenant's document.
func (c *Client) Read(ctx context.Context, tenant, doc string) (store.Document, error) {
	var out store.Document
	err := c.do(ctx, http.MethodGet, PathDocuments+url.PathEscape(doc), url.Values{qTenant: {tenant}}, nil, &out)
	return out, err
}

// List lists a tenant's documents.
func (c *Client) List(ctx context.Context, tenant, after string, limit int) ([]store.Summary, error) {
	var out []store.Summary
	err := c.do(ctx, http.MethodGet, PathList, url.Values{qTenant: {tenant}, "after": {after}, "limit": {strconv.Itoa(limit)}}, nil, &out)
	return out, err
}

// Revision reads a revision of the save history.
func (c *Client) Revision(ctx context.Context, tenant, doc string, rev int64) (store.Revision, error) {
	var out store.Revision
	err := c.do(ctx, http.MethodGet, PathDocuments+url.PathEscape(doc)+"/revisions/"+strconv.FormatInt(rev, 10), url.Values{qTenant: {tenant}}, nil, &out)
	return out, err
}

// Preserved reads preserved content.
func (c *Client) Preserved(ctx context.Context, tenant, doc string, id int64) (store.Preserved, error) {
	var out store.Preserved
	err := c.do(ctx, http.MethodGet, PathDocuments+url.PathEscape(doc)+"/preserved/"+strconv.FormatInt(id, 10), url.Values{qTenant: {tenant}}, nil, &out)
	return out, err
}

// Evidence asks for a document's evidence; q holds tenant and the subject.
func (c *Client) Evidence(ctx context.Context, doc string, q url.Values) (store.Evidence, error) {
	var out store.Evidence
	err := c.do(ctx, http.MethodGet, PathDocuments+url.PathEscape(doc)+"/evidence", q, nil, &out)
	return out, err
}

// Verify checks a document's ledger chain and the receipts given against it.
func (c *Client) Verify(ctx context.Context, doc string, receipts []ledger.Receipt) (store.VerifyReport, error) {
	var out store.VerifyReport
	q := url.Values{}
	for _, rc := range receipts {
		q.Add("receipt", rc.String())
	}
	err := c.do(ctx, http.MethodGet, PathDocuments+url.PathEscape(doc)+"/verify", q, nil, &out)
	return out, err
}
