package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/store"
)

// TestUnconfirmedSaveLeavesATrace: a save that reaches the gateway while
// its syncer cannot answer is refused with a retryable error, and once the
// syncer is back the document's ledger says the save arrived and was not
// confirmed; the evidence for that request is "rejected", not "never
// persisted". The client's retry then commits, and the evidence says so.
func TestUnconfirmedSaveLeavesATrace(t *testing.T) {
	var down atomic.Bool
	f := customFixture(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		})
	}, nil)
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

// TestUnauthenticatedRefusalsAreRateLimited: a stream of requests with bad
// tokens naming a document records a few refusals in its ledger, not all;
// the next one recorded says how many were left out.
func TestUnauthenticatedRefusalsAreRateLimited(t *testing.T) {
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	f := customFixture(t, nil, now)
	doc := docOnShard("target", 0)
	alice := token(t, "school-a", "alice", time.Hour, false)
	f.create(alice, doc, "mine")
	for range 20 {
		if r := f.do("PUT", "/v1/documents/"+doc, "not-a-token", map[string]any{"content": "x"}); r.status != http.StatusUnauthorized {
			t.Fatalf("bad token: %d %s", r.status, r.raw)
		}
	}
	refusals := func() []string {
		var out []string
		rows, err := store.LedgerRows(t.Context(), f.pool, doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows {
			var en ledger.Entry
			if err := json.Unmarshal(row.Body, &en); err != nil {
				t.Fatal(err)
			}
			if en.Kind == ledger.KindRejected && en.Tenant == unauthenticated {
				out = append(out, en.Reason)
			}
		}
		return out
	}
	if got := refusals(); len(got) != unauthBurst {
		t.Fatalf("%d unauthenticated refusals recorded, want %d", len(got), unauthBurst)
	}
	mu.Lock()
	clock = clock.Add(unauthEvery)
	mu.Unlock()
	f.do("PUT", "/v1/documents/"+doc, "not-a-token", map[string]any{"content": "x"})
	got := refusals()
	if len(got) != unauthBurst+1 || !strings.Contains(got[len(got)-1], "(15 more unauthenticated refusals") {
		t.Fatalf("after the pause: %q", got)
	}
	// The owner's own refusals are not limited.
	for range 10 {
		f.do("PUT", "/v1/documents/"+doc, alice, "{not json")
	}
	if r := f.do("GET", "/v1/documents/"+doc+"/evidence?user=alice", alice, nil); len(r.body["findings"].([]any)) < 10 {
		t.Fatalf("the owner's refusals: %s", r.raw)
	}
}
