package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/ledger"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/syncws"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestSyncCreatorOfADocumentCreatedAgainOverREST: a student opens a new
// document and types it into existence over sync (its connection was
// answered from an empty document). The legacy application deletes it and
// the school creates a document with the same ID over REST. The student's
// client holds the deleted text: it must be closed with 4409 and sent
// nothing of the new text, as a client answered from the deleted history
// is, not shown "abc" and "wxyz12" run together.
func TestSyncCreatorOfADocumentCreatedAgainOverREST(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("essay-typed", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stu, _, done := heldCopy(t, f, ctx, doc, "stu", "")
	if err := stu.Edit(func(x *yjs.Text) error { return x.Insert(0, "abc", nil) }); err != nil {
		t.Fatal(err)
	}
	if err := stu.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.checkBothRepresentations(teacher, doc, "abc")

	deleteOutside(t, f.fixture, teacher, doc)
	f.create(teacher, doc, "wxyz12")
	closedAsForeign(t, ctx, stu, done, "abc")
}

// TestSyncForwardedConnectionClosedCleanlyAtShutdown: a student's
// connection reached gateway 1 for a document of shard 0 and is forwarded
// to gateway 0. When gateway 1 shuts down, the student's client used to
// see its connection cut without a close frame (1006, as after a crash)
// when the process exited. It now gets every message sent to it before,
// whole, then 1001 (reconnect), and after reconnecting holds everything.
func TestSyncForwardedConnectionClosedCleanlyAtShutdown(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("fwd-exit", 0)
	tok := token(t, "school-a", "stu", time.Hour, false)
	fwd := dialPeer(t, f.wsBase(1)+"/"+doc+"?token="+tok, 601)
	fwd.handshake()
	local := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+tok, 602)
	local.handshake()
	// A large update (several frames' worth of bytes on the wire) and a
	// small one relayed to the forwarded client around the shutdown.
	local.send(yprotocol.EncodeUpdate(local.insert(strings.Repeat("x", 1<<20))))
	local.send(yprotocol.EncodeUpdate(local.insert("end")))
	time.Sleep(50 * time.Millisecond)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.hubs[1].Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() { shut <- f.gateway[1].ShutdownForwarded(sctx) }()
	_, err := fwd.drain(5 * time.Second)
	if websocket.CloseStatus(err) != contract.CloseGoingAway {
		t.Fatalf("the forwarded client's connection ended with %v (close %d), want %d", err, websocket.CloseStatus(err), contract.CloseGoingAway)
	}
	if err := <-shut; err != nil {
		t.Fatalf("forwarded connections still open: %v", err)
	}
	// The document exists once the first update commits (the empty
	// handshakes created nothing): until then it reads 404.
	eventually(t, "the updates committed", func() bool {
		r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, tok, nil)
		c, _ := r.body["content"].(string)
		return r.status == http.StatusOK && len(c) == len(local.text())
	})
	// Whatever it missed it gets at its next sync, through gateway 0.
	again := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+tok, 601)
	if err := again.doc.ApplyUpdate(fwd.doc.EncodeStateAsUpdate(nil)); err != nil {
		t.Fatal(err)
	}
	again.handshake()
	if got, want := again.text(), local.text(); got != want {
		t.Fatalf("after reconnecting the client holds %d characters, want %d", len(got), len(want))
	}
}

// TestFrameTapClosesAtAFrameBoundary: the shutdown's close frame follows
// the last whole frame passed on, however the peer's bytes arrive: a
// frame cut in two would leave the client unable to read the close (it
// would see 1006 or a protocol error).
func TestFrameTapClosesAtAFrameBoundary(t *testing.T) {
	frame := func(payload int) []byte {
		var h []byte
		switch {
		case payload < 126:
			h = []byte{0x82, byte(payload)}
		case payload < 1<<16:
			h = []byte{0x82, 126, byte(payload >> 8), byte(payload)}
		default:
			h = []byte{0x82, 127, 0, 0, 0, 0, byte(payload >> 24), byte(payload >> 16), byte(payload >> 8), byte(payload)}
		}
		return append(h, bytes.Repeat([]byte{'y'}, payload)...)
	}
	whole := append(append(frame(5), frame(300)...), frame(70000)...)
	pr, pw := io.Pipe()
	stop := make(chan struct{})
	tap := newFrameTap(peerPipe{pr}, stop)
	defer tap.Close()
	go func() {
		// The first two frames and part of the third; stop; the rest.
		cut := len(frame(5)) + len(frame(300)) + 7
		_, _ = pw.Write(whole[:3])
		_, _ = pw.Write(whole[3:cut])
		time.Sleep(50 * time.Millisecond)
		close(stop)
		time.Sleep(50 * time.Millisecond)
		_, _ = pw.Write(whole[cut:])
		_, _ = pw.Write(frame(1)) // after the close: not passed on
	}()
	got, err := io.ReadAll(tap)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte(nil), whole...), goingAwayFrame(shutdownReason)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("passed on %d bytes, want the three frames and the close frame (%d bytes)", len(got), len(want))
	}
}

// TestSyncStepOneAnsweredAcrossARecreation: a student's connection asks
// for the document (sync step 1) and is answered from its text ("abc")
// just before the document is deleted outside the gateway and created
// again ("wxyz12"); the gateway, seeing the new document, closes the
// room's connections answered from the old text, but this one had not
// been noted yet (its answer was on its way back from the syncer). It
// was then sent both texts and showed them run together. Now the answer
// is asked again when the room's history was replaced meanwhile.
func TestSyncStepOneAnsweredAcrossARecreation(t *testing.T) {
	_, late, _ := lateStepOneAcrossARecreation(t, "essay-late", "")
	_, err := late.drain(2 * time.Second)
	// Either answered from the new document, or refused as a copy of the
	// old one (and shown nothing of the new text).
	got := late.text()
	refused := got == "abc" && websocket.CloseStatus(err) == contract.CloseForeignHistory
	if got != "wxyz12" && !refused {
		t.Fatalf("the late connection shows %q (closed: %v): the deleted text and the new one together", got, err)
	}
}

// TestSyncStepOneAnsweredAcrossARecreationIsRecordedOnce: as above, the
// late student's client holding "hi", typed offline, which the server
// lacks. The gateway asked the syncer for the answer to its one sync step
// 1 a second time, and each time the syncer recorded the announcement:
// the ledger had two state-vector entries for the one message under the
// connection's request ID. It has one, and asked about the request,
// evidence says what it said of the two: the client announced operations
// the server does not hold.
func TestSyncStepOneAnsweredAcrossARecreationIsRecordedOnce(t *testing.T) {
	f, late, doc := lateStepOneAcrossARecreation(t, "essay-late-once", "hi") // typed offline: client 702's clocks 0-1
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	// Its answer, asked again, is of the new document.
	for {
		m, ok, err := late.next(10 * time.Second)
		if err != nil || !ok {
			t.Fatalf("the late connection's answer: %v (timeout %v)", err, !ok)
		}
		if m.Type == yprotocol.MessageSync && m.Sync != yprotocol.SyncStep1 {
			late.apply(m.Payload)
		}
		if m.Type == yprotocol.MessageSync && m.Sync == yprotocol.SyncStep2 {
			break
		}
	}
	if got := late.text(); !strings.Contains(got, "wxyz12") || strings.Contains(got, "abc") {
		t.Fatalf("the late connection shows %q, want its own text and the new document's", got)
	}

	rows, err := store.LedgerRows(t.Context(), f.pool, doc)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rows {
		var en ledger.Entry
		if err := json.Unmarshal(r.Body, &en); err != nil {
			t.Fatal(err)
		}
		if en.Kind == ledger.KindStateVector && en.User == "late" {
			ids = append(ids, en.RequestID)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("the late client's one sync step 1 has %d state-vector entries in the ledger (request IDs %v), want 1", len(ids), ids)
	}
	proof := requestEvidence(t, f, teacher, doc, ids[0], store.VerdictSavedLocallyNotSynced,
		"client 702 announced operations up to clock 2", "the server holds 0 of them")
	if es, _ := proof["entries"].([]any); len(es) != 1 {
		t.Errorf("proof entries %v, want the one announcement", es)
	}
}

// lateStepOneAcrossARecreation: a teacher creates a document ("abc")
// on shard 0; a student's connection has read it; a late student's
// connection (client 702, holding offline if not empty) sends its sync
// step 1, which the syncer answers from "abc" just before the document is
// deleted outside the gateway and created again ("wxyz12"). The first
// connection is closed 4409; the late one's answer is then let go.
func lateStepOneAcrossARecreation(t *testing.T, name, offline string) (f *syncFixture, late *rawPeer, doc string) {
	t.Helper()
	f, arm, computed, release := holdLateStepOne(t)
	doc = docOnShard(name, 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "abc")
	early := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+token(t, "school-a", "stu", time.Hour, false), 701)
	early.handshake()

	arm()
	late = dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+token(t, "school-a", "late", time.Hour, false), 702)
	if offline != "" {
		late.insert(offline)
	}
	late.send(yprotocol.EncodeSyncStep1(late.doc.EncodeStateVector()))
	<-computed // answered from "abc", not yet back at the gateway
	deleteOutside(t, f.fixture, teacher, doc)
	f.create(teacher, doc, "wxyz12")
	if _, err := early.drain(5 * time.Second); websocket.CloseStatus(err) != contract.CloseForeignHistory {
		t.Fatalf("the connection answered from the deleted document: %v, want close %d", err, contract.CloseForeignHistory)
	}
	close(release)
	return f, late, doc
}

// holdLateStepOne is a sync fixture whose syncers, once arm is called,
// hold the answer to user "late"'s next sync step 1 after computing (and
// recording) it, closing computed, until release is closed.
func holdLateStepOne(t *testing.T) (f *syncFixture, arm func(), computed, release chan struct{}) {
	t.Helper()
	var armed atomic.Bool
	computed, release = make(chan struct{}), make(chan struct{})
	hold := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var req store.Request
			if json.Unmarshal(body, &req) != nil || req.Kind != store.KindSync1 || req.User != "late" || !armed.CompareAndSwap(true, false) {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			close(computed)
			<-release
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		})
	}
	return setupSyncWrapped(t, hold), func() { armed.Store(true) }, computed, release
}

// gatewayWithShardsDown serves a gateway of shard 0 of 2 whose syncer and
// shard 1's gateway are both down (their addresses answer nothing).
func gatewayWithShardsDown(t *testing.T) *httptest.Server {
	t.Helper()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	g, err := New(Config{Shards: 2, SelfShard: 0, Syncer: dead.URL, Peers: []string{"http://self.invalid", dead.URL}, TokenKey: key,
		Logger: slog.New(slog.DiscardHandler), Metrics: NewMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	be := g.NewSyncBackend()
	hub := syncws.NewHub(syncws.Config{Backend: be, Auth: be.Auth()})
	srv := httptest.NewServer(g.HandlerWithSync(hub))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = hub.Shutdown(ctx)
	})
	return srv
}

// TestSyncUnreachableShardGatewayClosesWithACode: a student connects
// through gateway 0 to a document of shard 1 while shard 1's gateway is
// down (restarting). The forwarding answered the upgrade with HTTP 502,
// which a browser cannot see: its client got a close without a code
// (1006) and no reason. It now gets 4500 (backend failure: reconnect and
// re-sync) with the reason, as when the gateway's own syncer is down.
func TestSyncUnreachableShardGatewayClosesWithACode(t *testing.T) {
	srv := gatewayWithShardsDown(t)
	doc := docOnShard("essay-far", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+contract.PathSync+doc+"?token="+token(t, "school-a", "stu", time.Hour, false), nil)
	if err != nil {
		t.Fatalf("the upgrade was refused (%v): a browser sees a close without a code", err)
	}
	defer func() { _ = ws.CloseNow() }()
	_, _, err = ws.Read(ctx)
	if websocket.CloseStatus(err) != contract.CloseInternalError {
		t.Fatalf("closed with %v, want %d", err, contract.CloseInternalError)
	}
}

// TestFrameTapAddsNoCloseAfterThePeers: when the document's gateway
// closed the connection itself (its own shutdown, 1001), its close frame
// is the client's; the stopping gateway adds none after it.
func TestFrameTapAddsNoCloseAfterThePeers(t *testing.T) {
	pr, pw := io.Pipe()
	stop := make(chan struct{})
	tap := newFrameTap(peerPipe{pr}, stop)
	defer tap.Close()
	peers := goingAwayFrame("peer")
	go func() {
		_, _ = pw.Write(peers)
		time.Sleep(50 * time.Millisecond)
		close(stop)
		time.Sleep(50 * time.Millisecond)
		_ = pw.Close()
	}()
	got, err := io.ReadAll(tap)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, peers) {
		t.Fatalf("passed on % x, want the peer's close frame alone", got)
	}
}
