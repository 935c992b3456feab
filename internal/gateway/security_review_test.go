package gateway

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestDeletedDocumentsIDStaysItsTenantsOverYjs: as
// TestDeletedDocumentsIDStaysItsTenants, but school-b takes the ID with a
// Yjs update (POST .../updates; the sync WebSocket takes the same path)
// instead of a create. applyCreate checks the ID's history tenant; the Yjs
// path does not, so school-b continues school-a's revision numbers and
// reads school-a's deleted revisions.
func TestDeletedDocumentsIDStaysItsTenantsOverYjs(t *testing.T) {
	f := setup(t)
	tokA := token(t, "school-a", "ada", time.Hour, false)
	tokB := token(t, "school-b", "eve", time.Hour, false)
	doc := "essay-1"
	f.create(tokA, doc, "school-a: counselling notes, first draft")
	if r := f.do(http.MethodPut, contract.PathDocuments+"/"+doc, tokA, map[string]any{"content": "school-a: counselling notes, final"}); r.status != http.StatusOK {
		t.Fatalf("save: %d %s", r.status, r.raw)
	}
	deleteOutside(t, f, tokA, doc)
	// school-b sends a Yjs update made in a fresh Y.Doc.
	c := yjs.NewDoc(yjs.Options{ClientID: 4242})
	var u []byte
	c.OnUpdate(func(b []byte) { u = b })
	if err := c.GetText(contract.YjsTextName).Insert(0, "school-b", nil); err != nil {
		t.Fatal(err)
	}
	r := f.do(http.MethodPost, contract.PathDocuments+"/"+doc+"/updates", tokB, u)
	t.Logf("school-b's Yjs update to the deleted ID: %d %s", r.status, r.raw)
	if leaks := revisionLeaks(f, tokB, doc); len(leaks) > 0 {
		t.Fatalf("school-b reads school-a's deleted document through a Yjs update to its ID:\n  %s", strings.Join(leaks, "\n  "))
	}
}

// TestUnavailableDoesNotRevealInternalAddresses: when a syncer cannot be
// reached, the client's 503 message carries Go's url.Error text: the
// internal API's URL (the peer's in-cluster DNS name, namespace, port,
// internal path and the tenant query) is handed to any student.
func TestUnavailableDoesNotRevealInternalAddresses(t *testing.T) {
	g, err := New(Config{Shards: 1, SelfShard: 0, Syncer: "http://127.0.0.1:1", TokenKey: key,
		InternalToken: "internal-secret", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()
	f := &fixture{t: t, url: srv.URL}
	r := f.do(http.MethodGet, contract.PathDocuments+"/essay-1", token(t, "school-a", "ada", time.Hour, false), nil)
	t.Logf("%d %s", r.status, r.raw)
	if strings.Contains(r.raw, "/internal/v1/") || strings.Contains(r.raw, "127.0.0.1:1") {
		t.Fatalf("a student's 503 names the internal API: %s", r.raw)
	}
}

// TestStateVectorEvidenceIsBounded: a sync step 1 is recorded in the
// append-only ledger with its whole state vector. Clients at clock 0 are
// never "missing", so the 1,024-client bound does not apply: a 1 MiB state
// vector of ~260,000 clients becomes one permanent, undeletable ledger
// row. REST POST .../sync has no rate limit and works on IDs that do not
// exist, so one student can write such rows as fast as the network allows.
func TestStateVectorEvidenceIsBounded(t *testing.T) {
	f := setup(t)
	tok := token(t, "school-a", "mallory", time.Hour, false)
	sv := yjs.StateVector{}
	// client IDs 16384..2097151 take 3 bytes as varuints, clock 0 one.
	for c := uint64(16384); len(sv) < (contract.MaxStateVectorBytes-64)/4; c++ {
		sv[c] = 0
	}
	body := yjs.EncodeStateVector(sv)
	r := f.do(http.MethodPost, contract.PathDocuments+"/no-such-doc-1/sync", tok, body)
	if r.status != http.StatusOK {
		t.Fatalf("sync: %d %.300s", r.status, r.raw)
	}
	var raw, stored int64
	if err := f.pool.QueryRow(t.Context(), `SELECT sum(octet_length(body::text)), sum(pg_column_size(body)) FROM save_ledger WHERE doc_id = 'no-such-doc-1'`).Scan(&raw, &stored); err != nil {
		t.Fatal(err)
	}
	t.Logf("request %d bytes (%d clients) -> ledger body %d bytes, %d stored", len(body), len(sv), raw, stored)
	if raw > 64<<10 {
		t.Fatalf("one (rate-unlimited) REST sync step 1 of %d bytes on a document that does not exist left a %d-byte append-only ledger row (%d on disk)", len(body), raw, stored)
	}
}
