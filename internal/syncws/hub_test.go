package syncws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

func asCloseError(err error, ce *websocket.CloseError) bool { return errors.As(err, ce) }

// editor is a Go-side Yjs replica speaking the raw protocol.
type editor struct {
	doc     *yjs.Doc
	pending [][]byte
}

func newEditor(id uint64) *editor {
	e := &editor{doc: yjs.NewDoc(yjs.Options{ClientID: id})}
	e.doc.OnUpdate(func(u []byte) { e.pending = append(e.pending, append([]byte(nil), u...)) })
	return e
}

func (e *editor) insert(t testing.TB, s string) []byte {
	t.Helper()
	txt := e.doc.GetText(contract.YjsTextName)
	if err := txt.Insert(txt.Len(), s, nil); err != nil {
		t.Fatal(err)
	}
	u, err := yjs.MergeUpdates(e.pending...)
	if err != nil {
		t.Fatal(err)
	}
	e.pending = nil
	return u
}

func (e *editor) apply(t testing.TB, u []byte) {
	t.Helper()
	if err := e.doc.ApplyUpdate(u); err != nil {
		t.Fatal(err)
	}
	e.pending = nil
}

func (e *editor) text() string { return e.doc.GetText(contract.YjsTextName).String() }

// handshake does the y-websocket handshake: step 1 out, step 2 and the
// server's step 1 in, then step 2 with what the server lacks.
func handshake(t testing.TB, c *client, e *editor) {
	t.Helper()
	if err := c.send(yprotocol.EncodeSyncStep1(e.doc.EncodeStateVector())); err != nil {
		t.Fatal(err)
	}
	s2 := c.nextOf(yprotocol.MessageSync, yprotocol.SyncStep2)
	e.apply(t, s2.Payload)
	s1 := c.nextOf(yprotocol.MessageSync, yprotocol.SyncStep1)
	sv, err := yjs.DecodeStateVector(s1.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.send(yprotocol.EncodeSyncStep2(e.doc.EncodeStateAsUpdate(sv))); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t testing.TB, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHandshakeRelayAwareness(t *testing.T) {
	s := newTestServer(t, Limits{})
	s.be.SetProtocol("school-a", contract.ProtocolWriteThrough)
	tok := token(t, "school-a", "ada")

	a := dial(t, s.wsURL("doc1")+"?token="+tok, nil)
	if got := a.resp.Header.Get(contract.HeaderProtocol); got != contract.ProtocolWriteThrough {
		t.Fatalf("protocol header %q", got)
	}
	ea := newEditor(11)
	ea.insert(t, "offline ") // held before connecting: pushed in the handshake
	handshake(t, a, ea)
	waitFor(t, "server has the offline edit", func() bool { return s.be.Text("doc1") == "offline " })
	if ann := s.be.Announcements(); len(ann) != 1 || ann[0].SV[11] != 8 || ann[0].Session.User != "ada" {
		t.Fatalf("announced %+v", ann)
	}

	b := dial(t, s.wsURL("doc1"), &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token(t, "school-a", "bob")}}})
	eb := newEditor(22)
	handshake(t, b, eb)
	if eb.text() != "offline " {
		t.Fatalf("b got %q", eb.text())
	}

	// a's update reaches b only through the server, after it is applied.
	if err := a.send(yprotocol.EncodeUpdate(ea.insert(t, "online"))); err != nil {
		t.Fatal(err)
	}
	m := b.nextOf(yprotocol.MessageSync, yprotocol.SyncUpdate)
	if s.be.Text("doc1") != "offline online" {
		t.Fatalf("relayed before applied? server has %q", s.be.Text("doc1"))
	}
	eb.apply(t, m.Payload)
	if eb.text() != "offline online" {
		t.Fatalf("b has %q", eb.text())
	}

	// awareness: relayed to everyone, the sender too; removal on close.
	aw := yprotocol.EncodeAwareness(yprotocol.EncodeAwarenessUpdate([]yprotocol.AwarenessEntry{{ClientID: 22, Clock: 1, State: []byte(`{"user":{"name":"bob"}}`)}}))
	if err := b.send(aw); err != nil {
		t.Fatal(err)
	}
	if got := a.nextOf(yprotocol.MessageAwareness, 0); got.Awareness[0].ClientID != 22 {
		t.Fatalf("awareness %+v", got)
	}
	b.nextOf(yprotocol.MessageAwareness, 0)
	// query-awareness answers with the room's states
	if err := a.send(yprotocol.EncodeQueryAwareness()); err != nil {
		t.Fatal(err)
	}
	if got := a.nextOf(yprotocol.MessageAwareness, 0); len(got.Awareness) != 1 || got.Awareness[0].ClientID != 22 {
		t.Fatalf("query awareness %+v", got)
	}
	_ = b.ws.Close(websocket.StatusNormalClosure, "")
	got := a.nextOf(yprotocol.MessageAwareness, 0)
	if len(got.Awareness) != 1 || got.Awareness[0].ClientID != 22 || !got.Awareness[0].Removed() || got.Awareness[0].Clock != 2 {
		t.Fatalf("removal %+v", got.Awareness)
	}
	waitFor(t, "b unregistered", func() bool { return s.hub.Stats().Conns == 1 })
}

func TestProtocolMessages(t *testing.T) {
	s := newTestServer(t, Limits{})
	tok := token(t, "school-a", "ada")
	// token and opt-in through subprotocols, as a browser would
	c := dial(t, s.wsURL("doc1"), &websocket.DialOptions{Subprotocols: []string{contract.SyncSubprotocol, contract.SyncTokenSubprotocolPrefix + tok}})
	if c.ws.Subprotocol() != contract.SyncSubprotocol {
		t.Fatalf("subprotocol %q", c.ws.Subprotocol())
	}
	var ym YawpMessage
	m := c.nextOf(yprotocol.MessageYawp, 0)
	if err := json.Unmarshal(m.Payload, &ym); err != nil || ym.Protocol != contract.ProtocolLocalFirst {
		t.Fatalf("yawp %s %v", m.Payload, err)
	}
	s.hub.SetProtocol("school-a", contract.ProtocolWriteThrough)
	m = c.nextOf(yprotocol.MessageYawp, 0)
	if err := json.Unmarshal(m.Payload, &ym); err != nil || ym.Protocol != contract.ProtocolWriteThrough {
		t.Fatalf("yawp %s %v", m.Payload, err)
	}
	// stock clients are never sent it
	d := dial(t, s.wsURL("doc1")+"?token="+tok, nil)
	s.hub.SetProtocol("school-a", contract.ProtocolLocalFirst)
	if err := d.send(yprotocol.EncodeSyncStep1([]byte{0})); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		m, err := d.next()
		if err != nil || m.Type != yprotocol.MessageSync {
			t.Fatalf("stock client got %+v %v", m, err)
		}
	}
}

func TestRefusals(t *testing.T) {
	s := newTestServer(t, Limits{MaxMessageBytes: 1000, MaxConnsPerUser: 2, UpdatesPerSecond: 5, UpdateBurst: 5, RateWait: 50 * time.Millisecond})
	s.be.CreateDocument("doc-b", "school-b")
	tokA := token(t, "school-a", "ada")
	// Each case as a user of its own: the server releases a closed
	// connection's place in the per-user limit asynchronously, and under
	// load the next case could find the last one's still taken.
	e := newEditor(5)
	good := yprotocol.EncodeUpdate(e.insert(t, "x"))

	cases := []struct {
		name   string
		url    string
		send   [][]byte
		text   bool
		code   int
		denied bool
	}{
		{name: "no token", url: s.wsURL("doc1"), code: contract.CloseUnauthenticated, denied: true},
		{name: "bad token", url: s.wsURL("doc1") + "?token=yawp1.bad.sig", code: contract.CloseUnauthenticated, denied: true},
		{name: "other tenant", url: s.wsURL("doc-b") + "?token=" + token(t, "school-a", "ada-1"), code: contract.CloseForbidden, denied: true},
		{name: "bad doc id", url: s.wsURL("a%2Fb") + "?token=" + token(t, "school-a", "ada-2"), code: contract.CloseMalformed},
		{name: "doc id over 128", url: s.wsURL(strings.Repeat("d", 129)) + "?token=" + token(t, "school-a", "ada-3"), code: contract.CloseMalformed},
		{name: "malformed frame", url: s.wsURL("doc1") + "?token=" + token(t, "school-a", "ada-4"), send: [][]byte{{0, 9, 1}}, code: contract.CloseMalformed},
		{name: "garbage update", url: s.wsURL("doc1") + "?token=" + token(t, "school-a", "ada-5"), send: [][]byte{yprotocol.EncodeUpdate([]byte{5, 200, 1, 2})}, code: contract.CloseMalformed},
		{name: "bad state vector", url: s.wsURL("doc1") + "?token=" + token(t, "school-a", "ada-6"), send: [][]byte{yprotocol.EncodeSyncStep1([]byte{3, 1})}, code: contract.CloseMalformed},
		{name: "oversize", url: s.wsURL("doc1") + "?token=" + token(t, "school-a", "ada-7"), send: [][]byte{yprotocol.EncodeUpdate(make([]byte, 2000))}, code: contract.CloseTooLarge},
		{name: "text frame", url: s.wsURL("doc1") + "?token=" + token(t, "school-a", "ada-8"), send: [][]byte{[]byte("hello")}, text: true, code: contract.CloseMalformed},
		{name: "rate", url: s.wsURL("doc1") + "?token=" + token(t, "school-a", "spammer"), send: bytes.SplitAfter(bytes.Repeat(append([]byte{}, yprotocol.EncodeUpdate([]byte{0, 0})...), 40), []byte{0, 0}), code: contract.CloseRateLimited},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, tc.url, nil)
			for _, m := range tc.send {
				typ := websocket.MessageBinary
				if tc.text {
					typ = websocket.MessageText
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = c.ws.Write(ctx, typ, m)
				cancel()
			}
			sawDenied := false
			for {
				m, err := c.next()
				if err != nil {
					var ce websocket.CloseError
					if !asCloseError(err, &ce) {
						t.Fatalf("no close frame: %v", err)
					}
					if int(ce.Code) != tc.code || ce.Reason == "" {
						t.Fatalf("closed with %d %q, want %d", ce.Code, ce.Reason, tc.code)
					}
					t.Logf("closed %d %q", ce.Code, ce.Reason)
					break
				}
				if m.Type == yprotocol.MessageAuth {
					sawDenied = true
				}
			}
			if sawDenied != tc.denied {
				t.Fatalf("permission-denied message sent: %v", sawDenied)
			}
		})
	}
	if s.be.Text("doc1") != "" {
		t.Fatalf("refused input changed the document: %q", s.be.Text("doc1"))
	}
	if n := len(s.be.Rejections()); n < len(cases) {
		t.Fatalf("%d rejections recorded, want %d", n, len(cases))
	}
	// the server is still up and takes a good update
	c := dial(t, s.wsURL("doc1")+"?token="+tokA, nil)
	if err := c.send(good); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "good update", func() bool { return s.be.Text("doc1") == "x" })

	// connections per user (the refused ones above are gone first)
	waitFor(t, "refused connections unregistered", func() bool { return s.hub.Stats().Conns == 1 })
	c2 := dial(t, s.wsURL("doc2")+"?token="+tokA, nil)
	_ = c2
	waitFor(t, "second connection registered", func() bool { return s.hub.Stats().Conns == 2 })
	c3 := dial(t, s.wsURL("doc3")+"?token="+tokA, nil)
	if code, reason := c3.closeStatus(); code != contract.CloseRateLimited {
		t.Fatalf("third connection: %d %q", code, reason)
	}
}

func TestSlowClientDoesNotStallRoom(t *testing.T) {
	s := newTestServer(t, Limits{SendQueue: 16, WriteTimeout: 300 * time.Millisecond, UpdatesPerSecond: 1e6, UpdateBurst: 1e6})
	slow := dial(t, s.wsURL("doc1")+"?token="+token(t, "school-a", "ada"), nil) // never reads
	_ = slow
	fast := dial(t, s.wsURL("doc1")+"?token="+token(t, "school-a", "bob"), nil)
	writer := dial(t, s.wsURL("doc1")+"?token="+token(t, "school-a", "cy"), nil)
	// A dial returns at the handshake; the hub registers the connection in
	// its room after that. An update relayed before the fast client joined
	// reaches it in its initial state instead, and the loop below would
	// wait for it in vain (seen once in CI).
	waitFor(t, "three connections in the room", func() bool { return s.hub.Stats().Conns == 3 })
	ew := newEditor(7)
	chunk := strings.Repeat("a", 100<<10)
	start := time.Now()
	for i := 0; i < 200; i++ {
		if err := writer.send(yprotocol.EncodeUpdate(ew.insert(t, chunk))); err != nil {
			t.Fatal(err)
		}
		fast.nextOf(yprotocol.MessageSync, yprotocol.SyncUpdate)
		if s.hub.Stats().Conns == 2 {
			t.Logf("slow client dropped after %d × 100 KiB, in %v; the fast client kept up", i+1, time.Since(start))
			break
		}
	}
	waitFor(t, "slow client dropped", func() bool { return s.hub.Stats().Conns == 2 })
	// A stuck client's connection is cut mid-frame after WriteTimeout, so
	// it may see no close frame; a merely slow one reads 4508.
	for {
		if _, err := slow.next(); err != nil {
			t.Logf("slow client: %v", err)
			break
		}
	}
}

func TestGracefulShutdown(t *testing.T) {
	s := newTestServer(t, Limits{})
	tok := token(t, "school-a", "ada")
	a := dial(t, s.wsURL("doc1")+"?token="+tok, nil)
	e := newEditor(3)
	handshake(t, a, e)
	if err := a.send(yprotocol.EncodeUpdate(e.insert(t, "kept"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "applied", func() bool { return s.be.Text("doc1") == "kept" })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.hub.Shutdown(ctx)
	}()
	if code, _ := a.closeStatus(); code != contract.CloseGoingAway {
		t.Fatalf("close %d", code)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b := dial(t, s.wsURL("doc1")+"?token="+tok, nil)
	if code, _ := b.closeStatus(); code != contract.CloseShuttingDown {
		t.Fatalf("after shutdown: %d", code)
	}
}

func TestNotWebSocket(t *testing.T) {
	s := newTestServer(t, Limits{})
	resp, err := http.Get(s.URL + contract.PathSync + "doc1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestDeadPeerDropped(t *testing.T) {
	s := newTestServer(t, Limits{PingInterval: 50 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	alive := dial(t, s.wsURL("doc1")+"?token="+token(t, "school-a", "ada"), nil)
	go func() {
		for {
			if _, err := alive.next(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return
			}
		}
	}()
	dead := dial(t, s.wsURL("doc1")+"?token="+token(t, "school-a", "bob"), nil) // never reads: never answers pings
	_ = dead
	waitFor(t, "two connections", func() bool { return s.hub.Stats().Conns == 2 })
	waitFor(t, "dead peer dropped", func() bool { return s.hub.Stats().Conns == 1 })
	time.Sleep(300 * time.Millisecond)
	if s.hub.Stats().Conns != 1 {
		t.Fatal("live peer dropped")
	}
}

func TestCloseDocument(t *testing.T) {
	s := newTestServer(t, Limits{})
	a := dial(t, s.wsURL("moved")+"?token="+token(t, "school-a", "ada"), nil)
	b := dial(t, s.wsURL("stays")+"?token="+token(t, "school-a", "ada"), nil)
	waitFor(t, "registered", func() bool { return s.hub.Stats().Conns == 2 })
	s.hub.CloseDocument("moved", int(websocket.StatusServiceRestart), "document moved; reconnect")
	if code, _ := a.closeStatus(); code != websocket.StatusServiceRestart {
		t.Fatalf("close %d", code)
	}
	if err := b.send(yprotocol.EncodeSyncStep1([]byte{0})); err != nil {
		t.Fatal(err)
	}
	b.nextOf(yprotocol.MessageSync, yprotocol.SyncStep2)
}

// TestExistingSyncDocIDsStayValid: IDs earlier versions accepted over
// sync (and whose documents exist) still name documents.
func TestExistingSyncDocIDsStayValid(t *testing.T) {
	for _, id := range []string{"essay:1", "Aufsatz Mathe", "résumé", "_draft", "a+b", "x@school", "doc1"} {
		if !ValidDocID(id) {
			t.Errorf("ValidDocID(%q) = false", id)
		}
	}
	for _, id := range []string{"", "a/b", "a?b", "a#b", "a\\b", "a\x00b", strings.Repeat("d", 129)} {
		if ValidDocID(id) {
			t.Errorf("ValidDocID(%q) = true", id)
		}
	}
}

// TestLargestUpdateFitsAMessage: docs/api.md takes a Yjs update of up to
// 4 MiB over REST and over sync alike; the default message limit must fit
// the largest one in its sync envelope (it was 4 MiB for the message, so
// a 4 MiB update was refused with 4413 over sync only). Found by review.
func TestLargestUpdateFitsAMessage(t *testing.T) {
	max := Limits{}.withDefaults().MaxMessageBytes
	for _, msg := range [][]byte{
		yprotocol.EncodeUpdate(make([]byte, contract.MaxUpdateBytes)),
		yprotocol.EncodeSyncStep2(make([]byte, contract.MaxUpdateBytes)),
	} {
		if len(msg) > max {
			t.Errorf("a %d-byte update is a %d-byte message, over the limit %d", contract.MaxUpdateBytes, len(msg), max)
		}
	}
	if over := yprotocol.EncodeUpdate(make([]byte, contract.MaxUpdateBytes+17)); len(over) <= max {
		t.Errorf("a message of an update 17 bytes over the update limit (%d bytes) fits the message limit %d", len(over), max)
	}
}
