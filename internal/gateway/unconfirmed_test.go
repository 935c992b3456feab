package gateway

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/syncer"
)

// TestUnconfirmedSaveLeavesATrace: a save that reaches the gateway while
// its syncer cannot answer is refused with a retryable error, and once the
// syncer is back the document's ledger says the save arrived and was not
// confirmed; the evidence for that request is "rejected", not "never
// persisted". The client's retry then commits, and the evidence says so.
func TestUnconfirmedSaveLeavesATrace(t *testing.T) {
	dsn, _, pool := openDataPlane(t)
	itok := auth.InternalToken(key)
	var engs [shards]*store.Engine
	var down atomic.Bool
	var peers []string
	for i := range shards {
		eng, err := store.Open(t.Context(), store.Config{Pool: pool, DSN: dsn, Shard: i, Shards: shards, Rollout: "default/demo",
			Holder: "test", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(eng.Close)
		engs[i] = eng
		h := syncer.Handler(eng, itok)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() {
				// A syncer restarting: the connection is cut, no answer.
				if hj, ok := w.(http.Hijacker); ok {
					if c, _, err := hj.Hijack(); err == nil {
						_ = c.Close()
						return
					}
				}
			}
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		peers = append(peers, srv.URL)
	}
	// One gateway that reaches every shard's syncer directly.
	var handlers []http.Handler
	var gwURLs []string
	for i := range shards {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handlers[i].ServeHTTP(w, r) }))
		t.Cleanup(srv.Close)
		gwURLs = append(gwURLs, srv.URL)
		handlers = append(handlers, nil)
	}
	for i := range shards {
		g, err := New(Config{Shards: shards, SelfShard: i, Syncer: peers[i], Peers: gwURLs, TokenKey: key, InternalToken: itok,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		handlers[i] = g.Handler()
	}
	f := &fixture{t: t, url: gwURLs[0], engs: engs[:]}
	alice := token(t, "school-a", "alice", time.Hour, false)
	r := f.do("POST", "/v1/documents", alice, map[string]any{"id": "essay", "content": "draft"}, "Idempotency-Key", "c1")
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	down.Store(true)
	r = f.do("PUT", "/v1/documents/essay", alice, map[string]any{"content": "draft, longer"}, "If-Match", `"1"`, "Idempotency-Key", "s1")
	if r.status != http.StatusServiceUnavailable || r.body["code"] != store.CodeUnavailable {
		t.Fatalf("save while the syncer is down: %d %s", r.status, r.raw)
	}
	time.Sleep(300 * time.Millisecond) // the gateway keeps trying meanwhile
	down.Store(false)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r = f.do("GET", "/v1/documents/essay/evidence?request=s1", alice, nil)
		if r.body["verdict"] == store.VerdictRejected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no trace of the unconfirmed save: %d %s", r.status, r.raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	proof, _ := r.body["proof"].(map[string]any)
	if proof["summary"] != "refused: "+CodeUnconfirmed {
		t.Fatalf("evidence proof %v", proof)
	}
	// The client retries with the same key: committed, and the evidence
	// for the request is now its commit.
	r = f.do("PUT", "/v1/documents/essay", alice, map[string]any{"content": "draft, longer"}, "If-Match", `"1"`, "Idempotency-Key", "s1")
	if r.status != http.StatusOK || r.body["revision"] != float64(2) {
		t.Fatalf("retry: %d %s", r.status, r.raw)
	}
	r = f.do("GET", "/v1/documents/essay/evidence?request=s1", alice, nil)
	if r.body["verdict"] != store.VerdictSynced {
		t.Fatalf("evidence after the retry: %s", r.raw)
	}
}
