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
	for _, bad := range []string{"abc", "0", "-1", "1001"} {
		if r := f.do("GET", "/v1/documents?limit="+bad, alice, nil); r.status != http.StatusBadRequest || r.body["code"] != "invalid_request" {
			t.Errorf("limit=%s: %d %s", bad, r.status, r.raw)
		}
	}
	r := f.do("GET", "/v1/documents?limit=2", alice, nil)
	if docs, _ := r.body["documents"].([]any); r.status != http.StatusOK || len(docs) != 2 {
		t.Errorf("limit=2: %d %s", r.status, r.raw)
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
	u, err := url.Parse(f.url)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/documents/doc1/updates HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: 100\r\n\r\n0123456789", u.Host, alice)
	_ = conn.(*net.TCPConn).CloseWrite()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "invalid_request") {
		t.Errorf("cut-off body: %d %s", res.StatusCode, body)
	}
}
