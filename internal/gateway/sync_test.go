package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/placement"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/syncws"
	"github.com/yawp/persistence-operator/internal/testutil/nodejs"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
	"github.com/yawp/persistence-operator/pkg/localfirst"
)

// syncFixture is two shards, each a syncer (store.Engine behind the
// internal API) and a gateway with its sync Hub; peers are the gateways.
type syncFixture struct {
	*fixture
	gws     []string // gateway base URLs (http://...)
	hubs    []*syncws.Hub
	metrics []*Metrics // each gateway's, kept across restarts
	gateway []*Gateway // the running gateway of each shard
	start   func(i int)
}

func setupSync(t *testing.T) *syncFixture { t.Helper(); return setupSyncWrapped(t, nil) }

// setupSyncWrapped is setupSync with each syncer's handler wrapped by wrap.
func setupSyncWrapped(t *testing.T, wrap func(http.Handler) http.Handler) *syncFixture {
	t.Helper()
	return setupSyncClock(t, wrap, nil)
}

// setupSyncClock is setupSyncWrapped with the gateways' clock now (nil:
// the real one).
func setupSyncClock(t *testing.T, wrap func(http.Handler) http.Handler, now func() time.Time) *syncFixture {
	t.Helper()
	return setupSyncHubs(t, wrap, now, syncws.Limits{})
}

// setupSyncHubs is setupSyncClock with each gateway's hub limited by lim.
func setupSyncHubs(t *testing.T, wrap func(http.Handler) http.Handler, now func() time.Time, lim syncws.Limits) *syncFixture {
	t.Helper()
	itok := auth.InternalToken(key)
	base, syncers := startSyncers(t, wrap)
	f := &syncFixture{fixture: base}
	// Set after the servers start (each gateway needs every URL); the
	// race detector does not see the ordering through TCP, hence atomic.
	handlers := make([]atomic.Pointer[http.Handler], shards)
	for i := range shards {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*handlers[i].Load()).ServeHTTP(w, r) }))
		t.Cleanup(srv.Close)
		f.gws = append(f.gws, srv.URL)
	}
	f.hubs = make([]*syncws.Hub, shards)
	f.gateway = make([]*Gateway, shards)
	for range shards {
		f.metrics = append(f.metrics, NewMetrics())
	}
	// start starts (or restarts: a new process on the same address)
	// gateway i.
	f.start = func(i int) {
		g, err := New(Config{Shards: shards, SelfShard: i, Syncer: syncers[i], Peers: f.gws, TokenKey: key, InternalToken: itok,
			Logger: slog.New(slog.DiscardHandler), Metrics: f.metrics[i], Now: now})
		if err != nil {
			t.Fatal(err)
		}
		be := g.NewSyncBackend()
		hub := syncws.NewHub(syncws.Config{Backend: be, Auth: be.Auth(), Limits: lim})
		wctx, cancel := context.WithCancel(context.Background())
		go be.WatchProtocols(wctx, hub, 100*time.Millisecond)
		t.Cleanup(func() {
			cancel()
			sctx, c2 := context.WithTimeout(context.Background(), 10*time.Second)
			defer c2()
			_ = hub.Shutdown(sctx)
		})
		f.hubs[i] = hub
		f.gateway[i] = g
		h := g.HandlerWithSync(hub)
		handlers[i].Store(&h)
	}
	for i := range shards {
		f.start(i)
	}
	f.url = f.gws[0]
	return f
}

// wsBase is the sync base URL of gateway i as y-websocket wants it (the
// room name is appended with a slash).
func (f *syncFixture) wsBase(i int) string {
	return "ws" + strings.TrimPrefix(f.gws[i], "http") + strings.TrimSuffix(contract.PathSync, "/")
}

// docOnShard returns a fresh document ID placed on shard.
func docOnShard(prefix string, shard int) string {
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if placement.Shard(id, 2) == shard {
			return id
		}
	}
}

// runNode runs test/yjs/ws-client.mjs (stock y-websocket providers).
func runNode(t *testing.T, cfg map[string]any) nodejs.WSClientResult {
	t.Helper()
	if _, ok := cfg["timeoutMs"]; !ok {
		cfg["timeoutMs"] = 30000
	}
	return nodejs.RunWSClient(t, cfg)
}

// eventually polls cond until it holds (generous: loaded CI machines).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readDoc reads a document through the REST API of gateway gw.
func (f *syncFixture) readDoc(gw int, tok, doc string) store.Document {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.gws[gw]+contract.PathDocuments+"/"+doc, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	var d store.Document
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&d) != nil {
		f.t.Fatalf("read %s: %s", doc, res.Status)
	}
	return d
}

// checkBothRepresentations: the REST read equals want, and the legacy row
// equals the Yjs text.
func (f *syncFixture) checkBothRepresentations(tok, doc, want string) {
	f.t.Helper()
	for gw := range f.gws {
		d := f.readDoc(gw, tok, doc)
		if !d.HasYjs {
			f.t.Fatalf("document %s has no Yjs representation", doc)
		}
		if d.LegacyContent != nil {
			f.t.Fatalf("legacy row %q differs from the Yjs text %q", *d.LegacyContent, d.Content)
		}
		if d.Content != want {
			f.t.Fatalf("gateway %d reads %q, clients have %q", gw, d.Content, want)
		}
	}
}

// TestSyncAcrossShards: stock y-websocket clients edit one document
// through both gateways (the other shard's gateway forwards its clients to
// the document's), one goes offline with edits and reconnects; all
// converge on the text the server committed, in both representations.
func TestSyncAcrossShards(t *testing.T) {
	for shard := range 2 {
		t.Run(fmt.Sprint("shard", shard), func(t *testing.T) {
			f := setupSync(t)
			doc := docOnShard("essay", shard)
			var toks []string
			for _, u := range []string{"ada", "bob", "cy", "dee"} {
				toks = append(toks, token(t, "school-a", u, time.Hour, false))
			}
			res := runNode(t, map[string]any{
				"urls": []string{f.wsBase(0), f.wsBase(1)},
				"doc":  doc, "tokens": toks, "edits": 20, "offlineEdits": 10,
			})
			for i, txt := range res.Texts {
				if txt != res.Text {
					t.Fatalf("client %d diverged: %q vs %q", i, txt, res.Text)
				}
			}
			if !strings.Contains(res.Text, "{off.") || !strings.Contains(res.Text, "(1.") {
				t.Fatalf("offline or online edits missing: %q", res.Text)
			}
			f.checkBothRepresentations(toks[0], doc, res.Text)
			// Every connection announced its state vector; nothing is
			// left saved-locally-not-synced.
			ev := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence", toks[0], nil)
			if ev.status != http.StatusOK || ev.body["verdict"] != store.VerdictSynced {
				t.Fatalf("evidence: %d %v", ev.status, ev.body["verdict"])
			}
			var announced int
			for _, e := range ev.body["timeline"].([]any) {
				if e.(map[string]any)["kind"] == "state-vector" {
					announced++
				}
			}
			if announced < 5 {
				t.Fatalf("%d state vectors recorded, want >= 5 (4 clients, one reconnect)", announced)
			}
		})
	}
}

// TestSyncLegacyWriterConverges: a document created and saved through the
// legacy REST API and edited by Yjs clients converges: the Yjs clients see
// the legacy text, the REST API reads theirs, and later legacy saves
// (through the document's gateway and the other one) reach a connected
// Yjs client live.
func TestSyncLegacyWriterConverges(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("report", 1)
	writer := token(t, "school-a", "teacher", time.Hour, false)
	r := f.do(http.MethodPost, contract.PathDocuments, writer, map[string]any{"id": doc, "content": "Legacy intro. "})
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	res := runNode(t, map[string]any{
		"urls": []string{f.wsBase(0), f.wsBase(1)},
		"doc":  doc, "tokens": []string{token(t, "school-a", "ada", time.Hour, false), token(t, "school-a", "bob", time.Hour, false)},
		"edits": 10, "offlineEdits": 5,
	})
	f.checkBothRepresentations(writer, doc, res.Text)
	// A Yjs client (the Go local-first client) stays connected while the
	// legacy writer saves through either gateway: it gets each save live.
	lf, err := localfirst.Open(filepath.Join(t.TempDir(), "lf.ylf"))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop := f.runClient(lf, localfirst.Remote{URL: f.wsBase(0) + "/", DocID: doc, Token: token(t, "school-a", "cy", time.Hour, false)})
	defer stop()
	if err := lf.WaitFor(ctx, func(s string) bool { return s == res.Text }); err != nil {
		t.Fatalf("Yjs client has %q, server %q", lf.Text(), res.Text)
	}
	want := res.Text
	for gw := range f.gws {
		d := f.readDoc(gw, writer, doc)
		want = d.Content + fmt.Sprintf(" Appended by REST via gateway %d.", gw)
		f.url = f.gws[gw]
		r = f.do(http.MethodPut, contract.PathDocuments+"/"+doc, writer, map[string]any{"content": want},
			"If-Match", strconv.Quote(strconv.FormatInt(d.Revision, 10)))
		if r.status != http.StatusOK || r.body["outcome"] != store.OutcomeSaved {
			t.Fatalf("save: %d %s", r.status, r.raw)
		}
		if err := lf.WaitFor(ctx, func(s string) bool { return s == want }); err != nil {
			t.Fatalf("connected Yjs client has %q, REST saved %q", lf.Text(), want)
		}
	}
	// The Yjs client edits; the REST API reads the edit.
	if err := lf.Edit(func(x *yjs.Text) error { return x.Insert(0, "Title. ", nil) }); err != nil {
		t.Fatal(err)
	}
	if err := lf.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.checkBothRepresentations(writer, doc, "Title. "+want)
}

// TestSyncCrossTenantRefused: a stock provider of another tenant is
// refused with 4403 (also when it reaches the document through the other
// shard's gateway), stops reconnecting, and the refusal is in the
// document's ledger.
func TestSyncCrossTenantRefused(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("private", 0)
	owner := token(t, "school-b", "bea", time.Hour, false)
	f.create(owner, doc, "school b only")
	for gw := range 2 {
		res := runNode(t, map[string]any{"mode": "refused", "url": f.wsBase(gw), "doc": doc,
			"tokens": []string{token(t, "school-a", "ada", time.Hour, false)}})
		if len(res.Closes) != 1 || res.Closes[0].Code != contract.CloseForbidden || res.Terminal == nil || res.Terminal.Code != contract.CloseForbidden {
			t.Fatalf("gateway %d: %+v", gw, res)
		}
	}
	if d := f.readDoc(1, owner, doc); d.Content != "school b only" {
		t.Fatalf("content changed: %q", d.Content)
	}
	eventually(t, "refusals in the ledger", func() bool {
		ev := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence", owner, nil)
		n := 0
		for _, e := range ev.body["timeline"].([]any) {
			if m := e.(map[string]any); m["kind"] == "rejected" && m["code"] == fmt.Sprint("websocket_", contract.CloseForbidden) {
				n++
			}
		}
		return n == 2
	})
}

// runClient runs c against gateway gw until the returned stop is called.
func (f *syncFixture) runClient(c *localfirst.Client, r localfirst.Remote) (stop func()) {
	t := f.t
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, r) }()
	return func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("go client: %v", err)
		}
	}
}

// TestSyncEvidenceGoClient: the Go local-first client edits offline and is
// stopped; restarted, it connects, announces its state vector and is cut
// before its operations arrive: the evidence API says
// saved-locally-not-synced with when it was last seen. After a full
// reconnect the same question answers synced and the text holds the draft.
func TestSyncEvidenceGoClient(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("draft", 1)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "Shared start. ")
	path := filepath.Join(t.TempDir(), "student.ylf")
	remote := localfirst.Remote{URL: f.wsBase(0) + "/", DocID: doc, Token: token(t, "school-a", "stu", time.Hour, false)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// First session: sync the document.
	c, err := localfirst.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	stop := f.runClient(c, remote)
	if err := c.WaitFor(ctx, func(s string) bool { return s == "Shared start. " }); err != nil {
		t.Fatalf("initial sync: %q", c.Text())
	}
	stop()
	// Offline edit, then the process goes away.
	if err := c.Edit(func(x *yjs.Text) error { return x.Insert(x.Len(), "My draft.", nil) }); err != nil {
		t.Fatal(err)
	}
	id := c.ClientID()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Restart: the draft is in the local store; connect, announce, cut.
	c, err = localfirst.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Text() != "Shared start. My draft." {
		t.Fatalf("reopened %q", c.Text())
	}
	announce := remote
	announce.AnnounceOnly = true
	stop = f.runClient(c, announce)
	q := contract.PathDocuments + "/" + doc + "/evidence?client=" + strconv.FormatUint(id, 10)
	var announcedAt time.Time
	eventually(t, "saved-locally-not-synced", func() bool {
		ev := f.do(http.MethodGet, q, teacher, nil)
		proof, _ := ev.body["proof"].(map[string]any)
		seen, _ := proof["last_seen"].(string)
		announcedAt, _ = time.Parse(time.RFC3339Nano, seen)
		return ev.body["verdict"] == store.VerdictSavedLocallyNotSynced
	})
	// It stays connected a while, then the connection is cut: last seen
	// is when it went, not when it announced.
	time.Sleep(time.Second)
	stop()
	eventually(t, "last seen at the disconnect", func() bool {
		ev := f.do(http.MethodGet, q, teacher, nil)
		proof, _ := ev.body["proof"].(map[string]any)
		seen, _ := proof["last_seen"].(string)
		at, err := time.Parse(time.RFC3339Nano, seen)
		return ev.body["verdict"] == store.VerdictSavedLocallyNotSynced && err == nil && at.Sub(announcedAt) >= 900*time.Millisecond
	})
	if d := f.readDoc(1, teacher, doc); strings.Contains(d.Content, "My draft.") {
		t.Fatalf("announce-only pushed operations: %q", d.Content)
	}
	// Full reconnect: synced, nothing lost.
	stop = f.runClient(c, remote)
	defer stop()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "synced", func() bool {
		return f.do(http.MethodGet, q, teacher, nil).body["verdict"] == store.VerdictSynced
	})
	f.checkBothRepresentations(teacher, doc, "Shared start. My draft.")
}

// TestSyncProtocolFlip: a connected client that opted in is told its
// cohort's protocol at connect and again when the cohort flips to
// LocalFirst (the gateway polls the stage); REST reads name the stage.
func TestSyncProtocolFlip(t *testing.T) {
	f := setupSync(t)
	ctx := t.Context()
	key := dataplane.CohortKey{Rollout: "default/demo", Cohort: "pilot"}
	cs, err := f.dp.FreezeCohort(ctx, key, 0, dataplane.Selector{Tenants: []string{"school-a"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	doc := docOnShard("flip", 1)
	c, err := localfirst.Open(filepath.Join(t.TempDir(), "flip.ylf"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := f.runClient(c, localfirst.Remote{URL: f.wsBase(0) + "/", DocID: doc, Token: token(t, "school-a", "ada", time.Hour, false)})
	defer stop()
	eventually(t, "write-through at connect", func() bool { return c.Protocol() == contract.ProtocolWriteThrough })
	if _, err := f.dp.SetStage(ctx, dataplane.StageChange{Key: key, ExpectEpoch: cs.Epoch, Stage: dataplane.StageLocalFirst,
		Attempt: 1, Reason: "Test", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "local-first after the flip", func() bool { return c.Protocol() == contract.ProtocolLocalFirst })
	// The client's edits are committed under the new stage.
	if err := c.Edit(func(x *yjs.Text) error { return x.Insert(0, "after the flip", nil) }); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tok := token(t, "school-a", "ada", time.Hour, false)
	f.checkBothRepresentations(tok, doc, "after the flip")
	if d := f.readDoc(0, tok, doc); d.Stage.Stage != dataplane.StageLocalFirst {
		t.Fatalf("stage %q", d.Stage.Stage)
	}
}

// TestSyncGarbageUpdate: a well-framed update message holding garbage
// (through the forwarding gateway) is closed with 4400 and a reason, the
// document is unchanged, the refusal is in the ledger exactly once, and
// the gateway keeps serving.
func TestSyncGarbageUpdate(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("garbage", 1)
	tok := token(t, "school-a", "mal", time.Hour, false)
	f.create(tok, doc, "keep me")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, f.wsBase(0)+"/"+doc+"?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ws.CloseNow() }()
	if p := resp.Header.Get(contract.HeaderProtocol); p != contract.ProtocolWriteThrough {
		t.Fatalf("%s: %q", contract.HeaderProtocol, p)
	}
	ws.SetReadLimit(64 << 20)
	if err := ws.Write(ctx, websocket.MessageBinary, yprotocol.EncodeUpdate([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3})); err != nil {
		t.Fatal(err)
	}
	for {
		_, _, err := ws.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || int(ce.Code) != contract.CloseMalformed || ce.Reason == "" {
			t.Fatalf("want close %d with a reason, got %v", contract.CloseMalformed, err)
		}
		break
	}
	if d := f.readDoc(0, tok, doc); d.Content != "keep me" {
		t.Fatalf("content changed: %q", d.Content)
	}
	ev := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence", tok, nil)
	n := 0
	for _, e := range ev.body["timeline"].([]any) {
		if e.(map[string]any)["kind"] == "rejected" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d rejections recorded, want 1: %s", n, ev.raw)
	}
	// An update over the syncer's limit: 4413, recorded once, nothing changed.
	ws2, _, err := websocket.Dial(ctx, f.wsBase(1)+"/"+doc+"?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ws2.CloseNow() }()
	if err := ws2.Write(ctx, websocket.MessageBinary, yprotocol.EncodeUpdate(make([]byte, contract.MaxUpdateBytes+10))); err != nil {
		t.Fatal(err)
	}
	for {
		_, _, err := ws2.Read(ctx)
		if err == nil {
			continue
		}
		if code := websocket.CloseStatus(err); int(code) != contract.CloseTooLarge {
			t.Fatalf("want close %d, got %v", contract.CloseTooLarge, err)
		}
		break
	}
	if d := f.readDoc(1, tok, doc); d.Content != "keep me" {
		t.Fatalf("content changed: %q", d.Content)
	}
	eventually(t, "the oversize update's refusal in the ledger", func() bool {
		ev := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence", tok, nil)
		n := 0
		for _, e := range ev.body["timeline"].([]any) {
			if e.(map[string]any)["kind"] == "rejected" {
				n++
			}
		}
		return n == 2
	})
}

// TestSyncGracefulShutdown: the document's gateway shuts down (Hub.Shutdown
// as on SIGTERM) while a client edits; the client is closed with 1001,
// reconnects to the replacement, and every edit it made is on the server.
func TestSyncGracefulShutdown(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("shutdown", 1)
	c, err := localfirst.Open(filepath.Join(t.TempDir(), "sd.ylf"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := f.runClient(c, localfirst.Remote{URL: f.wsBase(1) + "/", DocID: doc, Token: token(t, "school-a", "ada", time.Hour, false)})
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	edit := func(k int) {
		if err := c.Edit(func(x *yjs.Text) error { return x.Insert(x.Len(), fmt.Sprintf("<%d>", k), nil) }); err != nil {
			t.Fatal(err)
		}
	}
	var want strings.Builder
	for k := range 20 {
		edit(k)
		fmt.Fprintf(&want, "<%d>", k)
	}
	old := f.hubs[1]
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := old.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown did not drain: %v", err)
	}
	for k := 20; k < 30; k++ { // offline meanwhile
		edit(k)
		fmt.Fprintf(&want, "<%d>", k)
	}
	f.start(1) // the replacement pod
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.checkBothRepresentations(token(t, "school-a", "ada", time.Hour, false), doc, want.String())
}

// TestSyncForeignHistory: an editor that typed a document's legacy text
// into a fresh local copy (a history the server does not know) connects.
// Its copy is not CRDT-merged, which would double the text: the server
// merges it on text, keeps it preserved, and closes the connection with
// 4409; the client sets its copy aside (Reset) and syncs the merged text.
func TestSyncForeignHistory(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("fable", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "The cat sat.")
	path := filepath.Join(t.TempDir(), "foreign.ylf")
	c, err := localfirst.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Edit(func(x *yjs.Text) error {
		if err := x.Insert(0, "The cat sat.", nil); err != nil {
			return err
		}
		return x.Insert(0, "Today: ", nil)
	}); err != nil {
		t.Fatal(err)
	}
	foreignID := c.ClientID()
	remote := localfirst.Remote{URL: f.wsBase(1) + "/", DocID: doc, Token: token(t, "school-a", "stu", time.Hour, false)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Run(ctx, remote)
	if !localfirst.IsForeignHistory(err) {
		t.Fatalf("run with a foreign copy: %v, want close %d", err, contract.CloseForeignHistory)
	}
	want := "Today: The cat sat."
	f.checkBothRepresentations(teacher, doc, want)
	archived, err := c.Reset()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(archived); err != nil {
		t.Fatalf("the local copy was not kept: %v", err)
	}
	stop := f.runClient(c, remote)
	defer stop()
	if err := c.WaitFor(ctx, func(s string) bool { return s == want }); err != nil {
		t.Fatalf("after the reset the client has %q, want %q", c.Text(), want)
	}
	ev := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?client="+strconv.FormatUint(foreignID, 10), teacher, nil)
	proof, _ := ev.body["proof"].(map[string]any)
	if ev.body["verdict"] != store.VerdictOverwrittenPreserved || proof["preserved_at"] == nil {
		t.Fatalf("evidence of the foreign copy: %s", ev.raw)
	}
}
