package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
	"github.com/yawp/persistence-operator/pkg/localfirst"
)

// rawPeer is a raw y-protocols client over one WebSocket with a Go Yjs
// replica.
type rawPeer struct {
	t       *testing.T
	ws      *websocket.Conn
	doc     *yjs.Doc
	pending [][]byte
}

func dialPeer(t *testing.T, addr string, clientID uint64) *rawPeer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	ws.SetReadLimit(64 << 20)
	t.Cleanup(func() { _ = ws.CloseNow() })
	p := &rawPeer{t: t, ws: ws, doc: yjs.NewDoc(yjs.Options{ClientID: clientID})}
	p.doc.OnUpdate(func(u []byte) { p.pending = append(p.pending, append([]byte(nil), u...)) })
	return p
}

func (p *rawPeer) send(b []byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageBinary, b); err != nil {
		p.t.Fatal(err)
	}
}

// next reads one message within d; ok false on timeout, err on close.
func (p *rawPeer) next(d time.Duration) (m yprotocol.Message, ok bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, b, err := p.ws.Read(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return m, false, nil
		}
		return m, false, err
	}
	m, err = yprotocol.DecodeClient(b)
	return m, err == nil, err
}

func (p *rawPeer) apply(u []byte) {
	p.t.Helper()
	if err := p.doc.ApplyUpdate(u); err != nil {
		p.t.Fatal(err)
	}
	p.pending = nil
}

func (p *rawPeer) text() string { return p.doc.GetText(contract.YjsTextName).String() }

// handshake: step 1 out, step 2 and the server's step 1 in, step 2 out.
func (p *rawPeer) handshake() {
	p.t.Helper()
	p.send(yprotocol.EncodeSyncStep1(p.doc.EncodeStateVector()))
	gotS2 := false
	for {
		m, ok, err := p.next(10 * time.Second)
		if err != nil || !ok {
			p.t.Fatalf("handshake: %v (timeout %v)", err, !ok)
		}
		if m.Type != yprotocol.MessageSync {
			continue
		}
		switch m.Sync {
		case yprotocol.SyncStep2:
			p.apply(m.Payload)
			gotS2 = true
		case yprotocol.SyncStep1:
			sv, err := yjs.DecodeStateVector(m.Payload)
			if err != nil {
				p.t.Fatal(err)
			}
			p.send(yprotocol.EncodeSyncStep2(p.doc.EncodeStateAsUpdate(sv)))
			if gotS2 {
				return
			}
		case yprotocol.SyncUpdate:
			p.apply(m.Payload)
		}
	}
}

func (p *rawPeer) insert(s string) []byte {
	p.t.Helper()
	txt := p.doc.GetText(contract.YjsTextName)
	if err := txt.Insert(txt.Len(), s, nil); err != nil {
		p.t.Fatal(err)
	}
	u, err := yjs.MergeUpdates(p.pending...)
	if err != nil {
		p.t.Fatal(err)
	}
	p.pending = nil
	return u
}

// drain reads for d, applying sync updates; it returns the awareness
// states seen and the close error, if any.
func (p *rawPeer) drain(d time.Duration) (awareness []string, closeErr error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		m, ok, err := p.next(time.Until(deadline))
		if err != nil {
			return awareness, err
		}
		if !ok {
			break
		}
		switch m.Type {
		case yprotocol.MessageSync:
			if m.Sync != yprotocol.SyncStep1 {
				p.apply(m.Payload)
			}
		case yprotocol.MessageAwareness:
			for _, e := range m.Awareness {
				awareness = append(awareness, string(e.State))
			}
		}
	}
	return awareness, nil
}

// TestSyncTenantsNeverShareADocumentBeforeItExists: two tenants open the
// same not-yet-existing document ID (IDs are one namespace across tenants:
// "essay-1" is a natural name at every school). Both are admitted (the
// document has no tenant yet). school-a's first update creates it in
// school-a; before, the hub's one room per ID relayed that text, and
// school-a's awareness, to school-b's connection: another tenant read the
// document live. Now rooms are per tenant: school-b receives nothing of
// it and is closed with 4403 once the document is school-a's (docs/api.md:
// "A token only reaches its own tenant's documents"). Found by review.
func TestSyncTenantsNeverShareADocumentBeforeItExists(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("essay", 0)
	tokA := token(t, "school-a", "ada", time.Hour, false)
	tokB := token(t, "school-b", "eve", time.Hour, false)

	// Both open the ID while it does not exist. (Their empty step 2s
	// create nothing; school-a's first update of text makes the document
	// school-a's. school-b here just waits: it was admitted.)
	a := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+tokA, 101)
	b := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+tokB, 202)
	b.send(yprotocol.EncodeSyncStep1(b.doc.EncodeStateVector()))
	a.handshake()

	a.send(yprotocol.EncodeUpdate(a.insert("school-a confidential report")))
	a.send(yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate([]yprotocol.AwarenessEntry{
		{ClientID: 101, Clock: 1, State: []byte(`{"user":{"name":"Ada Lovelace (school-a)"}}`)}})))
	eventually(t, "school-a's update committed", func() bool {
		r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, tokA, nil)
		return r.status == http.StatusOK && r.body["content"] == "school-a confidential report"
	})
	// The document is school-a's now: school-b cannot read it over REST.
	if r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, tokB, nil); r.status != http.StatusNotFound {
		t.Fatalf("school-b REST read: %d %s", r.status, r.raw)
	}
	// The hub closes another school's connection a second after the
	// claim (claimGrace, syncws), so the drains wait that much longer.
	aw, closeErr := b.drain(3 * time.Second)
	var leaks []string
	if txt := b.text(); txt != "" {
		leaks = append(leaks, fmt.Sprintf("school-b's connection received the text %q", txt))
	}
	for _, s := range aw {
		if strings.Contains(s, "school-a") {
			leaks = append(leaks, "school-b's connection received school-a's awareness "+s)
		}
	}
	if len(leaks) > 0 {
		t.Fatalf("cross-tenant leak (school-b close: %v):\n  %s", closeErr, strings.Join(leaks, "\n  "))
	}
	if code := websocket.CloseStatus(closeErr); code != contract.CloseForbidden {
		t.Errorf("school-b's connection ended with %v (code %d), want %d: the document is school-a's now", closeErr, code, contract.CloseForbidden)
	}

	// The same when school-a creates the document over REST.
	doc2 := docOnShard("report", 0)
	a2 := dialPeer(t, f.wsBase(0)+"/"+doc2+"?token="+tokA, 103)
	b2 := dialPeer(t, f.wsBase(0)+"/"+doc2+"?token="+tokB, 204)
	a2.send(yprotocol.EncodeSyncStep1(a2.doc.EncodeStateVector()))
	b2.send(yprotocol.EncodeSyncStep1(b2.doc.EncodeStateVector()))
	eventually(t, "both connections open", func() bool { return f.hubs[0].Stats().Conns >= 2 })
	if r := f.do(http.MethodPost, contract.PathDocuments, tokA, map[string]any{"id": doc2, "content": "grades of school-a"}); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	if _, closeErr := b2.drain(5 * time.Second); b2.text() != "" || websocket.CloseStatus(closeErr) != contract.CloseForbidden {
		t.Errorf("school-b after school-a's REST create: text %q, close %v; want nothing and %d", b2.text(), closeErr, contract.CloseForbidden)
	}
	if _, err := a2.drain(time.Second); err != nil {
		t.Errorf("school-a's sync client after its REST create: %v", err)
	}
}

// TestSyncForeignMergeReachesConnectedClients: a foreign-history copy is
// merged cleanly and committed by the server (docs/api.md, 4409: "It
// three-way merged the text ... and committed the merge if it was
// clean"). A stock client connected to the document meanwhile gets the
// committed merge live, as after a REST save; before, nothing pushed it,
// and y-websocket does not re-sync while connected, so its editor showed
// text the server no longer had until it reconnected. Found by review.
func TestSyncForeignMergeReachesConnectedClients(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("fable", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "The cat sat.")
	watcher := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+teacher, 303)
	watcher.handshake()
	if watcher.text() != "The cat sat." {
		t.Fatalf("watcher %q", watcher.text())
	}
	c, err := localfirst.Open(filepath.Join(t.TempDir(), "foreign.ylf"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Edit(func(x *localfirst.Text) error {
		if err := x.Insert(0, "The cat sat.", nil); err != nil {
			return err
		}
		return x.Insert(0, "Today: ", nil)
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Run(ctx, localfirst.Remote{URL: f.wsBase(1) + "/", DocID: doc, Token: token(t, "school-a", "stu", time.Hour, false)}); !localfirst.IsForeignHistory(err) {
		t.Fatalf("foreign copy: %v", err)
	}
	const want = "Today: The cat sat."
	if d := f.readDoc(0, teacher, doc); d.Content != want {
		t.Fatalf("server has %q, want the committed merge %q", d.Content, want)
	}
	if _, err := watcher.drain(3 * time.Second); err != nil {
		t.Fatalf("watcher closed: %v", err)
	}
	if got := watcher.text(); got != want {
		t.Fatalf("connected client still shows %q 3 s after the server committed %q", got, want)
	}
}

// TestSyncConnectionEndsWithItsToken: a token is refused once expired, on
// every REST request and at connect; a sync connection opened with it
// used to keep writing for as long as the socket stayed open. It is now
// closed with 4401 when the token runs out, and what it sent before is
// committed. Found by review.
func TestSyncConnectionEndsWithItsToken(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("exp", 0)
	short := token(t, "school-a", "leaver", 2*time.Second, false)
	p := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+short, 606)
	p.handshake()
	p.send(yprotocol.EncodeUpdate(p.insert("written in time")))
	start := time.Now()
	_, err := p.drain(5 * time.Second)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || int(ce.Code) != contract.CloseUnauthenticated || !strings.Contains(ce.Reason, "token expired") {
		t.Fatalf("connection after its token expired: %v after %s, want close %d (token expired)", err, time.Since(start).Round(time.Millisecond), contract.CloseUnauthenticated)
	}
	reader := token(t, "school-a", "reader", time.Hour, false)
	if d := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, reader, nil); d.body["content"] != "written in time" {
		t.Errorf("the update sent before expiry: document %d %v", d.status, d.body["content"])
	}
}

// TestSyncShuttingDownGatewayForwardsNothing: during a gateway's graceful
// shutdown its hub refuses new connections with 4503 (docs/api.md), and so
// does the forwarding to other shards' gateways, which used to carry on
// (those connections were then cut without a close frame when the process
// exited). Found by review.
func TestSyncShuttingDownGatewayForwardsNothing(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("fwd", 1)
	tok := token(t, "school-a", "ada", time.Hour, false)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.hubs[0].Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	late := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+tok, 505)
	late.send(yprotocol.EncodeSyncStep1(late.doc.EncodeStateVector()))
	if _, err := late.drain(2 * time.Second); websocket.CloseStatus(err) != contract.CloseShuttingDown {
		t.Errorf("a connection for shard 1 through the shutting-down gateway 0: close %d (%v), want %d", websocket.CloseStatus(err), err, contract.CloseShuttingDown)
	}
	// Shard 1's own gateway still serves it.
	ok := dialPeer(t, f.wsBase(1)+"/"+doc+"?token="+tok, 506)
	ok.handshake()
}

// TestSyncRequestIDsNameOneSession: sync WebSocket entries are recorded
// with request IDs, and docs/api.md tells support to ask for one with
// ?request=. They were ws-<shard>-<n>, and n restarts with every gateway
// process, so after a restart (a rollout, a crash) another connection to
// the same document got the same ID: asking about the student's session
// answered with someone else's mixed in. The ID now names the process
// too. Found by review.
func TestSyncRequestIDsNameOneSession(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("essay", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "Start. ")
	session := func(user string, client uint64, text string) {
		p := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+token(t, "school-a", user, time.Hour, false), client)
		p.handshake()
		p.send(yprotocol.EncodeUpdate(p.insert(text)))
		eventually(t, user+"'s update committed", func() bool {
			r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, teacher, nil)
			c, _ := r.body["content"].(string)
			return r.status == http.StatusOK && strings.HasSuffix(c, text)
		})
		_ = p.ws.CloseNow()
	}
	session("stu", 501, "Student draft.")
	f.start(0) // the gateway process restarts (same address)
	session("bob", 502, " Bob's edit.")

	ev := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?user=stu", teacher, nil)
	var stuReq string
	for _, e := range ev.body["timeline"].([]any) {
		en := e.(map[string]any)
		if en["kind"] == "committed" {
			stuReq, _ = en["request_id"].(string)
		}
	}
	if stuReq == "" {
		t.Fatalf("no commit of stu: %s", ev.raw)
	}
	ev = f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?request="+url.QueryEscape(stuReq), teacher, nil)
	for _, e := range ev.body["timeline"].([]any) {
		en := e.(map[string]any)
		if en["user"] != "stu" {
			t.Errorf("evidence of request %s (stu's sync session) shows entry %v of user %v (kind %v)", stuReq, en["seq"], en["user"], en["kind"])
		}
	}
}
