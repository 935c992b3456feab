package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/store"
)

// TestARestartedGatewayRecordsItsSpoolWithoutRacingItsSyncBackend: a
// gateway container restarts with traces in its spool and its syncer
// answering. New starts recording them at once, and each recorded trace
// brings its document's room up to date (committedOutsideSync), reading
// g.syncBE in another goroutine, while cmd/gateway is still wiring the
// sync backend (NewSyncBackend writes g.syncBE). Run with -race.
func TestARestartedGatewayRecordsItsSpoolWithoutRacingItsSyncBackend(t *testing.T) {
	sy := newRecordingSyncer(t)
	spool := t.TempDir()
	cfg := Config{Shards: 1, SelfShard: 0, Syncer: sy.URL, TokenKey: key, InternalToken: auth.InternalToken(key),
		Logger: slog.New(slog.DiscardHandler), SpoolDir: spool}
	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		first.recordUnconfirmed(store.Request{Kind: store.KindSave, Doc: "doc-" + id, Tenant: "t", User: "u", RequestID: id}, errors.New("syncer unreachable"))
	}
	sy.up.Store(true) // the syncer is back; the container restarts
	// (first keeps draining too; its process would be gone: irrelevant here)
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = g.NewSyncBackend() // what cmd/gateway does right after New
	for deadline := time.Now().Add(10 * time.Second); sy.calls.Load() < 8; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(200 * time.Millisecond) // the room refreshes run
}

// TestTheSpoolKeepsNoStudentTextOnTheNodesDisk: while a syncer is down,
// a student's Yjs updates (her essay's text) wait in the spool, a
// directory on the node's disk (the pod's /tmp emptyDir, shared with the
// syncer container), where before they lived only in the gateway's
// memory. The ledger entry needs only what the syncer derives from the
// update (its sha256, clients and operation ranges), not the text.
func TestTheSpoolKeepsNoStudentTextOnTheNodesDisk(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hijackClose(w) }))
	defer srv.Close()
	spool := t.TempDir()
	g, err := New(Config{Shards: 1, SelfShard: 0, Syncer: srv.URL, TokenKey: key, InternalToken: auth.InternalToken(key),
		Logger: slog.New(slog.DiscardHandler), SpoolDir: spool})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "My diary: I failed the maths test and told nobody."
	update := typedUpdate(t, 4711, secret)
	g.recordUnconfirmed(store.Request{Kind: store.KindYjs, Doc: "diary", Tenant: "school-a", User: "ada", RequestID: "r", Update: update}, errors.New("syncer unreachable"))
	files, _ := filepath.Glob(filepath.Join(spool, "*.json"))
	for _, p := range files {
		b, _ := os.ReadFile(p)
		var u unconfirmed
		if json.Unmarshal(b, &u) == nil && bytes.Contains(u.Req.Update, []byte(secret)) {
			t.Errorf("the spool file %s holds the student's text (%d update bytes)", filepath.Base(p), len(u.Req.Update))
		}
	}
}

// TestALateRecordedUnconfirmedSaveSaysWhenItWasAttempted: the syncer is
// down for 20 minutes (or the gateway restarts and records its spool an
// hour later). The ledger entry is stamped when it is finally written,
// and nothing in it says when the save reached the gateway: support reads
// an attempt at 10:20 for a save made at 10:00.
func TestALateRecordedUnconfirmedSaveSaysWhenItWasAttempted(t *testing.T) {
	sy := newRecordingSyncer(t)
	attempt := time.Date(2025, 9, 1, 10, 0, 0, 0, time.UTC)
	g, err := New(Config{Shards: 1, SelfShard: 0, Syncer: sy.URL, TokenKey: key, InternalToken: auth.InternalToken(key),
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return attempt }})
	if err != nil {
		t.Fatal(err)
	}
	g.recordUnconfirmed(store.Request{Kind: store.KindSave, Doc: "essay", Tenant: "t", User: "ada", RequestID: "r"}, errors.New("syncer unreachable"))
	sy.up.Store(true)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if req, ok := sy.recorded("r"); ok {
			if !strings.Contains(req.Reason, attempt.Format(time.RFC3339)) {
				t.Errorf("the trace's reason does not say when the save was attempted (%s): %q", attempt.Format(time.RFC3339), req.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not recorded")
		}
	}
}
