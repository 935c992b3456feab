package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/store"
)

// TestAStoppingGatewayHandsItsUnconfirmedSavesToAPeer: during a rolling
// upgrade, shard 0's syncer is down while a student's Yjs update and a
// REST save reach its gateway; both are answered "retry" and wait to be
// recorded (I6). The upgrade then deletes the pod. The spool outlives a
// crashed container, not the pod: the traces were lost, and evidence for
// the student's client said never-persisted. The stopping gateway now
// hands them to shard 1's gateway, which records them once shard 0's
// syncer is back.
func TestAStoppingGatewayHandsItsUnconfirmedSavesToAPeer(t *testing.T) {
	sf := &syncerFault{}
	f, syncers := startSyncers(t, sf.wrap)
	essay, notes := docOnShard("essay", 0), docOnShard("notes", 0)
	ctx := t.Context()
	for _, d := range []string{essay, notes} {
		if _, err := f.engs[0].Submit(ctx, store.Request{Kind: store.KindCreate, Doc: d, Tenant: "school-a", User: "ada", Content: "Hello"}); err != nil {
			t.Fatal(err)
		}
	}
	update := typedUpdate(t, 4711, "draft of the essay")

	// Shard 1's gateway, which reaches shard 0's syncer directly.
	peerSpool := t.TempDir()
	peer, err := New(Config{Shards: shards, SelfShard: 1, Syncer: syncers[1], Peers: syncers, TokenKey: key, InternalToken: auth.InternalToken(key),
		Logger: slog.New(slog.DiscardHandler), SpoolDir: peerSpool})
	if err != nil {
		t.Fatal(err)
	}
	peerSrv := httptest.NewServer(peer.Handler())
	t.Cleanup(peerSrv.Close)

	spool := t.TempDir()
	var logs syncBuffer
	tr := &deadTransport{}
	stopping, err := New(Config{Shards: shards, SelfShard: 0, Syncer: syncers[0], Peers: []string{syncers[0], peerSrv.URL}, TokenKey: key,
		InternalToken: auth.InternalToken(key), Logger: slog.New(slog.NewTextHandler(&logs, nil)), SpoolDir: spool,
		HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	sf.down.Store(essay, true)
	sf.down.Store(notes, true)
	down := errors.New("syncer unreachable")
	stopping.recordUnconfirmed(store.Request{Kind: store.KindYjs, Doc: essay, Tenant: "school-a", User: "ada", RequestID: "yjs-while-down", Update: update}, down)
	stopping.recordUnconfirmed(store.Request{Kind: store.KindSave, Doc: notes, Tenant: "school-a", User: "ada", RequestID: "rest-while-down", IdempotencyKey: "k-1"}, down)

	// The pod is deleted: its gateway flushes for a moment, then hands
	// over what is left.
	fctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	stopping.FlushUnconfirmed(fctx)
	cancel()
	// Then its process exits: it records nothing more. (An attempt of its
	// own still on the way could record a trace a second time, as after a
	// crash; the pause lets any such attempt meet the syncer still down.)
	tr.dead.Store(true)
	time.Sleep(100 * time.Millisecond)
	if !strings.Contains(logs.String(), "handed unconfirmed saves to a peer gateway") || strings.Contains(logs.String(), "no peer gateway took it") {
		t.Fatalf("the stopping gateway's log:\n%s", logs.String())
	}
	if left, _ := filepath.Glob(filepath.Join(spool, "*")); len(left) != 0 {
		t.Errorf("the stopping gateway's spool still holds %v", left)
	}
	if got, _ := filepath.Glob(filepath.Join(peerSpool, "*.json")); len(got) != 2 {
		t.Errorf("the peer spooled %d traces, want 2 (it may stop next)", len(got))
	}

	sf.down.Clear() // shard 0's syncer is back
	for _, want := range []struct{ doc, request string }{{essay, "yjs-while-down"}, {notes, "rest-while-down"}} {
		var body string
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			rows, err := store.LedgerRows(ctx, f.pool, want.doc)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(rows); n > 1 {
				if n > 2 {
					t.Fatalf("%s: %d ledger entries after its creation, want 1", want.request, n-1)
				}
				body = string(rows[n-1].Body)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the trace of %s was not recorded by the peer", want.request)
			}
		}
		if !strings.Contains(body, `"code":"unconfirmed"`) || !strings.Contains(body, want.request) {
			t.Errorf("ledger entry of %s: %s", want.request, body)
		}
	}
	ev, err := f.engs[0].Evidence(ctx, store.EvidenceQuery{Doc: essay, Tenant: "school-a", Client: 4711})
	if err != nil || ev.Verdict != store.VerdictSavedLocallyNotSynced {
		t.Errorf("evidence of the student's Yjs client: %s %q %v, want %s", ev.Verdict, ev.Proof.Summary, err, store.VerdictSavedLocallyNotSynced)
	}
}

// TestAHandoffTakesOnlyTracesFromAPeer: the handoff endpoint takes the
// internal token only, and only unconfirmed saves' traces; anything else
// is refused whole and queues nothing.
func TestAHandoffTakesOnlyTracesFromAPeer(t *testing.T) {
	g, srv := newReceiver(t, "", nil)
	trace := reviewTrace
	for _, tc := range []struct {
		name, token, body string
		status            int
	}{
		{"a student's token", "student", "[" + trace + "]", http.StatusUnauthorized},
		{"no token", "", "[" + trace + "]", http.StatusUnauthorized},
		{"a save, not a trace", auth.InternalToken(key), `[{"req":{"kind":"save","doc":"d","tenant":"t","user":"u","content":"x"},"at":"2026-11-27T10:00:00Z"}]`, http.StatusBadRequest},
		{"a trace and junk", auth.InternalToken(key), "[" + trace + `,{"hello":1}]`, http.StatusBadRequest},
		{"nothing", auth.InternalToken(key), `[]`, http.StatusBadRequest},
		{"not JSON", auth.InternalToken(key), `[{`, http.StatusBadRequest},
	} {
		if got := postHandoffAs(t, srv.URL, tc.token, tc.body); got != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.status)
		}
	}
	if n := queued(g); n != 0 {
		t.Fatalf("%d traces queued by refused handoffs", n)
	}
}

// TestATraceHandedOffMidAttemptIsNotRecordedAgain: the stopping gateway
// hands a peer the trace it is recording at that moment; that attempt
// then fails. It used to go back in the queue and, the gateway still
// running, be recorded a second time once the syncer answered.
func TestATraceHandedOffMidAttemptIsNotRecordedAgain(t *testing.T) {
	release := make(chan struct{})
	var calls, recorded atomic.Int32
	syncer0 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			<-release // the attempt under way while the gateway stops
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(store.Error{Code: store.CodeUnavailable, Message: "restarting"})
			return
		}
		recorded.Add(1)
		_ = json.NewEncoder(w).Encode(store.Result{Outcome: store.OutcomeRecorded})
	}))
	t.Cleanup(syncer0.Close)
	var taken atomic.Int32
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == PathUnconfirmedHandoff {
			taken.Add(1)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(peer.Close)
	g, err := New(Config{Shards: shards, SelfShard: 0, Syncer: syncer0.URL, Peers: []string{syncer0.URL, peer.URL}, TokenKey: key,
		InternalToken: auth.InternalToken(key), Logger: slog.New(slog.DiscardHandler), SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	g.recordUnconfirmed(store.Request{Kind: store.KindSave, Doc: docOnShard("notes", 0), Tenant: "school-a", User: "ada", RequestID: "r"}, errors.New("syncer unreachable"))
	for deadline := time.Now().Add(5 * time.Second); calls.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the trace was never attempted")
		}
	}
	fctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	g.FlushUnconfirmed(fctx)
	cancel()
	if taken.Load() != 1 {
		t.Fatalf("%d handoffs, want 1", taken.Load())
	}
	close(release)
	time.Sleep(500 * time.Millisecond) // the drain's retries, had it queued the trace again
	if n := recorded.Load(); n != 0 {
		t.Fatalf("the handed-off trace was recorded %d times by the gateway that handed it off", n)
	}
	if n := testutil.ToFloat64(g.cfg.Metrics.unconfirmed); n != 0 {
		t.Fatalf("yawp_gateway_unconfirmed_saves %v, want 0", n)
	}
}
