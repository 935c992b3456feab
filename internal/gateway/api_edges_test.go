package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestCreateRefusedForItsShapeIsRecorded: a create whose body decodes and names a valid id,
// but is refused for its shape (a misspelled field, a field given twice, a
// field of the wrong type), leaves no ledger entry. docs/api.md ("Recorded
// refusals": "refused creates whose body names a valid id" are recorded)
// and I6 require one; the same refusals on PUT are recorded.
func TestCreateRefusedForItsShapeIsRecorded(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	for doc, body := range map[string]string{
		"typo": `{"id":"typo","content":"my essay","titel":"Essay"}`,
		"dup":  `{"id":"dup","content":"a","content":"b"}`,
		"wt":   `{"id":"wt","content":5}`,
	} {
		r := f.do("POST", "/v1/documents", alice, body, "Idempotency-Key", "create-"+doc)
		if r.status != http.StatusBadRequest || r.body["code"] != "invalid_request" {
			t.Fatalf("create %s: %d %s", body, r.status, r.raw)
		}
		if ev := f.do("GET", "/v1/documents/"+doc+"/evidence", alice, nil); ev.body["verdict"] != "rejected" {
			t.Errorf("refused create %s left no trace: verdict %v, want rejected", body, ev.body["verdict"])
		}
	}
}

// TestLoneSurrogateIsRefusedNotReplaced: a JSON string escape holding a lone UTF-16 surrogate (half an
// emoji, as an editor that cuts text at a UTF-16 index and JSON.stringify
// send it) is saved as U+FFFD with 200 "saved": the text saved is not the
// text sent (decodeBody refuses raw non-UTF-8 for exactly this reason).
// I7: bad input gets a clear error and changes nothing.
func TestLoneSurrogateIsRefusedNotReplaced(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	f.create(alice, "doc", "v1")
	for _, body := range []string{`{"content":"half an emoji: \ud83d"}`, `{"content":"x","title":"\udc00"}`} {
		r := f.do("PUT", "/v1/documents/doc", alice, body)
		if r.status != http.StatusBadRequest {
			t.Errorf("save %s: %d %.200s, want 400", body, r.status, r.raw)
		}
	}
	if r := f.do("GET", "/v1/documents/doc", alice, nil); r.body["content"] != "v1" {
		t.Errorf("document changed to %q", r.body["content"])
	}
	// A well-formed surrogate pair is fine.
	if r := f.do("PUT", "/v1/documents/doc", alice, `{"content":"\ud83d\ude00"}`); r.status != http.StatusOK || r.body["content"] != "\U0001F600" {
		t.Errorf("surrogate pair: %d %.200s", r.status, r.raw)
	}
}

// TestEvidenceDoesNotRevealOtherSchoolsDocuments: docs/api.md says another tenant's document answers 404 "as
// if it did not exist"; but evidence for an ID that does not exist answers
// 200 exists:false, so the evidence route tells any tenant, for free and
// without a trace, which IDs other schools use.
func TestEvidenceDoesNotRevealOtherSchoolsDocuments(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	bob := token(t, "school-b", "bob", time.Hour, false)
	f.create(alice, "essay-1", "secret")
	theirs := f.do("GET", "/v1/documents/essay-1/evidence", bob, nil)
	none := f.do("GET", "/v1/documents/essay-2/evidence", bob, nil)
	if theirs.status != none.status || theirs.body["code"] != none.body["code"] {
		t.Errorf("another tenant's document answers %d %v, a missing one %d %v: existence is revealed",
			theirs.status, theirs.body["code"], none.status, none.body["code"])
	}
	// bob's own refused attempt on it shows, but not its place in
	// school-a's chain: a sequence number of 5 told him 4 entries of
	// another school's document exist (the fresh-user walk found it).
	for range 3 {
		f.do("PUT", "/v1/documents/essay-1", alice, map[string]any{"content": "more"})
	}
	f.do("PUT", "/v1/documents/essay-1", bob, map[string]any{"content": "mine"})
	theirs = f.do("GET", "/v1/documents/essay-1/evidence", bob, nil)
	tl, _ := theirs.body["timeline"].([]any)
	if len(tl) != 1 {
		t.Fatalf("bob's own entries on school-a's document: %s", theirs.raw)
	}
	if en := tl[0].(map[string]any); en["seq"] != float64(0) || en["hash"] != nil && en["hash"] != "" {
		t.Errorf("bob's entry carries its place in school-a's chain: seq %v hash %v", en["seq"], en["hash"])
	}
	if head := theirs.body["chain"].(map[string]any)["head"]; head != nil && head != "" {
		t.Errorf("chain head of school-a's document shown to bob: %v", head)
	}
}

// TestMalformedQueryParametersAreRefused: docs/api.md: list's after/limit "an empty, repeated or
// invalid one is 400 invalid_request"; evidence: "A bad revision, client
// or since gives 400". Parameters url.Values cannot parse (bad percent
// escape, a ';') are silently dropped, empty evidence parameters are
// ignored and a repeated one uses its first value: the client gets 200 for
// another question than it asked (the whole document's verdict, 1000
// documents).
func TestMalformedQueryParametersAreRefused(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	f.create(alice, "doc", "v1")
	for _, q := range []string{
		"/v1/documents?limit=%zz", "/v1/documents?limit=2;", "/v1/documents?after=%zz",
		"/v1/documents/doc/evidence?revision=%zz", "/v1/documents/doc/evidence?revision=",
		"/v1/documents/doc/evidence?revision=1&revision=x", "/v1/documents/doc/evidence?since=%zz",
	} {
		if r := f.do("GET", q, alice, nil); r.status != http.StatusBadRequest || r.body["code"] != "invalid_request" {
			t.Errorf("GET %s: %d %.120s, want 400 invalid_request", q, r.status, r.raw)
		}
	}
}

// TestRevisionPastInt64IsNotFound: a revision or preserved ID past int64 is a positive integer,
// yet answers 400 "must be a positive integer" (If-Match with the same
// number answers 412 unknown_revision, as "higher than the latest").
// docs/api.md: 400 only when rev "is not a positive integer", else 404.
func TestRevisionPastInt64IsNotFound(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	f.create(alice, "doc", "v1")
	for _, p := range []string{"/v1/documents/doc/revisions/99999999999999999999", "/v1/documents/doc/preserved/99999999999999999999"} {
		if r := f.do("GET", p, alice, nil); r.status != http.StatusNotFound {
			t.Errorf("GET %s: %d %.120s, want 404 not_found", p, r.status, r.raw)
		}
	}
}

// TestVerifyRefusesAReceiptItCannotParse: evidence/verify read its query
// leniently, so a receipt in a pair url.Values cannot parse (a stray
// '%', a ';' between receipts) was dropped without a word and the answer
// was "ok": true for a chain whose receipt was never checked, here one
// for an entry the ledger does not have (missing, when it is read).
func TestVerifyRefusesAReceiptItCannotParse(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	op := token(t, "school-a", "support", time.Hour, true)
	f.create(alice, "doc", "v1")
	missing := "9:" + strings.Repeat("ab", 32)
	if r := f.do("GET", "/v1/documents/doc/evidence/verify?receipt="+missing, op, nil); r.status != http.StatusOK || r.body["ok"] != false {
		t.Fatalf("a receipt for entry 9 of a 1-entry ledger: %d %.200s, want ok false", r.status, r.raw)
	}
	for _, q := range []string{"receipt=" + missing + "%zz", "receipt=1:" + strings.Repeat("ab", 32) + ";receipt=" + missing} {
		if r := f.do("GET", "/v1/documents/doc/evidence/verify?"+q, op, nil); r.status != http.StatusBadRequest || r.body["code"] != "invalid_request" {
			t.Errorf("GET evidence/verify?%s: %d %.200s, want 400 invalid_request", q, r.status, r.raw)
		}
	}
}
