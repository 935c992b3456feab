package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/store"
)

// TestFullQueueDropDuringDrainLosesNoOtherTrace: while the drain waits
// for the syncer's answer about the head trace, a new trace meets a full
// queue and drops (and logs) the oldest. Every trace must end recorded or
// logged. The drain used to pop the queue by position after the answer,
// removing a different trace unrecorded and unlogged. Found by review.
func TestFullQueueDropDuringDrainLosesNoOtherTrace(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{}
	first := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req store.Request
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		seen[req.RequestID]++
		wasFirst := first
		first = false
		mu.Unlock()
		if wasFirst {
			<-release
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(store.Error{Code: store.CodeUnavailable, Message: "restarting"})
			return
		}
		_ = json.NewEncoder(w).Encode(store.Result{Doc: req.Doc, Outcome: "rejected"})
	}))
	defer srv.Close()
	var logs syncBuffer
	g, err := New(Config{Shards: 1, SelfShard: 0, Syncer: srv.URL, TokenKey: key, InternalToken: auth.InternalToken(key),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("syncer unreachable")
	for i := 0; i <= unconfirmedQueue; i++ { // one more than the queue holds
		g.recordUnconfirmed(store.Request{Kind: store.KindSave, Doc: "d", Tenant: "school-a", User: "u", RequestID: fmt.Sprint("r", i)}, cause)
		if i == 0 {
			for { // the drain is waiting on r0's answer
				mu.Lock()
				n := seen["r0"]
				mu.Unlock()
				if n > 0 {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	close(release)
	deadline := time.Now().Add(30 * time.Second)
	for {
		g.unconfMu.Lock()
		n := len(g.unconf)
		if g.unconfCur != nil {
			n++
		}
		g.unconfMu.Unlock()
		if n == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i <= unconfirmedQueue; i++ {
		id := fmt.Sprint("r", i)
		if seen[id] == 0 && !strings.Contains(logs.String(), "request="+id+"\n") && !strings.Contains(logs.String(), "request="+id+" ") {
			t.Errorf("trace %s was neither recorded nor logged: lost silently", id)
		}
	}
	t.Logf("r0 sent %d times (it was logged as dropped: %v)", seen["r0"], strings.Contains(logs.String(), "request=r0"))
}
