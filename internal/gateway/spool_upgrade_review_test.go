package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/syncer"
)

// TestASpooledUpdateIsRecordedByASyncerOfThePreviousVersion: during a
// rolling upgrade, an upgraded gateway container restarts with a student's
// unconfirmed Yjs update in its spool, kept as its trace (update_trace).
// The document's shard is a pod not rolled yet: its syncer refuses
// unknown JSON fields (invalid_request), the drain reads that as a
// refusal and deletes the trace: the unconfirmed save is in no ledger.
func TestASpooledUpdateIsRecordedByASyncerOfThePreviousVersion(t *testing.T) {
	var up atomic.Bool
	recorded := make(chan map[string]any, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			hijackClose(w)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var fields map[string]any
		_ = json.Unmarshal(b, &fields)
		if _, ok := fields["update_trace"]; ok { // the previous version: DisallowUnknownFields
			syncer.WriteError(w, &store.Error{Status: http.StatusBadRequest, Code: store.CodeInvalidRequest,
				Message: `bad request body: json: unknown field "update_trace"`})
			return
		}
		recorded <- fields
		_ = json.NewEncoder(w).Encode(store.Result{Outcome: store.OutcomeRecorded})
	}))
	defer srv.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hijackClose(w) }))
	defer down.Close()
	spool := t.TempDir()
	cfg := Config{Shards: 1, SelfShard: 0, Syncer: srv.URL, TokenKey: key, InternalToken: auth.InternalToken(key),
		Logger: slog.New(slog.DiscardHandler), SpoolDir: spool}
	firstCfg := cfg
	firstCfg.Syncer = down.URL // the first process never reaches a syncer
	first, err := New(firstCfg)
	if err != nil {
		t.Fatal(err)
	}
	update := typedUpdate(t, 4711, "offline paragraph")
	first.recordUnconfirmed(store.Request{Kind: store.KindYjs, Doc: "essay", Tenant: "t", User: "ada", RequestID: "r", Update: update},
		errors.New("syncer unreachable"))
	// The container restarts; the old-version syncer answers.
	up.Store(true)
	if _, err := New(cfg); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-recorded:
		if !strings.Contains(f["reason"].(string), store.TraceUpdate(update).SHA256) {
			t.Errorf("recorded without the update's sha256: %v", f)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the spooled trace was refused by the previous version's syncer and dropped: the unconfirmed save is in no ledger")
	}
}
