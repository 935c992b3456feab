package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/placement"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/syncer"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// syncerFault makes the syncers' internal apply endpoint fail like a
// syncer killed mid-request: cutBefore drops the connection before the
// request reaches the engine; cutAfter (one shot) lets it commit, then
// drops the connection without the answer.
type syncerFault struct {
	cutBefore atomic.Bool
	cutAfter  atomic.Bool
	kind      string   // only requests whose body holds this (empty: all)
	down      sync.Map // doc ID -> true: every apply naming it is cut before the engine
	// hold, when set, keeps matching applies from the engine until it is
	// closed or their request ends (a slow syncer).
	hold chan struct{}
}

func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			_ = c.Close()
		}
	}
}

func (sf *syncerFault) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Applies travel alone or, under load, in batches: a fault on
		// any request of a batch cuts the whole call, as a syncer going
		// down would.
		if r.URL.Path == syncer.PathApply || r.URL.Path == syncer.PathApplyBatch {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			match := sf.kind == "" || bytes.Contains(body, []byte(`"kind":"`+sf.kind+`"`))
			var cut bool
			sf.down.Range(func(k, _ any) bool {
				cut = cut || bytes.Contains(body, []byte(`"doc":"`+k.(string)+`"`))
				return true
			})
			if cut {
				hijackClose(w)
				return
			}
			if match && sf.cutBefore.Load() {
				hijackClose(w)
				return
			}
			if match && sf.hold != nil {
				select {
				case <-sf.hold:
				case <-r.Context().Done():
					return
				}
			}
			if match && sf.cutAfter.CompareAndSwap(true, false) {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				hijackClose(w)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func waitClose(t *testing.T, p *rawPeer) int {
	t.Helper()
	_, err := p.drain(10 * time.Second)
	return int(websocket.CloseStatus(err))
}

// TestSyncUpdateInDoubtLeavesATrace: a sync WebSocket update whose
// commit the gateway cannot confirm (the syncer's connection is cut) closes
// the connection with 4500, but, unlike the same update over REST, leaves
// no trace in the ledger: evidence about the client says never-persisted.
func TestSyncUpdateInDoubtLeavesATrace(t *testing.T) {
	sf := &syncerFault{kind: store.KindYjs}
	f := setupSyncWrapped(t, sf.wrap)
	doc := docOnShard("wsdoubt", 1)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "Start. ")
	stu := token(t, "school-a", "stu", time.Hour, false)
	const client = 7001
	p := dialPeer(t, f.wsBase(1)+"/"+doc+"?token="+stu, client)
	p.handshake()
	time.Sleep(500 * time.Millisecond) // the handshake's step 2 is applied
	sf.cutBefore.Store(true)
	p.send(yprotocol.EncodeUpdate(p.insert("My essay.")))
	if code := waitClose(t, p); code != contract.CloseInternalError {
		t.Fatalf("close %d, want %d", code, contract.CloseInternalError)
	}
	sf.cutBefore.Store(false)
	// The student's device is lost now; support asks about the client.
	time.Sleep(3 * time.Second) // REST's unconfirmed trace is written within ~100 ms of the syncer answering
	for _, q := range []string{"client=" + strconv.Itoa(client), "user=stu"} {
		ev := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?"+q, teacher, nil)
		if ev.body["verdict"] == store.VerdictNeverPersisted {
			t.Errorf("evidence ?%s after an update the gateway could not confirm: verdict %v, timeline %v", q, ev.body["verdict"], ev.body["timeline"])
		}
	}
}

// TestInDoubtCommittedUpdateReachesTheRoom: client A's update
// commits but the syncer's answer is lost; A is closed with 4500,
// reconnects and re-sends (a duplicate now). B, connected all along, must
// get A's text; the gateway relays nothing for a duplicate, so B never
// does.
func TestInDoubtCommittedUpdateReachesTheRoom(t *testing.T) {
	sf := &syncerFault{kind: store.KindYjs}
	f := setupSyncWrapped(t, sf.wrap)
	doc := docOnShard("wsroom", 1)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "Start. ")
	a := dialPeer(t, f.wsBase(1)+"/"+doc+"?token="+token(t, "school-a", "ann", time.Hour, false), 8001)
	a.handshake()
	b := dialPeer(t, f.wsBase(1)+"/"+doc+"?token="+token(t, "school-a", "bob", time.Hour, false), 8002)
	b.handshake()
	time.Sleep(500 * time.Millisecond) // the handshakes' step 2 (empty updates) are applied
	sf.cutAfter.Store(true)
	a.send(yprotocol.EncodeUpdate(a.insert("Ann's line.")))
	if code := waitClose(t, a); code != contract.CloseInternalError {
		t.Fatalf("close %d, want %d", code, contract.CloseInternalError)
	}
	// A reconnects (the same replica) and re-syncs, as y-websocket does.
	ws, _, err := websocket.Dial(context.Background(), f.wsBase(1)+"/"+doc+"?token="+token(t, "school-a", "ann", time.Hour, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(64 << 20)
	a.ws = ws
	a.handshake()
	if d := f.readDoc(1, teacher, doc); d.Content != "Start. Ann's line." {
		t.Fatalf("server text %q", d.Content)
	}
	if _, err := b.drain(3 * time.Second); err != nil {
		t.Fatalf("b closed: %v", err)
	}
	if got := b.text(); got != "Start. Ann's line." {
		t.Errorf("B, connected throughout, has %q; the server committed %q", got, "Start. Ann's line.")
	}
}

// TestRESTYjsUpdateInDoubtIsFoundByClient: a Yjs update over REST
// whose commit cannot be confirmed is recorded as unconfirmed with the
// update (it was recorded without it, and evidence asked about its client
// found nothing). The server does not hold its operations, so evidence
// about the request or the client says saved-locally-not-synced, the
// refusal among the findings.
func TestRESTYjsUpdateInDoubtIsFoundByClient(t *testing.T) {
	sf := &syncerFault{kind: store.KindYjs}
	f := setupSyncWrapped(t, sf.wrap)
	doc := docOnShard("restdoubt", 0)
	tok := token(t, "school-a", "stu", time.Hour, false)
	f.create(tok, doc, "Start. ")
	p := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+tok, 9001)
	p.handshake()
	u := p.insert("offline text")
	_ = p.ws.CloseNow()
	sf.cutBefore.Store(true)
	r := f.do(http.MethodPost, contract.PathDocuments+"/"+doc+"/updates", tok, u, "X-Request-Id", "up-1")
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("update while the syncer is cut: %d %s", r.status, r.raw)
	}
	sf.cutBefore.Store(false)
	eventually(t, "unconfirmed trace", func() bool {
		return f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?request=up-1", tok, nil).body["verdict"] == store.VerdictSavedLocallyNotSynced
	})
	ev := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?client=9001", tok, nil)
	if ev.body["verdict"] != store.VerdictSavedLocallyNotSynced || !strings.Contains(ev.raw, `"refused: unconfirmed"`) {
		t.Errorf("evidence ?client=9001: %v, want saved-locally-not-synced with the unconfirmed refusal among the findings: %s", ev.body["verdict"], strings.TrimSpace(ev.raw)[:min(600, len(ev.raw))])
	}
}

// TestLargeYjsHistoryStillSyncs: a document whose Yjs history (text
// typed and deleted; deleted content is kept) passed 48 MiB. The syncer
// answers sync step 1 with all of it, 4/3 of it in base64. The gateway's
// client read at most 64 MiB of an answer, failed to decode the cut JSON
// and answered 503 "changed nothing; retry": nobody could open the
// document over sync any more. Found by review.
func TestLargeYjsHistoryStillSyncs(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("bighist", 0)
	tok := token(t, "school-a", "stu", time.Hour, false)
	f.create(tok, doc, "Start. ")
	p := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+tok, 9101)
	p.handshake()
	_ = p.ws.CloseNow()
	chunk := strings.Repeat("pasted text, then deleted. ", (3600<<10)/27)
	txt := p.doc.GetText(contract.YjsTextName)
	for i := range 15 {
		n := txt.Len()
		if err := txt.Insert(n, chunk, nil); err != nil {
			t.Fatal(err)
		}
		if err := txt.Delete(n, len(chunk)); err != nil {
			t.Fatal(err)
		}
		u, err := yjs.MergeUpdates(p.pending...)
		if err != nil {
			t.Fatal(err)
		}
		p.pending = nil
		if r := f.do(http.MethodPost, contract.PathDocuments+"/"+doc+"/updates", tok, u); r.status != http.StatusOK {
			t.Fatalf("update %d (%d bytes): %d %s", i, len(u), r.status, r.raw)
		}
	}
	if d := f.readDoc(0, tok, doc); d.Content != "Start. " {
		t.Fatalf("text %q", d.Content[:min(40, len(d.Content))])
	}
	r := f.do(http.MethodPost, contract.PathDocuments+"/"+doc+"/sync", tok, []byte{0})
	if r.status != http.StatusOK {
		t.Errorf("sync step 1 of a fresh client: %d %.300s", r.status, r.raw)
	}
	fresh := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+tok, 9102)
	fresh.send(yprotocol.EncodeSyncStep1(fresh.doc.EncodeStateVector()))
	if _, err := fresh.drain(15 * time.Second); err != nil {
		t.Errorf("a fresh sync client: %v", err)
	}
}

// TestSameKeyWhileInFlight: two PUTs with one Idempotency-Key, the
// second sent while the first waits on a locked row: one revision.
func TestSameKeyWhileInFlight(t *testing.T) {
	f := setup(t)
	tok := token(t, "school-a", "stu", time.Hour, false)
	f.create(tok, "k1", "v1")
	ctx := t.Context()
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM documents WHERE doc_id = 'k1' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	out := make(chan resp, 2)
	for i := range 2 {
		go func() {
			time.Sleep(time.Duration(i) * 300 * time.Millisecond)
			out <- f.do(http.MethodPut, "/v1/documents/k1", tok, map[string]any{"content": "v2"}, "Idempotency-Key", "same", "If-Match", `"1"`)
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	_ = tx.Commit(ctx)
	a, b := <-out, <-out
	t.Logf("%d %s / %d %s", a.status, a.raw, b.status, b.raw)
	r := f.do(http.MethodGet, "/v1/documents/k1", tok, nil)
	if r.body["revision"] != float64(2) {
		t.Errorf("revision %v", r.body["revision"])
	}
}

// TestUnconfirmedTraceNotHeldBehindAnotherShard: shard 1's syncer is
// down; a save to it is in doubt, and its trace waits (up to 2 min). A
// save to shard 0 is in doubt too, and shard 0's syncer answers again at
// once: its trace should be written, but it waits behind shard 1's in the
// one queue.
func TestUnconfirmedTraceNotHeldBehindAnotherShard(t *testing.T) {
	sf := &syncerFault{}
	f := setupSyncWrapped(t, sf.wrap)
	tok := token(t, "school-a", "stu", time.Hour, false)
	d0, d1 := docOnShard("hol", 0), docOnShard("hol", 1)
	f.create(tok, d0, "a")
	f.create(tok, d1, "b")
	sf.down.Store(d1, true)
	if r := f.do(http.MethodPut, "/v1/documents/"+d1, tok, map[string]any{"content": "b2"}, "Idempotency-Key", "s-d1"); r.body["code"] != store.CodeUnavailable {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	sf.down.Store(d0, true)
	if r := f.do(http.MethodPut, "/v1/documents/"+d0, tok, map[string]any{"content": "a2"}, "Idempotency-Key", "s-d0"); r.body["code"] != store.CodeUnavailable {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	sf.down.Delete(d0) // shard 0 answers again
	deadline := time.Now().Add(15 * time.Second)
	for {
		if f.do(http.MethodGet, "/v1/documents/"+d0+"/evidence?request=s-d0", tok, nil).body["verdict"] == store.VerdictRejected {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("15 s after shard 0 answered again, the unconfirmed save s-d0 is still never-persisted (its trace is queued behind shard 1's)")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFlushUnconfirmedAtShutdown: traces of saves the gateway could not
// confirm live in its memory. A stopping gateway gives them a few seconds
// to reach their ledger and logs the ones left, which were lost silently
// before.
func TestFlushUnconfirmedAtShutdown(t *testing.T) {
	sf := &syncerFault{}
	f, syncers := startSyncers(t, sf.wrap)
	doc := "flush-0"
	for i := 0; placement.Shard(doc, shards) != 0; i++ {
		doc = fmt.Sprintf("flush-%d", i)
	}
	var logs syncBuffer
	g, err := New(Config{Shards: shards, SelfShard: 0, Syncer: syncers[0], Peers: []string{"http://127.0.0.1:1", "http://127.0.0.1:1"},
		TokenKey: key, InternalToken: auth.InternalToken(key), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sf.down.Store(doc, true) // its syncer does not answer
	g.recordUnconfirmed(store.Request{Kind: store.KindSave, Doc: doc, Tenant: "school-a", User: "ada", RequestID: "req-while-down"}, errors.New("syncer unreachable"))
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	g.FlushUnconfirmed(ctx)
	cancel()
	if !strings.Contains(logs.String(), "stopping with an unconfirmed save not recorded in its ledger") || !strings.Contains(logs.String(), "req-while-down") {
		t.Fatalf("the trace left was not logged:\n%s", logs.String())
	}
	// Once the syncer answers, a flush returns when the traces are in.
	sf.down.Delete(doc)
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	g.FlushUnconfirmed(ctx)
	if ctx.Err() != nil {
		t.Fatal("the flush did not end once the traces were recorded")
	}
	rows, err := store.LedgerRows(t.Context(), f.pool, doc)
	if err != nil || len(rows) != 1 || !strings.Contains(string(rows[0].Body), `"code":"unconfirmed"`) {
		t.Fatalf("ledger of %s: %d rows, %v", doc, len(rows), err)
	}
}

// TestClientThatHungUpIsNotBlamedOnTheSyncer: a student's editor that
// gives up on a save while the syncer is slow left a ledger trace saying
// the syncer was unreachable ("context canceled") and that the client was
// told to retry; nobody was told anything, and the syncer was fine (the
// fresh-user walk saw it at the end of every loadgen run).
func TestClientThatHungUpIsNotBlamedOnTheSyncer(t *testing.T) {
	sf := &syncerFault{kind: store.KindSave, hold: make(chan struct{})} // creates pass
	defer close(sf.hold)
	f := customFixture(t, sf.wrap, nil)
	alice := token(t, "school-a", "alice", time.Hour, false)
	f.create(alice, "slow-1", "v1")
	body := strings.NewReader(`{"content":"v2"}`)
	req, err := http.NewRequest(http.MethodPut, f.url+contract.PathDocuments+"/slow-1", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", "gave-up-1")
	if resp, err := (&http.Client{Timeout: 300 * time.Millisecond}).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the held save answered %s", resp.Status)
	}
	var body2 string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		rows, err := store.LedgerRows(t.Context(), f.pool, "slow-1")
		if err != nil {
			t.Fatal(err)
		}
		if n := len(rows); n > 1 && strings.Contains(string(rows[n-1].Body), `"code":"unconfirmed"`) {
			body2 = string(rows[n-1].Body)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no unconfirmed trace of the abandoned save (%d rows)", len(rows))
		}
	}
	if !strings.Contains(body2, "client disconnected") || strings.Contains(body2, "context canceled") || strings.Contains(body2, "told to retry") {
		t.Errorf("the trace of a save its client abandoned: %s", body2)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
