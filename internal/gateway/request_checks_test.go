package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// doWith is fixture.do with the request's headers given whole (a header
// may be given twice, as two lines).
func (f *fixture) doWith(method, path, tok string, body []byte, h http.Header) resp {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return f.send(req)
}

// wantError checks that r is the JSON error status/code whose message
// says each of says.
func wantError(t *testing.T, what string, r resp, status int, code string, says ...string) {
	t.Helper()
	if r.status != status || r.body["code"] != code {
		t.Errorf("%s: %d %s, want %d %s", what, r.status, r.raw, status, code)
		return
	}
	msg, _ := r.body["message"].(string)
	for _, s := range says {
		if !strings.Contains(msg, s) {
			t.Errorf("%s: the message %q does not say %q", what, msg, s)
		}
	}
}

// wantText checks that doc reads text at revision rev.
func (f *fixture) wantText(tok, doc, text string, rev float64) {
	f.t.Helper()
	r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, tok, nil)
	if r.status != http.StatusOK || r.body["content"] != text || r.body["revision"] != rev {
		f.t.Errorf("%s reads %d %s, want %q at revision %v", doc, r.status, r.raw, text, rev)
	}
}

// stalledAnswer sends head (a request's head and the start of its body)
// on a raw connection, then sends trickle's bytes one at a time every
// gap (none if empty), and returns the answer read within wait.
func (f *fixture) stalledAnswer(t *testing.T, head, trickle string, gap, wait time.Duration) (*http.Response, map[string]any, time.Duration) {
	t.Helper()
	conn, _ := f.rawConn(t)
	defer conn.Close()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for i := 0; i < len(trickle); i++ {
			select {
			case <-done:
				return
			case <-time.After(gap):
			}
			if _, err := conn.Write([]byte{trickle[i]}); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(start.Add(wait))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer within %s to a request whose body never finished: %v", wait, err)
	}
	defer res.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(res.Body).Decode(&body)
	return res, body, time.Since(start)
}

// TestASaveWhoseBodyStallsIsAnswered408: a save whose body stops coming
// (a slow-loris client, or a phone that lost its network mid-request) is
// answered 408 request_timeout once no byte came for BodyIdleTimeout,
// nothing applied, and the refusal is on the document's record. Before,
// the body was read with no deadline: the handler (and its connection)
// waited for as long as the client liked.
func TestASaveWhoseBodyStallsIsAnswered408(t *testing.T) {
	f := configuredFixture(t, nil, nil, func(c *Config) { c.BodyIdleTimeout, c.BodyTimeout = 300*time.Millisecond, time.Minute })
	tok := token(t, "school-a", "stu", time.Hour, false)
	f.create(tok, "essay-stalled", "abc")
	res, body, took := f.stalledAnswer(t, fmt.Sprintf("PUT %s/essay-stalled HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nX-Request-Id: stalled-save\r\nContent-Length: 1000\r\n\r\n{\"content\":\"abcdef", contract.PathDocuments, tok),
		"", 0, 10*time.Second)
	if res.StatusCode != http.StatusRequestTimeout || body["code"] != codeRequestTimeout {
		t.Fatalf("a save whose body stalled: %d %v after %s, want 408 %s", res.StatusCode, body, took.Round(time.Millisecond), codeRequestTimeout)
	}
	if msg, _ := body["message"].(string); !strings.Contains(msg, "no bytes of the request body arrived for 300ms") || !strings.Contains(msg, "nothing was applied") {
		t.Errorf("the message %q does not say what happened", msg)
	}
	f.wantText(tok, "essay-stalled", "abc", 1)
	r := f.do(http.MethodGet, contract.PathDocuments+"/essay-stalled/evidence?request=stalled-save", tok, nil)
	if proof, _ := r.body["proof"].(map[string]any); r.body["verdict"] != "rejected" || proof["summary"] != "refused: "+codeRequestTimeout {
		t.Errorf("evidence of the stalled save: %s", r.raw)
	}
}

// TestAYjsUpdateTrickledPastTheBodyTimeoutIsAnswered408: a body sent a
// byte at a time, never idle long, is answered 408 once BodyTimeout has
// passed since its head, nothing applied. Before, a trickle held the
// handler as long as the bytes kept coming.
func TestAYjsUpdateTrickledPastTheBodyTimeoutIsAnswered408(t *testing.T) {
	f := configuredFixture(t, nil, nil, func(c *Config) { c.BodyIdleTimeout, c.BodyTimeout = 2*time.Second, time.Second })
	tok := token(t, "school-a", "stu", time.Hour, false)
	f.create(tok, "essay-trickled", "abc")
	res, body, took := f.stalledAnswer(t, fmt.Sprintf("POST %s/essay-trickled/updates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n", contract.PathDocuments, tok),
		strings.Repeat("\x00", 200), 50*time.Millisecond, 10*time.Second)
	if res.StatusCode != http.StatusRequestTimeout || body["code"] != codeRequestTimeout {
		t.Fatalf("a trickled update: %d %v after %s, want 408 %s", res.StatusCode, body, took.Round(time.Millisecond), codeRequestTimeout)
	}
	if msg, _ := body["message"].(string); !strings.Contains(msg, "did not arrive within 1s") || !strings.Contains(msg, "nothing was applied") {
		t.Errorf("the message %q does not say what happened", msg)
	}
	f.wantText(tok, "essay-trickled", "abc", 1)
}

// TestAnEncodedBodyIsRefused415: a body with a Content-Encoding (gzip) was
// read as if it were not encoded: a gzipped save was refused as "not
// UTF-8", and a plain JSON body labelled gzip (by a misconfigured proxy,
// say) was saved. Both are now refused 415 unsupported_encoding, with
// Accept-Encoding: identity (RFC 9110 15.5.16), nothing applied;
// identity is accepted.
func TestAnEncodedBodyIsRefused415(t *testing.T) {
	f := setup(t)
	tok := token(t, "school-a", "stu", time.Hour, false)
	f.create(tok, "essay-zipped", "abc")
	plain := []byte(`{"content":"zipped"}`)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = zw.Write(plain)
	_ = zw.Close()
	for _, c := range []struct {
		what, method, path, encoding string
		body                         []byte
	}{
		{"a gzipped save", http.MethodPut, "/essay-zipped", "gzip", zipped.Bytes()},
		{"a plain save labelled gzip", http.MethodPut, "/essay-zipped", "gzip", plain},
		{"a save labelled br after identity", http.MethodPut, "/essay-zipped", "identity, br", plain},
		{"a create labelled gzip", http.MethodPost, "", "gzip", []byte(`{"id":"essay-zipped-2","content":"zipped"}`)},
		{"a gzipped Yjs update", http.MethodPost, "/essay-zipped/updates", "gzip", zipped.Bytes()},
		{"a gzipped sync step 1", http.MethodPost, "/essay-zipped/sync", "gzip", zipped.Bytes()},
	} {
		r := f.doWith(c.method, contract.PathDocuments+c.path, tok, c.body, http.Header{"Content-Encoding": {c.encoding}})
		wantError(t, c.what, r, http.StatusUnsupportedMediaType, codeUnsupportedEncoding, "Content-Encoding", "identity")
		if got := r.header.Get("Accept-Encoding"); r.status == http.StatusUnsupportedMediaType && got != "identity" {
			t.Errorf("%s: Accept-Encoding %q, want identity", c.what, got)
		}
	}
	f.wantText(tok, "essay-zipped", "abc", 1)
	if r := f.do(http.MethodGet, contract.PathDocuments+"/essay-zipped-2", tok, nil); r.status != http.StatusNotFound {
		t.Errorf("the refused create made the document: %d %s", r.status, r.raw)
	}
	r := f.doWith(http.MethodPut, contract.PathDocuments+"/essay-zipped", tok, plain, http.Header{"Content-Encoding": {"identity"}})
	if r.status != http.StatusOK {
		t.Errorf("a save with Content-Encoding: identity: %d %s", r.status, r.raw)
	}
	f.wantText(tok, "essay-zipped", "zipped", 2)
}

// TestListPagesPastADocumentMadeOverSyncUnderAWideID: sync accepts wider
// document IDs than REST (earlier versions created documents under them),
// and the list returns them. Its after cursor took only REST IDs, so a
// page ending on such a document could not be followed: 400, and the
// documents after it were unreachable. after now takes every ID sync
// takes.
func TestListPagesPastADocumentMadeOverSyncUnderAWideID(t *testing.T) {
	f := setupSync(t)
	tok := token(t, "school-w", "stu", time.Hour, false)
	f.create(tok, "a-essay", "first")
	wide := "b essay é%" // a space, a non-ASCII letter and a '%': sync IDs, not REST ones
	p := dialPeer(t, f.wsBase(0)+"/"+url.PathEscape(wide)+"?token="+tok, 801)
	p.handshake()
	p.send(yprotocol.EncodeUpdate(p.insert("typed over sync")))
	f.create(tok, "c-essay", "last")
	var page []string
	eventually(t, "the document typed over sync is listed", func() bool {
		r := f.do(http.MethodGet, contract.PathDocuments+"?limit=2", tok, nil)
		page = listed(r)
		return len(page) == 2 && page[1] == wide
	})
	r := f.do(http.MethodGet, contract.PathDocuments+"?limit=2&after="+url.QueryEscape(wide), tok, nil)
	if got := listed(r); r.status != http.StatusOK || len(got) != 1 || got[0] != "c-essay" {
		t.Fatalf("the page after %q: %d %s, want c-essay", wide, r.status, r.raw)
	}
	// What sync refuses is still refused.
	for _, bad := range []string{"a/b", "a\x01b", strings.Repeat("x", contract.MaxIDBytes+1)} {
		r := f.do(http.MethodGet, contract.PathDocuments+"?after="+url.QueryEscape(bad), tok, nil)
		wantError(t, fmt.Sprintf("after=%q", bad), r, http.StatusBadRequest, "invalid_request", "after")
	}
}

// listed is the IDs of a list response.
func listed(r resp) []string {
	docs, _ := r.body["documents"].([]any)
	var ids []string
	for _, d := range docs {
		m, _ := d.(map[string]any)
		id, _ := m["id"].(string)
		ids = append(ids, id)
	}
	return ids
}

// TestAHeaderGivenTwiceIsRefused: a save's If-Match or Idempotency-Key
// sent twice (two header lines, or a list of revisions) named two
// things, and the gateway silently used the first: the save went through
// on one base revision or key when the client may have meant the other.
// It is refused 400, nothing applied.
func TestAHeaderGivenTwiceIsRefused(t *testing.T) {
	f := setup(t)
	tok := token(t, "school-a", "stu", time.Hour, false)
	f.create(tok, "essay-twice", "abc")
	save := []byte(`{"content":"twice"}`)
	for _, c := range []struct {
		what string
		h    http.Header
		says string
	}{
		{"If-Match on two lines", http.Header{"If-Match": {`"1"`, `"2"`}}, "If-Match is given 2 times"},
		{"If-Match naming two revisions", http.Header{"If-Match": {`"1", "2"`}}, "If-Match names more than one revision"},
		{"Idempotency-Key on two lines", http.Header{"Idempotency-Key": {"k1", "k2"}}, "Idempotency-Key is given 2 times"},
	} {
		r := f.doWith(http.MethodPut, contract.PathDocuments+"/essay-twice", tok, save, c.h)
		wantError(t, c.what, r, http.StatusBadRequest, "invalid_request", c.says)
	}
	f.wantText(tok, "essay-twice", "abc", 1)
	r := f.doWith(http.MethodPost, contract.PathDocuments, tok, []byte(`{"id":"essay-twice-2","content":"x"}`), http.Header{"Idempotency-Key": {"k1", "k2"}})
	wantError(t, "a create with Idempotency-Key on two lines", r, http.StatusBadRequest, "invalid_request", "Idempotency-Key is given 2 times")
	r = f.doWith(http.MethodPost, contract.PathDocuments, tok, []byte(`{"content":"x"}`), http.Header{"Idempotency-Key": {"k1", "k2"}})
	wantError(t, "a create without id, Idempotency-Key on two lines", r, http.StatusBadRequest, "invalid_request", "Idempotency-Key is given 2 times")
	if r := f.do(http.MethodGet, contract.PathDocuments+"/essay-twice-2", tok, nil); r.status != http.StatusNotFound {
		t.Errorf("the refused create made the document: %d %s", r.status, r.raw)
	}
	if r := f.do(http.MethodGet, contract.PathDocuments, tok, nil); len(listed(r)) != 1 {
		t.Errorf("after the refused creates the tenant lists %s, want essay-twice alone", r.raw)
	}
}

// TestAPlainGETOfASyncURLIsAnswered426: a request without a WebSocket
// upgrade for the sync URL of a document of another shard is answered by
// the gateway it reached: 426 with Upgrade: websocket, as for its own
// shard's documents. Before, it was forwarded to the document's gateway:
// the 426 came back without its Upgrade header (a hop-by-hop header, which
// the forwarding drops), or, with that gateway down, as 502 "unreachable",
// which has nothing to do with the request.
func TestAPlainGETOfASyncURLIsAnswered426(t *testing.T) {
	check := func(what, base, doc string) {
		t.Helper()
		res, err := http.Get(base + contract.PathSync + doc)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusUpgradeRequired || res.Header.Get("Upgrade") != "websocket" {
			t.Errorf("%s: %s (Upgrade %q) %s, want 426 with Upgrade: websocket", what, res.Status, res.Header.Get("Upgrade"), raw)
		}
	}
	f := setupSync(t)
	check("a document of this gateway's shard", f.gws[0], docOnShard("essay-plain", 0))
	check("a document of another shard", f.gws[0], docOnShard("essay-plain", 1))

	srv := gatewayWithShardsDown(t)
	check("a document of another shard whose gateway is down", srv.URL, docOnShard("essay-plain", 1))
}

// TestEmptyAndBOMBodiesSayWhatIsWrong: an empty body was refused as
// "malformed JSON: EOF", and one starting with a UTF-8 byte order mark (a
// Windows editor's habit) as "malformed JSON: invalid character 'ï'
// looking for beginning of value". The messages now say what is wrong.
func TestEmptyAndBOMBodiesSayWhatIsWrong(t *testing.T) {
	f := setup(t)
	tok := token(t, "school-a", "stu", time.Hour, false)
	f.create(tok, "essay-bom", "abc")
	for _, c := range []struct {
		what, method, path, body string
		says                     []string
	}{
		{"an empty save", http.MethodPut, "/essay-bom", "", []string{"the body is empty", "JSON object"}},
		{"a save of only whitespace", http.MethodPut, "/essay-bom", " \r\n", []string{"the body is empty"}},
		{"an empty create", http.MethodPost, "", "", []string{"the body is empty"}},
		{"a save with a byte order mark", http.MethodPut, "/essay-bom", "\uFEFF{\"content\":\"bom\"}", []string{"byte order mark", "EF BB BF"}},
		{"a create with a byte order mark", http.MethodPost, "", "\uFEFF{\"id\":\"essay-bom-2\",\"content\":\"bom\"}", []string{"byte order mark"}},
	} {
		r := f.do(c.method, contract.PathDocuments+c.path, tok, c.body)
		wantError(t, c.what, r, http.StatusBadRequest, "invalid_json", c.says...)
	}
	f.wantText(tok, "essay-bom", "abc", 1)
}

// TestASyncAnsweredPastTheBodyTimeoutsIsAnswered: the body timeouts bound
// the body alone: a request whose body came in time is served however long
// its syncer takes (a deadline on the request's context instead would
// cancel the syncer's work).
func TestASyncAnsweredPastTheBodyTimeoutsIsAnswered(t *testing.T) {
	var slow atomic.Bool
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if slow.Load() && r.Method == http.MethodPost {
				time.Sleep(time.Second)
			}
			next.ServeHTTP(w, r)
		})
	}
	f := configuredFixture(t, wrap, nil, func(c *Config) { c.BodyIdleTimeout, c.BodyTimeout = 200*time.Millisecond, 400*time.Millisecond })
	tok := token(t, "school-a", "stu", time.Hour, false)
	f.create(tok, "essay-slow-sync", "abc")
	slow.Store(true)
	r := f.do(http.MethodPost, contract.PathDocuments+"/essay-slow-sync/sync", tok, []byte{0})
	empty := f.do(http.MethodPost, contract.PathDocuments+"/essay-slow-sync/sync", tok, []byte{})
	slow.Store(false)
	if r.status != http.StatusOK || r.body["outcome"] != "recorded" {
		t.Fatalf("a sync step 1 whose syncer took a second: %d %s", r.status, r.raw)
	}
	// A request without a body too (net/http reads behind it from the
	// start: a deadline set for its body would bound the request).
	if empty.status != http.StatusBadRequest || empty.body["code"] != "invalid_state_vector" {
		t.Fatalf("an empty sync step 1 whose syncer took a second: %d %s, want 400 invalid_state_vector", empty.status, empty.raw)
	}
	r = f.do(http.MethodPut, contract.PathDocuments+"/essay-slow-sync", tok, map[string]any{"content": "abcd"})
	if r.status != http.StatusOK {
		t.Fatalf("a save after it: %d %s", r.status, r.raw)
	}
	f.wantText(tok, "essay-slow-sync", "abcd", 2)
}
