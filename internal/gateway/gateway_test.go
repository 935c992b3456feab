package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
	"github.com/yawp/persistence-operator/internal/placement"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/syncer"
	"github.com/yawp/persistence-operator/internal/yjs"
)

func TestMain(m *testing.M) { pgharness.Main(m) }

var key = []byte("test-key")

type fixture struct {
	t    *testing.T
	url  string
	engs []*store.Engine
	dp   *dataplane.Postgres
	pool *pgxpool.Pool
}

// shards is the number of shards the gateway tests run.
const shards = 2

// openDataPlane gives a test a fresh, migrated database with the rollout
// default/demo registered at two shards.
func openDataPlane(t *testing.T) (string, *dataplane.Postgres, *pgxpool.Pool) {
	t.Helper()
	dsn := pgharness.ForTest(t)
	dp, pool, err := dataplane.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := dp.RegisterRollout(t.Context(), "default/demo", "", shards); err != nil {
		t.Fatal(err)
	}
	return dsn, dp, pool
}

// startSyncers gives a test a fresh database and one syncer per shard,
// serving its internal API (through wrap, if any); it returns the fixture
// (no gateway yet) and the syncers' URLs.
func startSyncers(t *testing.T, wrap func(http.Handler) http.Handler) (*fixture, []string) {
	t.Helper()
	dsn, dp, pool := openDataPlane(t)
	f := &fixture{t: t, dp: dp, pool: pool}
	var urls []string
	for i := range shards {
		eng, err := store.Open(t.Context(), store.Config{Pool: pool, DSN: dsn, Shard: i, Shards: shards, Rollout: "default/demo",
			Holder: fmt.Sprint("test-", i), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(eng.Close)
		f.engs = append(f.engs, eng)
		h := syncer.Handler(eng, auth.InternalToken(key))
		if wrap != nil {
			h = wrap(h)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	return f, urls
}

func setup(t *testing.T) *fixture { return customFixture(t, nil, nil) }

// customFixture is setup with each syncer's handler wrapped by wrap and the
// gateways' clock now (nil: the real one). One gateway per shard, each
// with its own syncer; peers are the gateways, as YAWP_PEER_PATTERN and
// `make dev` give them.
func customFixture(t *testing.T, wrap func(http.Handler) http.Handler, now func() time.Time) *fixture {
	t.Helper()
	return configuredFixture(t, wrap, now, nil)
}

// configuredFixture is customFixture with each gateway's Config changed
// by configure (if not nil) before the gateway is made.
func configuredFixture(t *testing.T, wrap func(http.Handler) http.Handler, now func() time.Time, configure func(*Config)) *fixture {
	t.Helper()
	f, syncers := startSyncers(t, wrap)
	handlers := make([]http.Handler, shards)
	var gwURLs []string
	for i := range shards {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handlers[i].ServeHTTP(w, r) }))
		t.Cleanup(srv.Close)
		gwURLs = append(gwURLs, srv.URL)
	}
	for i := range shards {
		cfg := Config{Shards: shards, SelfShard: i, Syncer: syncers[i], Peers: gwURLs, TokenKey: key,
			InternalToken: auth.InternalToken(key), Logger: slog.New(slog.DiscardHandler), Now: now}
		if configure != nil {
			configure(&cfg)
		}
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		handlers[i] = g.Handler()
	}
	f.url = gwURLs[0]
	return f
}

func token(t *testing.T, tenant, user string, ttl time.Duration, op bool) string {
	tok, err := auth.Mint(key, auth.Claims{Tenant: tenant, User: user, Expiry: time.Now().Add(ttl).Unix(), Operator: op})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type resp struct {
	status int
	body   map[string]any
	raw    string
	header http.Header
}

// create creates document doc with content over REST as the token's
// user, failing the test unless it is created.
func (f *fixture) create(tok, doc, content string) {
	f.t.Helper()
	if r := f.do(http.MethodPost, contract.PathDocuments, tok, map[string]any{"id": doc, "content": content}); r.status != http.StatusCreated {
		f.t.Fatalf("create %s: %d %s", doc, r.status, r.raw)
	}
}

func (f *fixture) do(method, path, tok string, body any, hdr ...string) resp {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, f.url+path, rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return f.send(req)
}

// send sends req and reads its answer whole.
func (f *fixture) send(req *http.Request) resp {
	f.t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := resp{status: res.StatusCode, raw: string(raw), header: res.Header}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

func TestLegacyAPI(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	// Documents on both shards.
	ids := map[int]string{}
	for i := 0; len(ids) < 2; i++ {
		id := fmt.Sprintf("essay-%d", i)
		ids[placement.Shard(id, 2)] = id
	}
	for _, id := range ids {
		r := f.do("POST", "/v1/documents", alice, map[string]any{"id": id, "title": "Essay", "content": "My first draft"}, "Idempotency-Key", "create-"+id)
		if r.status != http.StatusCreated || r.body["revision"] != float64(1) {
			t.Fatalf("create %s: %d %s", id, r.status, r.raw)
		}
		r = f.do("POST", "/v1/documents", alice, map[string]any{"id": id, "title": "Essay", "content": "My first draft"}, "Idempotency-Key", "create-"+id)
		if r.status != http.StatusOK || r.body["replayed"] != true {
			t.Fatalf("replayed create %s: %d %s", id, r.status, r.raw)
		}
	}
	id := ids[1]
	r := f.do("GET", "/v1/documents/"+id, alice, nil)
	if r.status != 200 || r.body["content"] != "My first draft" || r.header.Get("ETag") != `"1"` {
		t.Fatalf("read: %d %s", r.status, r.raw)
	}
	r = f.do("GET", "/v1/documents", alice, nil)
	if docs, _ := r.body["documents"].([]any); r.status != 200 || len(docs) != 2 {
		t.Fatalf("list: %d %s", r.status, r.raw)
	}
	r = f.do("PUT", "/v1/documents/"+id, teacher, map[string]any{"content": "My first draft. Good start!"}, "If-Match", `"1"`, "Idempotency-Key", "t1")
	if r.status != 200 || r.body["outcome"] != store.OutcomeSaved || r.body["revision"] != float64(2) {
		t.Fatalf("save: %d %s", r.status, r.raw)
	}
	// The student saves on the stale revision 1: applied as the legacy
	// store would, the teacher's revision preserved, and the response says so.
	r = f.do("PUT", "/v1/documents/"+id, alice, map[string]any{"content": "My second draft"}, "If-Match", `"1"`, "Idempotency-Key", "a2")
	if r.status != 200 || r.body["outcome"] != store.OutcomeOverwrittenPreserved || r.body["preserved_at"] != "/v1/documents/"+id+"/revisions/2" {
		t.Fatalf("stale save: %d %s", r.status, r.raw)
	}
	r = f.do("GET", "/v1/documents/"+id+"/revisions/2", alice, nil)
	if r.status != 200 || r.body["content"] != "My first draft. Good start!" {
		t.Fatalf("preserved revision: %d %s", r.status, r.raw)
	}
	// Retrying the stale save changes nothing.
	r = f.do("PUT", "/v1/documents/"+id, alice, map[string]any{"content": "My second draft"}, "If-Match", `"1"`, "Idempotency-Key", "a2")
	if r.status != 200 || r.body["replayed"] != true || r.body["revision"] != float64(3) {
		t.Fatalf("retry: %d %s", r.status, r.raw)
	}
	r = f.do("GET", "/v1/documents/"+id, alice, nil)
	if r.body["revision"] != float64(3) {
		t.Fatalf("after retry: %s", r.raw)
	}
	// Evidence for the teacher's overwritten save.
	r = f.do("GET", "/v1/documents/"+id+"/evidence?request=t1", alice, nil)
	if r.status != 200 || r.body["verdict"] != store.VerdictOverwrittenPreserved {
		t.Fatalf("evidence: %d %s", r.status, r.raw)
	}
	r = f.do("GET", "/v1/documents/"+id+"/evidence?request=a2", alice, nil)
	if r.body["verdict"] != store.VerdictSynced {
		t.Fatalf("evidence of the stale save: %s", r.raw)
	}
}

func TestBadInput(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	mallory := token(t, "school-b", "mallory", time.Hour, false)
	expired := token(t, "school-a", "alice", -time.Minute, false)
	r := f.do("POST", "/v1/documents", alice, map[string]any{"id": "doc1", "content": "safe"})
	if r.status != http.StatusCreated {
		t.Fatal(r.raw)
	}
	state := func() string {
		r := f.do("GET", "/v1/documents/doc1", alice, nil)
		return fmt.Sprint(r.body["content"], r.body["revision"])
	}
	before := state()
	huge := `{"content": "` + strings.Repeat("x", contract.MaxBodyBytes) + `"}`
	big := `{"content": "` + strings.Repeat("x", contract.MaxContentBytes+1) + `"}`
	for _, tc := range []struct {
		name, method, path, tok string
		body                    any
		hdr                     []string
		status                  int
		code                    string
	}{
		{"malformed json", "PUT", "/v1/documents/doc1", alice, `{"content": `, nil, 400, "invalid_json"},
		{"wrong type", "PUT", "/v1/documents/doc1", alice, `{"content": 42}`, nil, 400, "invalid_request"},
		{"unknown field", "PUT", "/v1/documents/doc1", alice, `{"content": "x", "owner": "me"}`, nil, 400, "invalid_request"},
		{"missing content", "PUT", "/v1/documents/doc1", alice, `{}`, nil, 400, "invalid_request"},
		{"trailing data", "PUT", "/v1/documents/doc1", alice, `{"content": "x"} {}`, nil, 400, "invalid_json"},
		{"oversize body", "PUT", "/v1/documents/doc1", alice, huge, nil, 413, "too_large"},
		{"oversize document", "PUT", "/v1/documents/doc1", alice, big, nil, 413, "too_large"},
		{"bad if-match", "PUT", "/v1/documents/doc1", alice, `{"content": "x"}`, []string{"If-Match", "abc"}, 400, "invalid_request"},
		{"future base", "PUT", "/v1/documents/doc1", alice, `{"content": "x"}`, []string{"If-Match", `"9"`}, 412, "unknown_revision"},
		{"unknown document", "PUT", "/v1/documents/nope", alice, `{"content": "x"}`, nil, 404, "not_found"},
		{"unknown document read", "GET", "/v1/documents/nope", alice, nil, nil, 404, "not_found"},
		{"wrong tenant read", "GET", "/v1/documents/doc1", mallory, nil, nil, 404, "not_found"},
		{"wrong tenant write", "PUT", "/v1/documents/doc1", mallory, `{"content": "pwned"}`, nil, 404, "not_found"},
		{"wrong tenant revision", "GET", "/v1/documents/doc1/revisions/1", mallory, nil, nil, 404, "not_found"},
		{"wrong tenant yjs", "POST", "/v1/documents/doc1/updates", mallory, []byte{0, 0}, nil, 404, "not_found"},
		{"expired token", "PUT", "/v1/documents/doc1", expired, `{"content": "x"}`, nil, 401, "token_expired"},
		{"garbage token", "GET", "/v1/documents/doc1", "yawp1.garbage.sig", nil, nil, 401, "unauthenticated"},
		{"no token", "GET", "/v1/documents/doc1", "", nil, nil, 401, "unauthenticated"},
		{"garbage yjs", "POST", "/v1/documents/doc1/updates", alice, []byte("\xff\xff\xff\xffgarbage"), nil, 400, "invalid_update"},
		{"garbage state vector", "POST", "/v1/documents/doc1/sync", alice, []byte("\xff"), nil, 400, "invalid_state_vector"},
		{"bad id", "GET", "/v1/documents/..%2f", alice, nil, nil, 400, "invalid_id"},
		{"bad revision", "GET", "/v1/documents/doc1/revisions/x", alice, nil, nil, 400, "invalid_request"},
		{"operator only", "GET", "/v1/documents/doc1/evidence/verify", alice, nil, nil, 403, "forbidden"},
		{"no route", "DELETE", "/v1/documents/doc1", alice, nil, nil, 404, "no_route"},
		// Redirected to the cleaned path, these read another document
		// (one named "evidence"; doc1 itself).
		{"empty segment", "GET", "/v1/documents//evidence", alice, nil, nil, 404, "no_route"},
		{"dot-dot segment", "PUT", "/v1/documents/x/../doc1", alice, `{"content": "x"}`, nil, 404, "no_route"},
		{"dot segment", "GET", "/v1/documents/./doc1", alice, nil, nil, 404, "no_route"},
	} {
		r := f.do(tc.method, tc.path, tc.tok, tc.body, tc.hdr...)
		if r.status != tc.status || r.body["code"] != tc.code || r.body["message"] == "" {
			t.Errorf("%s: %d %.200s; want %d %s", tc.name, r.status, r.raw, tc.status, tc.code)
		}
	}
	if after := state(); after != before {
		t.Errorf("bad input changed the document: %s -> %s", before, after)
	}
	// The refusals that named the document are in its ledger.
	r = f.do("GET", "/v1/documents/doc1/evidence", alice, nil)
	var rejected int
	for _, e := range r.body["timeline"].([]any) {
		if e.(map[string]any)["kind"] == "rejected" {
			rejected++
		}
	}
	if rejected < 10 {
		t.Errorf("only %d rejections recorded: %s", rejected, r.raw)
	}
	// Verify with an operator token.
	op := token(t, "ops", "oncall", time.Hour, true)
	r = f.do("GET", "/v1/documents/doc1/evidence/verify", op, nil)
	if r.status != 200 || r.body["ok"] != true {
		t.Errorf("verify: %d %s", r.status, r.raw)
	}
	// problems is always in the answer (docs/api.md), [] when intact.
	if p, ok := r.body["problems"].([]any); !ok || len(p) != 0 {
		t.Errorf("verify of an intact chain: problems %#v, want []", r.body["problems"])
	}
}

func TestRejectionEvidence(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	f.do("POST", "/v1/documents", alice, map[string]any{"id": "doc2", "content": "v1"})
	r := f.do("PUT", "/v1/documents/doc2", alice, `{"content": `, nil...)
	_ = r
	r = f.do("PUT", "/v1/documents/doc2", alice, `{"content": 7}`, "X-Request-Id", "req-7")
	if r.status != 400 {
		t.Fatal(r.raw)
	}
	r = f.do("GET", "/v1/documents/doc2/evidence?request=req-7", alice, nil)
	if r.body["verdict"] != store.VerdictRejected {
		t.Fatalf("evidence of a rejected save: %s", r.raw)
	}
	r = f.do("GET", "/v1/documents/doc2/evidence?request=never-sent", alice, nil)
	if r.body["verdict"] != store.VerdictNeverPersisted {
		t.Fatalf("evidence of an unknown request: %s", r.raw)
	}
}

func TestYjsOverHTTP(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	f.do("POST", "/v1/documents", alice, map[string]any{"id": "ydoc", "content": "Hello"})
	// A local-first client: sync step 1 with an empty state vector gets
	// the document, then sends its edit as a Yjs update.
	r := f.do("POST", "/v1/documents/ydoc/sync", alice, yjs.EncodeStateVector(yjs.StateVector{}))
	if r.status != 200 {
		t.Fatalf("sync: %d %s", r.status, r.raw)
	}
	var res store.Result
	if err := json.Unmarshal([]byte(r.raw), &res); err != nil {
		t.Fatal(err)
	}
	c := yjs.NewDoc(yjs.Options{ClientID: 77})
	if err := c.ApplyUpdate(res.Update); err != nil {
		t.Fatal(err)
	}
	var u []byte
	c.OnUpdate(func(b []byte) { u = b })
	txt := c.GetText(contract.YjsTextName)
	if err := txt.Insert(txt.Len(), ", world", nil); err != nil {
		t.Fatal(err)
	}
	r = f.do("POST", "/v1/documents/ydoc/updates", alice, u)
	if r.status != 200 || r.body["outcome"] != store.OutcomeSaved {
		t.Fatalf("update: %d %s", r.status, r.raw)
	}
	r = f.do("POST", "/v1/documents/ydoc/updates", alice, u)
	if r.body["outcome"] != store.OutcomeDuplicate {
		t.Fatalf("replayed update: %s", r.raw)
	}
	r = f.do("GET", "/v1/documents/ydoc", alice, nil)
	if r.body["content"] != "Hello, world" {
		t.Fatalf("read after the update: %s", r.raw)
	}
	r = f.do("GET", "/v1/documents/ydoc/evidence?client=77", alice, nil)
	if r.body["verdict"] != store.VerdictSynced {
		t.Fatalf("evidence of client 77: %s", r.raw)
	}
}

// A read refused for its token leaves no trace in the document's ledger
// (support reading evidence with an expired token must not add to it, and
// a read is no save to report as rejected); a refused write does.
func TestRefusedReadsLeaveNoTrace(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	expired := token(t, "school-a", "alice", -time.Minute, false)
	f.do("POST", "/v1/documents", alice, map[string]any{"id": "doc1", "content": "v1"})
	timeline := func() []any {
		t.Helper()
		r := f.do("GET", "/v1/documents/doc1/evidence", alice, nil)
		if r.status != 200 {
			t.Fatalf("evidence: %d %s", r.status, r.raw)
		}
		return r.body["timeline"].([]any)
	}
	before := len(timeline())
	for _, tok := range []string{expired, "yawp1.garbage.sig", ""} {
		for _, path := range []string{"/v1/documents/doc1", "/v1/documents/doc1/revisions/1", "/v1/documents/doc1/preserved/1",
			"/v1/documents/doc1/evidence", "/v1/documents/doc1/evidence/verify", "/v1/documents"} {
			if r := f.do("GET", path, tok, nil); r.status != 401 {
				t.Errorf("GET %s: %d %s", path, r.status, r.raw)
			}
		}
	}
	if after := len(timeline()); after != before {
		t.Errorf("refused reads added %d ledger entries", after-before)
	}
	if r := f.do("PUT", "/v1/documents/doc1", expired, `{"content": "v2"}`); r.status != 401 || r.body["code"] != "token_expired" {
		t.Fatalf("save with an expired token: %d %s", r.status, r.raw)
	} else if msg, _ := r.body["message"].(string); !strings.HasPrefix(msg, "token expired at ") {
		t.Errorf("expired token's message %q: a student reads it (no Go package prefix)", msg)
	}
	tl := timeline()
	if len(tl) != before+1 || tl[len(tl)-1].(map[string]any)["kind"] != "rejected" {
		t.Errorf("the refused save is not the ledger's last entry: %v", tl)
	}
	r := f.do("GET", "/v1/documents/doc1/evidence?user=alice", alice, nil)
	if r.body["verdict"] != store.VerdictSynced {
		t.Errorf("alice's evidence: %s", r.raw)
	}
}

// A create refused for its token is recorded on the document its body
// names, and its author's evidence says so (it was never saved, because
// the token had expired), instead of "never persisted".
func TestRefusedCreateIsOnRecord(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	expired := token(t, "school-a", "alice", -time.Minute, false)
	if r := f.do("POST", "/v1/documents", expired, map[string]any{"id": "doc9", "content": "v1"}); r.status != 401 || r.body["code"] != "token_expired" {
		t.Fatalf("create with an expired token: %d %s", r.status, r.raw)
	}
	r := f.do("GET", "/v1/documents/doc9/evidence", alice, nil)
	if r.body["verdict"] != store.VerdictRejected || !strings.Contains(fmt.Sprint(r.body["proof"]), "token_expired") {
		t.Errorf("evidence of doc9 after a create refused for its expired token: %s", r.raw)
	}
	// The document can still be created, and the refusal stays on record.
	if r := f.do("POST", "/v1/documents", alice, map[string]any{"id": "doc9", "content": "v1"}); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	r = f.do("GET", "/v1/documents/doc9/evidence", alice, nil)
	if tl := r.body["timeline"].([]any); len(tl) != 2 || tl[0].(map[string]any)["code"] != "token_expired" {
		t.Errorf("timeline after the create: %s", r.raw)
	}
	// A body naming no valid ID leaves nothing to record on.
	if r := f.do("POST", "/v1/documents", expired, map[string]any{"id": "../x", "content": "v1"}); r.status != 401 {
		t.Errorf("create with an expired token and a bad ID: %d %s", r.status, r.raw)
	}
}

// TestMergedSaveStaysUnderTheContentLimit: in a Yjs-authoritative stage
// two stale saves, each under the 512 KiB content limit, would merge into
// a text over it, which no legacy client could save back (413 on the
// document's own text). The second save is kept aside instead: the
// document keeps its text, the save's is readable where preserved, and the
// ledger says why.
func TestMergedSaveStaysUnderTheContentLimit(t *testing.T) {
	f := setup(t)
	ctx := t.Context()
	key := dataplane.CohortKey{Rollout: "default/demo", Cohort: "pilot"}
	cs, err := f.dp.FreezeCohort(ctx, key, 0, dataplane.Selector{Tenants: []string{"school-a"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.dp.SetStage(ctx, dataplane.StageChange{Key: key, ExpectEpoch: cs.Epoch, Stage: dataplane.StageLocalFirst,
		Attempt: 1, Reason: "Test", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	words := func(prefix string, n int) string {
		var b strings.Builder
		for i := 0; b.Len() < n; i++ {
			fmt.Fprintf(&b, "%s%d ", prefix, i)
		}
		return b.String()
	}
	alice := token(t, "school-a", "alice", time.Hour, false)
	base := words("b", 300<<10)
	if r := f.do("POST", "/v1/documents", alice, map[string]any{"id": "big", "content": base}); r.status != http.StatusCreated {
		t.Fatalf("create: %d %.200s", r.status, r.raw)
	}
	appended := base + words("a", 200<<10)
	prepended := words("c", 200<<10) + base
	if r := f.do("PUT", "/v1/documents/big", alice, map[string]any{"content": appended}, "If-Match", `"1"`); r.status != http.StatusOK || r.body["outcome"] != "saved" {
		t.Fatalf("first save: %d %.200s", r.status, r.raw)
	}
	r := f.do("PUT", "/v1/documents/big", alice, map[string]any{"content": prepended}, "If-Match", `"1"`)
	if r.status != http.StatusOK || r.body["outcome"] != "conflict-preserved" || r.body["preserved_id"] != float64(1) {
		t.Fatalf("stale save whose merge is too large: %d outcome %v preserved_id %v, want 200 conflict-preserved 1", r.status, r.body["outcome"], r.body["preserved_id"])
	}
	rd := f.do("GET", "/v1/documents/big", alice, nil)
	if rd.body["content"] != appended {
		t.Errorf("the document's text is %d bytes, want the first save's %d", len(fmt.Sprint(rd.body["content"])), len(appended))
	}
	if p := f.do("GET", "/v1/documents/big/preserved/1", alice, nil); p.status != http.StatusOK || p.body["content"] != prepended {
		t.Errorf("preserved save: %d, %d bytes", p.status, len(fmt.Sprint(p.body["content"])))
	}
	ev := f.do("GET", "/v1/documents/big/evidence", alice, nil)
	if !strings.Contains(ev.raw, "over the 524288-byte content limit") {
		t.Errorf("evidence does not say why the save was kept aside: %.400s", ev.raw)
	}
	again := f.do("PUT", "/v1/documents/big", alice, map[string]any{"content": appended}, "If-Match", rd.header.Get("ETag"))
	if again.status != http.StatusOK {
		t.Errorf("saving the document's own text back: %d %.200s", again.status, again.raw)
	}
}
