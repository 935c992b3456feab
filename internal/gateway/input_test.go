package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestIdempotencyKeysNameOneRequest: keys that are not printable ASCII
// or are over 128 bytes are refused, on saves and creates alike, and the
// refusal is recorded; two different such keys can never collapse into
// one and answer a second save with the first's replay.
func TestIdempotencyKeysNameOneRequest(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	if r := f.do("POST", "/v1/documents", alice, map[string]any{"id": "doc1", "content": "v1"}); r.status != http.StatusCreated {
		t.Fatal(r.raw)
	}
	for _, key := range []string{"k\xe9", "k\xe8", "caf\u00e9", "tab\there", strings.Repeat("k", 129)} {
		r := f.do("PUT", "/v1/documents/doc1", alice, map[string]any{"content": "v2 " + key}, "Idempotency-Key", key)
		if r.status != http.StatusBadRequest || r.body["code"] != "invalid_request" {
			t.Errorf("save with key %q: %d %s", key, r.status, r.raw)
		}
	}
	if got := f.do("GET", "/v1/documents/doc1", alice, nil); got.body["content"] != "v1" {
		t.Errorf("refused saves changed the document: %s", got.raw)
	}
	r := f.do("POST", "/v1/documents", alice, map[string]any{"id": "doc2", "content": "v1"}, "Idempotency-Key", strings.Repeat("k", 200))
	if r.status != http.StatusBadRequest {
		t.Fatalf("create with a 200-byte key: %d %s", r.status, r.raw)
	}
	if ev := f.do("GET", "/v1/documents/doc2/evidence", alice, nil); ev.body["verdict"] != "rejected" {
		t.Errorf("the refused create left verdict %v: %s", ev.body["verdict"], ev.raw)
	}
}

// TestBodyMustBeUTF8: a body with bytes that are not UTF-8 (a Latin-1
// "é") is refused; encoding/json would have saved U+FFFD in its place.
func TestBodyMustBeUTF8(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	r := f.do("POST", "/v1/documents", alice, []byte("{\"id\": \"doc1\", \"content\": \"caf\xe9\"}"))
	if r.status != http.StatusBadRequest || r.body["code"] != "invalid_json" {
		t.Fatalf("create with a Latin-1 byte: %d %s", r.status, r.raw)
	}
	if got := f.do("GET", "/v1/documents/doc1", alice, nil); got.status != http.StatusNotFound {
		t.Errorf("the refused create made a document: %s", got.raw)
	}
	if r := f.do("POST", "/v1/documents", alice, map[string]any{"id": "doc1", "content": "caf\u00e9"}); r.status != http.StatusCreated {
		t.Fatalf("create with UTF-8 text: %d %s", r.status, r.raw)
	}
	r = f.do("PUT", "/v1/documents/doc1", alice, []byte("{\"content\": \"caf\xe8\"}"))
	if r.status != http.StatusBadRequest || r.body["code"] != "invalid_json" {
		t.Errorf("save with a Latin-1 byte: %d %s", r.status, r.raw)
	}
	if got := f.do("GET", "/v1/documents/doc1", alice, nil); got.body["content"] != "caf\u00e9" {
		t.Errorf("document: %s", got.raw)
	}
}

// TestNulContentOverHTTP: U+0000 in a save's content is a recorded 400,
// not "unavailable, retry".
func TestNulContentOverHTTP(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	if r := f.do("POST", "/v1/documents", alice, map[string]any{"id": "doc1", "content": "safe"}); r.status != http.StatusCreated {
		t.Fatal(r.raw)
	}
	r := f.do("PUT", "/v1/documents/doc1", alice, `{"content": "a\u0000b"}`, "Idempotency-Key", "nul-1")
	if r.status != http.StatusBadRequest || r.body["code"] != "invalid_request" {
		t.Errorf("save with U+0000: %d %s", r.status, r.raw)
	}
	if ev := f.do("GET", "/v1/documents/doc1/evidence?request=nul-1", alice, nil); ev.body["verdict"] != "rejected" {
		t.Errorf("evidence of the refused save: %s", ev.raw)
	}
}

// TestBearerSchemeIsCaseInsensitive: "bearer", "BEARER" and "Bearer" are
// the same scheme (RFC 9110); the token itself is compared exactly.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	f := setup(t)
	tok := token(t, "school-a", "alice", time.Hour, false)
	for scheme, want := range map[string]int{"Bearer": http.StatusOK, "bearer": http.StatusOK, "BEARER": http.StatusOK, "Basic": http.StatusUnauthorized} {
		if r := f.do(http.MethodGet, "/v1/documents", "", nil, "Authorization", scheme+" "+tok); r.status != want {
			t.Errorf("%s: %d, want %d", scheme, r.status, want)
		}
	}
}

// TestListLimit: a limit that is not a number from 1 to 1000 is refused,
// not silently replaced; a valid one pages.
func TestListLimit(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	for _, id := range []string{"a1", "a2", "a3"} {
		if r := f.do("POST", "/v1/documents", alice, map[string]any{"id": id, "content": "x"}); r.status != http.StatusCreated {
			t.Fatal(r.raw)
		}
	}
	// An after the database cannot compare (NUL, bytes that are not
	// UTF-8) or that is no document ID is the client's error, not
	// "unavailable, retry" (a client following docs/api.md would retry
	// forever); so is a parameter given twice or given empty.
	for _, bad := range []string{"limit=abc", "limit=0", "limit=-1", "limit=1001", "limit=", "limit=1&limit=abc",
		"after=%00", "after=%FF", "after=a%00b", "after=", "after=a1&after=a2", "after=" + strings.Repeat("a", 129)} {
		if r := f.do("GET", "/v1/documents?"+bad, alice, nil); r.status != http.StatusBadRequest || r.body["code"] != "invalid_request" {
			t.Errorf("%s: %d %s", bad, r.status, r.raw)
		}
	}
	r := f.do("GET", "/v1/documents?limit=2", alice, nil)
	if docs, _ := r.body["documents"].([]any); r.status != http.StatusOK || len(docs) != 2 {
		t.Errorf("limit=2: %d %s", r.status, r.raw)
	}
	r = f.do("GET", "/v1/documents?limit=2&after=a2", alice, nil)
	if docs, _ := r.body["documents"].([]any); r.status != http.StatusOK || len(docs) != 1 {
		t.Errorf("after=a2: %d %s", r.status, r.raw)
	}
}

// TestJSONBodiesAreExact: docs/api.md refuses trailing data (400
// invalid_json) and unknown fields (400 invalid_request). encoding/json
// alone lets a stray '}' or ']' after the object through, matches field
// names in any case, and keeps the last of two: a body naming content
// twice would save whichever came last. Nothing is saved for any of them.
func TestJSONBodiesAreExact(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	for i, body := range []string{`{"id":"t%d","content":"x"}}`, `{"id":"t%d","content":"x"}]`, `{"id":"t%d","content":"x"} ]`, `{"id":"t%d","content":"x"} {}`} {
		body = fmt.Sprintf(body, i)
		if r := f.do("POST", "/v1/documents", alice, body); r.status != http.StatusBadRequest || r.body["code"] != "invalid_json" {
			t.Errorf("create with trailing data %s: %d %.120s", body, r.status, r.raw)
		}
		if r := f.do("GET", fmt.Sprintf("/v1/documents/t%d", i), alice, nil); r.status != http.StatusNotFound {
			t.Errorf("create with trailing data %s made a document: %d", body, r.status)
		}
	}
	if r := f.do("POST", "/v1/documents", alice, map[string]any{"id": "doc", "content": "v1"}); r.status != http.StatusCreated {
		t.Fatal(r.raw)
	}
	for body, code := range map[string]string{
		`{"content":"v2"}}`:                        "invalid_json",
		`{"CONTENT":"v3"}`:                         "invalid_request",
		`{"content":"v3","Title":"x"}`:             "invalid_request",
		`{"content":"v3","Content":"v4"}`:          "invalid_request",
		`{"content":"v3","content":"v4"}`:          "invalid_request",
		`{"content":"v3","title":"a","title":"b"}`: "invalid_request",
	} {
		if r := f.do("PUT", "/v1/documents/doc", alice, body); r.status != http.StatusBadRequest || r.body["code"] != code {
			t.Errorf("save %s: %d %.120s, want 400 %s", body, r.status, r.raw, code)
		}
	}
	r := f.do("GET", "/v1/documents/doc", alice, nil)
	if r.body["content"] != "v1" || r.body["revision"] != float64(1) {
		t.Errorf("after refused saves the document is %v at revision %v, want v1 at 1", r.body["content"], r.body["revision"])
	}
	// Whitespace around the object is not trailing data.
	if r := f.do("PUT", "/v1/documents/doc", alice, " {\"content\":\"v2\"} \n"); r.status != http.StatusOK {
		t.Errorf("save with whitespace around the object: %d %.120s", r.status, r.raw)
	}
}

// TestUnauthorizedCarriesABearerChallenge: a 401 names the scheme it wants
// (RFC 9110 11.6.1, RFC 6750 3), and says invalid_token when the token
// was refused, so that a client library knows to fetch a new one.
func TestUnauthorizedCarriesABearerChallenge(t *testing.T) {
	f := setup(t)
	expired := token(t, "school-a", "alice", -time.Hour, false)
	for name, tc := range map[string]struct{ method, path, tok, want string }{
		"missing":         {"GET", "/v1/documents", "", `Bearer realm="yawp"`},
		"expired":         {"GET", "/v1/documents", expired, `Bearer realm="yawp", error="invalid_token"`},
		"garbage":         {"GET", "/v1/documents/d1", "yawp1.x.y", `Bearer realm="yawp", error="invalid_token"`},
		"garbage, create": {"POST", "/v1/documents", "yawp1.x.y", `Bearer realm="yawp", error="invalid_token"`},
		// Another scheme presents no bearer token: the bare challenge.
		"basic": {"GET", "/v1/documents", "basic", `Bearer realm="yawp"`},
	} {
		var hdr []string
		if tc.tok == "basic" {
			tc.tok, hdr = "", []string{"Authorization", "Basic YWxpY2U6c2VjcmV0"}
		}
		r := f.do(tc.method, tc.path, tc.tok, map[string]any{"content": "x"}, hdr...)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("%s: %d", name, r.status)
		}
		if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, tc.want) || (!strings.Contains(tc.want, "error") && h != tc.want) {
			t.Errorf("%s token: WWW-Authenticate %q, want it to start %q", name, h, tc.want)
		}
	}
	ok := f.do("GET", "/v1/documents", token(t, "school-a", "alice", time.Hour, false), nil)
	if h := ok.header.Get("WWW-Authenticate"); ok.status != http.StatusOK || h != "" {
		t.Errorf("an accepted token: %d with WWW-Authenticate %q", ok.status, h)
	}
}

// TestIfMatchIsOneRevision: If-Match is "N", N or W/"N" (docs/api.md);
// stray or doubled quotes are not read as a revision.
func TestIfMatchIsOneRevision(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	r := f.do("POST", "/v1/documents", alice, map[string]any{"id": "doc", "content": "v1"})
	if r.status != http.StatusCreated || r.header.Get("Location") != "/v1/documents/doc" {
		t.Fatalf("create: %d, Location %q, want 201 and /v1/documents/doc", r.status, r.header.Get("Location"))
	}
	for _, im := range []string{`"1`, `1"`, `""1""`, `W/"1`, `"1 "`} {
		if r := f.do("PUT", "/v1/documents/doc", alice, map[string]any{"content": "v2"}, "If-Match", im); r.status != http.StatusBadRequest {
			t.Errorf("If-Match %s: %d %.120s, want 400", im, r.status, r.raw)
		}
	}
	// A positive number past int64 is a revision higher than the latest.
	if r := f.do("PUT", "/v1/documents/doc", alice, map[string]any{"content": "v2"}, "If-Match", `"99999999999999999999"`); r.status != http.StatusPreconditionFailed || r.body["code"] != "unknown_revision" {
		t.Errorf("If-Match past int64: %d %.120s, want 412 unknown_revision", r.status, r.raw)
	}
	for i, im := range []string{`"1"`, `2`, `W/"3"`} {
		if r := f.do("PUT", "/v1/documents/doc", alice, map[string]any{"content": fmt.Sprint("v", i+2)}, "If-Match", im); r.status != http.StatusOK {
			t.Errorf("If-Match %s: %d %.120s, want 200", im, r.status, r.raw)
		}
	}
}

// TestCutOffBodyIsNotTooLarge: an update whose body ends before its
// Content-Length (the client went away) is refused as a bad request, not
// reported as too large.
func TestCutOffBodyIsNotTooLarge(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	if r := f.do("POST", "/v1/documents", alice, map[string]any{"id": "doc1", "content": "x"}); r.status != http.StatusCreated {
		t.Fatal(r.raw)
	}
	conn, host := f.rawConn(t)
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/documents/doc1/updates HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: 100\r\n\r\n0123456789", host, alice)
	_ = conn.(*net.TCPConn).CloseWrite()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "invalid_request") {
		t.Errorf("cut-off body: %d %s", res.StatusCode, body)
	}
	// The refusal is on record although the client is gone (recording it
	// under the request's context failed: the context ended with the
	// connection).
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := f.do("GET", "/v1/documents/doc1/evidence", alice, nil)
		if strings.Contains(ev.raw, `"kind":"rejected"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refusal of a cut-off body is not on record: %.400s", ev.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBodyOfAnotherJSONTypeNamesNoGoType: a body or field of the wrong
// JSON type is refused in JSON's words (the message named the gateway's Go
// type: "field \"\" must be a gateway.createBody").
func TestBodyOfAnotherJSONTypeNamesNoGoType(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	for body, want := range map[string]string{
		`[1]`:                       "the body must be a JSON object, not an array",
		`"text"`:                    "the body must be a JSON object, not a string",
		`{"id":"d","content":5}`:    `field "content" must be a string, not a number`,
		`{"id":"d","title":[]}`:     `field "title" must be a string, not an array`,
		`{"id":"d","content":true}`: `field "content" must be a string, not a bool`,
	} {
		r := f.do("POST", "/v1/documents", alice, body)
		if r.status != http.StatusBadRequest || r.body["code"] != "invalid_request" || r.body["message"] != want {
			t.Errorf("create %s: %d %.200s, want 400 invalid_request %q", body, r.status, r.raw, want)
		}
	}
}

// TestSlowBodyWithoutCredentialsIsCutShort: a create without a token has
// its body read only to name the document its refusal goes on record
// for, and a body that stalls gets a few seconds (it was read with no
// deadline: 200 stalled bodies held 227 MiB of the gateway's heap, their
// connections open for as long as the sender liked). Found by the
// security review.
func TestSlowBodyWithoutCredentialsIsCutShort(t *testing.T) {
	f := setup(t)
	conn, host := f.rawConn(t)
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/documents HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"id\":\"slow\",\"content\":\"", host)
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(unauthBodyWait + 10*time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body without credentials after %s: %v", time.Since(start).Round(time.Second), err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized || time.Since(start) > unauthBodyWait+3*time.Second {
		t.Errorf("a stalled body without credentials: %d after %s", res.StatusCode, time.Since(start).Round(100*time.Millisecond))
	}
}

// rawConn opens a TCP connection to the gateway, for requests net/http
// would not send (bodies cut off or stalled), and returns its host.
func (f *fixture) rawConn(t *testing.T) (net.Conn, string) {
	t.Helper()
	u, err := url.Parse(f.url)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	return conn, u.Host
}
