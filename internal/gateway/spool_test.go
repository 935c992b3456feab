package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/store"
)

// deadTransport stands in for a gateway process that died: once dead,
// every request it would make fails, so it records nothing more.
type deadTransport struct{ dead atomic.Bool }

func (d *deadTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if d.dead.Load() {
		return nil, errors.New("this gateway process is gone")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestUnconfirmedSavesSurviveAGatewayRestart: a shard's syncer is down
// (restarting, or its database unreachable); a REST save and a student's
// Yjs update reach the gateway, are answered 503/4500 ("retry") and wait
// to be recorded in their ledgers (I6). The gateway container then
// crashes or is restarted before the syncer is back. Those traces lived
// only in its memory: the ledger never learnt of the attempts, and
// evidence for the student's Yjs client said never-persisted instead of
// saved-locally-not-synced. Kept in the pod's spool, the restarted
// gateway records them.
func TestUnconfirmedSavesSurviveAGatewayRestart(t *testing.T) {
	sf := &syncerFault{}
	f, syncers := startSyncers(t, sf.wrap)
	essay, notes := docOnShard("essay", 0), docOnShard("notes", 0)
	ctx := t.Context()
	own := f.engs[0]
	for _, d := range []string{essay, notes} {
		if _, err := own.Submit(ctx, store.Request{Kind: store.KindCreate, Doc: d, Tenant: "school-a", User: "ada", Content: "Hello"}); err != nil {
			t.Fatal(err)
		}
	}
	update := typedUpdate(t, 4711, "draft of the essay")

	spool := t.TempDir()
	var logs syncBuffer
	tr := &deadTransport{}
	cfg := Config{Shards: shards, SelfShard: 0, Syncer: syncers[0], Peers: syncers, TokenKey: key, InternalToken: auth.InternalToken(key),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), SpoolDir: spool, HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sf.down.Store(essay, true)
	sf.down.Store(notes, true)
	down := errors.New("syncer unreachable")
	first.recordUnconfirmed(store.Request{Kind: store.KindYjs, Doc: essay, Tenant: "school-a", User: "ada", RequestID: "yjs-while-down", Update: update}, down)
	first.recordUnconfirmed(store.Request{Kind: store.KindSave, Doc: notes, Tenant: "school-a", User: "ada", RequestID: "rest-while-down", IdempotencyKey: "k-1"}, down)
	files, _ := filepath.Glob(filepath.Join(spool, "*.json"))
	if len(files) != 2 {
		t.Fatalf("%d traces spooled, want 2", len(files))
	}
	tr.dead.Store(true) // the container dies
	// What a crash can leave besides: a write cut short, and a file
	// that is not a trace.
	if err := os.WriteFile(filepath.Join(spool, "00000000000000000001-cut.json.tmp"), []byte(`{"req":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(spool, "00000000000000000002-junk.json"), []byte(`{"hello":1}`), 0o600); err != nil {
		t.Fatal(err)
	}

	sf.down.Clear() // the syncer is back
	cfg.HTTP = nil
	if _, err := New(cfg); err != nil { // the restarted container
		t.Fatal(err)
	}
	for _, want := range []struct{ doc, request string }{{essay, "yjs-while-down"}, {notes, "rest-while-down"}} {
		var body string
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			rows, err := store.LedgerRows(ctx, f.pool, want.doc)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(rows); n > 1 {
				body = string(rows[n-1].Body)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the trace of %s was not recorded after the restart", want.request)
			}
		}
		if !strings.Contains(body, `"code":"unconfirmed"`) || !strings.Contains(body, want.request) {
			t.Errorf("ledger entry of %s: %s", want.request, body)
		}
	}
	ev, err := own.Evidence(ctx, store.EvidenceQuery{Doc: essay, Tenant: "school-a", Client: 4711})
	if err != nil || ev.Verdict != store.VerdictSavedLocallyNotSynced {
		t.Errorf("evidence of the student's Yjs client: %s %q %v, want %s", ev.Verdict, ev.Proof.Summary, err, store.VerdictSavedLocallyNotSynced)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left, _ := filepath.Glob(filepath.Join(spool, "*"))
		if len(left) == 1 && strings.HasSuffix(left[0], "-junk.json"+spoolUnreadable) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool after the traces were recorded: %v, want only the junk set aside", left)
		}
	}
	if !strings.Contains(logs.String(), "unreadable unconfirmed save in the spool; set aside") {
		t.Errorf("the file that is not a trace was not logged:\n%s", logs.String())
	}
}

// TestUnconfirmedUpdatesAreBoundedInBytes: while a syncer is down, one
// student sends 4 MiB Yjs updates. Each one's trace kept its update (for
// its hash and clients), so the gateway's memory (and spool) grew by 4 MiB
// a trace, up to 16 GiB for a full queue. Past 64 MiB the traces keep no
// update, say so, and are all still recorded.
func TestUnconfirmedUpdatesAreBoundedInBytes(t *testing.T) {
	sy := newRecordingSyncer(t)
	spool := t.TempDir()
	g, err := New(Config{Shards: 1, SelfShard: 0, Syncer: sy.URL, TokenKey: key, InternalToken: auth.InternalToken(key),
		Logger: slog.New(slog.DiscardHandler), SpoolDir: spool})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, contract.MaxUpdateBytes)
	const n = 20 // 80 MiB of updates
	for i := range n {
		g.recordUnconfirmed(store.Request{Kind: store.KindYjs, Doc: "d", Tenant: "school-a", User: "u", RequestID: fmt.Sprint("u", i), Update: big}, errors.New("syncer unreachable"))
	}
	g.unconfMu.Lock()
	held := g.unconfBytes
	g.unconfMu.Unlock()
	if held > unconfirmedUpdateBytes {
		t.Fatalf("the queue holds %d MiB of updates, the bound is %d MiB", held>>20, unconfirmedUpdateBytes>>20)
	}
	var spooled int64
	files, _ := filepath.Glob(filepath.Join(spool, "*.json"))
	for _, p := range files {
		if st, err := os.Stat(p); err == nil {
			spooled += st.Size()
		}
	}
	if len(files) != n || spooled > 1<<20 { // traces, not the updates
		t.Fatalf("spool: %d files, %d bytes", len(files), spooled)
	}
	sy.up.Store(true)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		k := sy.count()
		if k == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d traces recorded", k, n)
		}
	}
	kept := 0
	for i := range n {
		r, _ := sy.recorded(fmt.Sprint("u", i))
		switch {
		case len(r.Update) == len(big):
			kept++
		case len(r.Update) != 0 || !strings.Contains(r.Reason, "was not kept"):
			t.Errorf("trace u%d: %d update bytes, reason %q", i, len(r.Update), r.Reason)
		}
	}
	if kept != unconfirmedUpdateBytes/len(big) {
		t.Errorf("%d traces kept their update, want %d", kept, unconfirmedUpdateBytes/len(big))
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		g.unconfMu.Lock()
		held = g.unconfBytes
		g.unconfMu.Unlock()
		left, _ := filepath.Glob(filepath.Join(spool, "*"))
		if held == 0 && len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after recording: %d bytes held, %d files spooled", held, len(left))
		}
	}
}

// TestUnconfirmedSavesAreVisibleToOperators: traces waiting for their
// syncer, and the ones that never reach a ledger (their log lines are
// then the only record, I6 at risk), were visible only in the gateway's
// log. yawp_gateway_unconfirmed_saves counts the waiting ones and
// yawp_gateway_unconfirmed_saves_lost_total the lost ones, by reason,
// for the YawpGatewayUnconfirmedSavesLost alert.
func TestUnconfirmedSavesAreVisibleToOperators(t *testing.T) {
	sy := newRecordingSyncer(t, "refused")
	spool := t.TempDir()
	if err := os.WriteFile(filepath.Join(spool, "00000000000000000002-junk.json"), []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	g, err := New(Config{Shards: 1, SelfShard: 0, Syncer: sy.URL, TokenKey: key, InternalToken: auth.InternalToken(key),
		Logger: slog.New(slog.DiscardHandler), SpoolDir: spool, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"kept", "refused"} {
		g.recordUnconfirmed(store.Request{Kind: store.KindSave, Doc: "d", Tenant: "t", User: "u", RequestID: id}, errors.New("syncer unreachable"))
	}
	if n := testutil.ToFloat64(m.unconfirmed); n != 2 {
		t.Errorf("waiting traces: %v, want 2", n)
	}
	sy.up.Store(true)
	for deadline := time.Now().Add(20 * time.Second); testutil.ToFloat64(m.unconfirmed) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting traces after the syncer answered: %v", testutil.ToFloat64(m.unconfirmed))
		}
	}
	for reason, want := range map[string]float64{lostRefused: 1, lostUnreadable: 1, lostQueueFull: 0, lostPatience: 0} {
		if got := testutil.ToFloat64(m.unconfLost.WithLabelValues(reason)); got != want {
			t.Errorf("lost traces, %s: %v, want %v", reason, got, want)
		}
	}
}
