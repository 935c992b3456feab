package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// typedUpdate is the Yjs update of a client typing text into an empty
// document.
func typedUpdate(t *testing.T, client uint64, text string) []byte {
	t.Helper()
	c := yjs.NewDoc(yjs.Options{ClientID: client})
	var update []byte
	c.OnUpdate(func(b []byte) { update = b })
	if err := c.GetText(contract.YjsTextName).Insert(0, text, nil); err != nil {
		t.Fatal(err)
	}
	return update
}

// recordingSyncer stands in for a syncer asked to record the traces of
// unconfirmed saves: down (every connection cut) until up is set, then it
// records each request (by request ID) and answers it, refusing with 400
// those whose request ID is in refuse.
type recordingSyncer struct {
	URL    string
	up     atomic.Bool
	calls  atomic.Int32
	refuse map[string]bool

	mu  sync.Mutex
	got map[string]store.Request
}

func newRecordingSyncer(t *testing.T, refuse ...string) *recordingSyncer {
	t.Helper()
	s := &recordingSyncer{refuse: map[string]bool{}, got: map[string]store.Request{}}
	for _, id := range refuse {
		s.refuse[id] = true
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.up.Load() {
			hijackClose(w)
			return
		}
		var req store.Request
		_ = json.NewDecoder(r.Body).Decode(&req)
		s.calls.Add(1)
		if s.refuse[req.RequestID] {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(store.Error{Code: store.CodeInvalidRequest, Message: "no"})
			return
		}
		s.mu.Lock()
		s.got[req.RequestID] = req
		s.mu.Unlock()
		_ = json.NewEncoder(w).Encode(store.Result{Doc: req.Doc, Outcome: store.OutcomeRecorded})
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// recorded returns the request recorded under id, if any.
func (s *recordingSyncer) recorded(id string) (store.Request, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.got[id]
	return r, ok
}

// count is how many distinct requests were recorded.
func (s *recordingSyncer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}
