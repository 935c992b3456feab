package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/store"
)

var reviewTrace = `{"req":{"kind":"reject","doc":"d","tenant":"t","user":"u","code":"unconfirmed","reason":"r"},"orig":{"kind":"save","doc":"d","tenant":"t","user":""},"at":"` +
	time.Now().UTC().Format(time.RFC3339Nano) + `"}`

func postHandoff(t *testing.T, url, body string) int {
	t.Helper()
	return postHandoffAs(t, url, auth.InternalToken(key), body)
}

// postHandoffAs posts body to the handoff endpoint at url with token ("":
// none) and returns the status.
func postHandoffAs(t *testing.T, url, token, body string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url+PathUnconfirmedHandoff, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// newReceiver is a one-shard gateway (its syncer unreachable) serving its
// handoff endpoint; spool "" keeps traces in memory, nil m: its own
// metrics.
func newReceiver(t *testing.T, spool string, m *Metrics) (*Gateway, *httptest.Server) {
	t.Helper()
	g, err := New(Config{Shards: 1, SelfShard: 0, Syncer: "http://127.0.0.1:1", TokenKey: key, InternalToken: auth.InternalToken(key),
		Logger: slog.New(slog.DiscardHandler), SpoolDir: spool, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return g, srv
}

// handOffTo queues one trace on shard 0 of a three-shard gateway whose
// other shards' gateways are peers, hands it off, and returns how many
// traces no peer took.
func handOffTo(t *testing.T, peers ...string) int {
	t.Helper()
	g, err := New(Config{Shards: 3, SelfShard: 0, Peers: append([]string{"http://127.0.0.1:1"}, peers...), TokenKey: key,
		InternalToken: auth.InternalToken(key), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	u := unconfirmed{Req: store.Request{Kind: store.KindReject, Doc: "d", Tenant: "t", Code: CodeUnconfirmed}, At: time.Now()}
	g.unconfMu.Lock()
	g.queueUnconfirmed(u)
	g.unconfMu.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), handoffWait)
	defer cancel()
	return len(g.handOff(ctx, []unconfirmed{u}))
}

func queued(g *Gateway) int {
	g.unconfMu.Lock()
	defer g.unconfMu.Unlock()
	n := len(g.unconf)
	if g.unconfCur != nil {
		n++
	}
	return n
}

// A gateway that has flushed (it is stopping: its process exits next)
// must not take a handoff: a trace it queued then is neither recorded,
// handed on nor logged, and the sender has forgotten it.
func TestReviewAStoppedGatewayRefusesAHandoff(t *testing.T) {
	g, srv := newReceiver(t, "", nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	g.FlushUnconfirmed(ctx) // nothing waits: it returns, and main exits
	if got := postHandoff(t, srv.URL, "["+reviewTrace+"]"); got != http.StatusServiceUnavailable {
		t.Errorf("a handoff to a gateway that has flushed: %d, want 503", got)
	}
	if n := queued(g); n != 0 {
		t.Errorf("%d traces queued on a gateway about to exit", n)
	}
}

// A handoff must not push the receiver's own traces out of a full queue:
// it is refused, and the sender tries another peer.
func TestReviewAHandoffDoesNotEvictTheReceiversTraces(t *testing.T) {
	m := NewMetrics()
	g, srv := newReceiver(t, "", m)
	g.unconfMu.Lock()
	for i := range unconfirmedQueue - 1 {
		g.queueUnconfirmed(unconfirmed{Req: store.Request{Kind: store.KindReject, Doc: "d", Tenant: "t", RequestID: fmt.Sprint(i), Code: CodeUnconfirmed},
			At: time.Now()})
	}
	g.unconfMu.Unlock()
	if got := postHandoff(t, srv.URL, "["+reviewTrace+","+reviewTrace+"]"); got != http.StatusServiceUnavailable {
		t.Errorf("a handoff over the receiver's queue: %d, want 503", got)
	}
	if lost := testutil.ToFloat64(m.unconfLost.WithLabelValues(lostQueueFull)); lost != 0 {
		t.Errorf("the handoff dropped %v of the receiver's own traces", lost)
	}
}

// Traces only: a "trace" carrying a save's text or a Yjs update is
// refused, and nothing of it reaches the receiver's disk.
func TestReviewAHandoffRefusesStudentText(t *testing.T) {
	spool := t.TempDir()
	g, srv := newReceiver(t, spool, nil)
	for name, body := range map[string]string{
		"content":   strings.Replace(reviewTrace, `"reason":"r"`, `"reason":"r","content":"my secret essay"`, 1),
		"update":    strings.Replace(reviewTrace, `"reason":"r"`, `"reason":"r","update":"bXkgc2VjcmV0IGVzc2F5"`, 1),
		"orig":      strings.Replace(reviewTrace, `"orig":{"kind":"save"`, `"orig":{"kind":"save","content":"my secret essay"`, 1),
		"other doc": strings.Replace(reviewTrace, `"orig":{"kind":"save","doc":"d"`, `"orig":{"kind":"save","doc":"e"`, 1),
	} {
		if got := postHandoff(t, srv.URL, "["+body+"]"); got != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, got)
		}
	}
	files, _ := filepath.Glob(filepath.Join(spool, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "secret") || strings.Contains(string(b), "bXkgc2VjcmV0") {
			t.Errorf("student text on the node's disk: %s", b)
		}
	}
	if n := queued(g); n != 0 {
		t.Errorf("%d refused traces queued", n)
	}
}

// A peer that does not answer (its pod gone, its address black-holed)
// must not spend the whole handoff budget: the next peer gets the traces.
func TestReviewAHangingPeerDoesNotKeepTheOthersFromTheHandoff(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(ok.Close)
	if left := handOffTo(t, hang.URL, ok.URL); left != 0 {
		t.Errorf("%d traces nobody took; the answering peer got none", left)
	}
}

// "Trying each other shard's in turn": a peer that refuses (an older
// version without the endpoint, one stopping) must not keep the next from
// being asked.
func TestReviewARefusingPeerDoesNotKeepTheNextFromBeingAsked(t *testing.T) {
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }))
	t.Cleanup(refuse.Close)
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(ok.Close)
	if left := handOffTo(t, refuse.URL, ok.URL); left != 0 {
		t.Errorf("%d traces nobody took; the second peer, which takes them, was not asked", left)
	}
}
