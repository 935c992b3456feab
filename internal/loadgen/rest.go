package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/store"
)

// rest is the gateway's REST API as a client sees it.
type rest struct {
	http *http.Client
	key  []byte

	mu     sync.Mutex
	tokens map[[3]string]string
}

// token returns a cached token for (tenant, user), an operator token
// when operator is set.
func (r *rest) token(tenant, user string, operator bool) (string, error) {
	k := [3]string{tenant, user, strconv.FormatBool(operator)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.tokens[k]; ok {
		return t, nil
	}
	t, err := auth.Mint(r.key, auth.Claims{Tenant: tenant, User: user, Operator: operator, Expiry: time.Now().Add(24 * time.Hour).Unix()})
	if err != nil {
		return "", err
	}
	r.tokens[k] = t
	return t, nil
}

// apiError is a gateway answer other than 2xx, or a transport failure
// (Status 0, Code "network").
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	if e.Status == 0 {
		return "network: " + e.Message
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// retryable: the request may not have been applied (or was refused for
// its user's rate, 429) and may be sent again with the same idempotency
// key.
func (e *apiError) retryable() bool {
	return e.Status == 0 || e.Status == http.StatusServiceUnavailable || e.Status == http.StatusBadGateway || e.Status == http.StatusGatewayTimeout ||
		e.Status == http.StatusTooManyRequests
}

// errCode is the error's code for the progress line.
func errCode(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		if ae.Status == 0 {
			return "network"
		}
		return ae.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "other"
}

type call struct {
	method, url, token string
	hdr                map[string]string
	body               []byte
	ctype              string
}

// do sends c and decodes a 2xx JSON answer into out (if not nil).
func (r *rest) do(ctx context.Context, c call, out any) error {
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, bytes.NewReader(c.body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if c.body != nil {
		ct := c.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range c.hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &apiError{Code: "network", Message: err.Error()}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &apiError{Code: "network", Message: err.Error()}
	}
	if resp.StatusCode/100 != 2 {
		var e store.Error
		if json.Unmarshal(raw, &e) != nil || e.Code == "" {
			e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(raw))
		}
		return &apiError{Status: resp.StatusCode, Code: e.Code, Message: e.Message}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", c.method, c.url, err)
		}
	}
	return nil
}

func docURL(gw, doc string, rest ...string) string {
	u := strings.TrimRight(gw, "/") + contract.PathDocuments + "/" + url.PathEscape(doc)
	for _, p := range rest {
		u += "/" + p
	}
	return u
}

// saveAnswer is the legacy API's answer to a create or save.
type saveAnswer struct {
	store.Result
	PreservedAt string `json:"preserved_at"`
}

func (r *rest) create(ctx context.Context, gw, tenant, user, doc, content, key string) (saveAnswer, error) {
	tok, err := r.token(tenant, user, false)
	if err != nil {
		return saveAnswer{}, err
	}
	body, _ := json.Marshal(map[string]string{"id": doc, "title": doc, "content": content})
	var a saveAnswer
	err = r.do(ctx, call{method: http.MethodPost, url: strings.TrimRight(gw, "/") + contract.PathDocuments, token: tok,
		hdr: map[string]string{contract.HeaderIdempotencyKey: key}, body: body}, &a)
	return a, err
}

func (r *rest) read(ctx context.Context, gw, tenant, user, doc string) (store.Document, error) {
	tok, err := r.token(tenant, user, false)
	if err != nil {
		return store.Document{}, err
	}
	var d store.Document
	err = r.do(ctx, call{method: http.MethodGet, url: docURL(gw, doc), token: tok}, &d)
	return d, err
}

func (r *rest) save(ctx context.Context, gw, tenant, user, doc string, base int64, content, key string) (saveAnswer, error) {
	tok, err := r.token(tenant, user, false)
	if err != nil {
		return saveAnswer{}, err
	}
	body, _ := json.Marshal(map[string]string{"content": content})
	var a saveAnswer
	err = r.do(ctx, call{method: http.MethodPut, url: docURL(gw, doc), token: tok, body: body,
		hdr: map[string]string{contract.HeaderIdempotencyKey: key, "If-Match": strconv.Quote(strconv.FormatInt(base, 10))}}, &a)
	return a, err
}

func (r *rest) revision(ctx context.Context, gw, tenant, doc string, rev int64) (store.Revision, error) {
	tok, err := r.token(tenant, auditUser, false)
	if err != nil {
		return store.Revision{}, err
	}
	var out store.Revision
	err = r.do(ctx, call{method: http.MethodGet, url: docURL(gw, doc, "revisions", strconv.FormatInt(rev, 10)), token: tok}, &out)
	return out, err
}

func (r *rest) preserved(ctx context.Context, gw, tenant, doc string, id int64) (store.Preserved, error) {
	tok, err := r.token(tenant, auditUser, false)
	if err != nil {
		return store.Preserved{}, err
	}
	var out store.Preserved
	err = r.do(ctx, call{method: http.MethodGet, url: docURL(gw, doc, "preserved", strconv.FormatInt(id, 10)), token: tok}, &out)
	return out, err
}

func (r *rest) evidence(ctx context.Context, gw, tenant, doc string) (store.Evidence, error) {
	tok, err := r.token(tenant, auditUser, false)
	if err != nil {
		return store.Evidence{}, err
	}
	var out store.Evidence
	err = r.do(ctx, call{method: http.MethodGet, url: docURL(gw, doc, "evidence"), token: tok}, &out)
	return out, err
}

func (r *rest) verifyChain(ctx context.Context, gw, tenant, doc, receipt string) (store.VerifyReport, error) {
	tok, err := r.token(tenant, auditUser, true)
	if err != nil {
		return store.VerifyReport{}, err
	}
	u := docURL(gw, doc, "evidence", "verify")
	if receipt != "" {
		u += "?" + url.Values{"receipt": {receipt}}.Encode()
	}
	var out store.VerifyReport
	err = r.do(ctx, call{method: http.MethodGet, url: u, token: tok}, &out)
	return out, err
}

// syncAll is a sync step 1 with an empty state vector: the answer's update
// is the document's whole Yjs state.
func (r *rest) syncAll(ctx context.Context, gw, tenant, doc string) (store.Result, error) {
	tok, err := r.token(tenant, auditUser, false)
	if err != nil {
		return store.Result{}, err
	}
	var out store.Result
	err = r.do(ctx, call{method: http.MethodPost, url: docURL(gw, doc, "sync"), token: tok, body: []byte{0}, ctype: "application/octet-stream"}, &out)
	return out, err
}
