package syncws

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/testutil/nodejs"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/pkg/localfirst"
)

func runNode(t *testing.T, cfg map[string]any) nodejs.WSClientResult {
	return nodejs.RunWSClient(t, cfg)
}

// TestYWebsocketClients: stock y-websocket providers (yjs 13.6.33) edit
// one document concurrently through the hub; one goes offline, edits,
// comes back; all converge to the server's text.
func TestYWebsocketClients(t *testing.T) {
	s := newTestServer(t, Limits{})
	var toks []string
	for _, u := range []string{"ada", "bob", "cy", "dee"} {
		toks = append(toks, token(t, "school-a", u))
	}
	// A Go local-first client shares the room with the stock clients.
	lf, err := localfirst.Open(filepath.Join(t.TempDir(), "go.ylf"))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	lfDone := make(chan error, 1)
	go func() {
		lfDone <- lf.Run(ctx, localfirst.Remote{URL: s.wsURL(""), DocID: "essay-1", Token: token(t, "school-a", "go")})
	}()
	defer func() {
		cancel()
		if err := <-lfDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("go client: %v", err)
		}
	}()
	if err := lf.Edit(func(x *yjs.Text) error { return x.Insert(0, "GO-START ", nil) }); err != nil {
		t.Fatal(err)
	}
	if err := lf.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	res := runNode(t, map[string]any{
		"url": "ws" + strings.TrimPrefix(s.URL, "http") + strings.TrimSuffix(contract.PathSync, "/"),
		"doc": "essay-1", "tokens": toks, "edits": 30, "offlineEdits": 15,
	})
	for i, txt := range res.Texts {
		if txt != res.Text {
			t.Fatalf("client %d diverged: %q vs %q", i, txt, res.Text)
		}
	}
	waitFor(t, "server converged", func() bool { return s.be.Text("essay-1") == res.Text })
	if err := lf.WaitFor(ctx, func(txt string) bool { return txt == res.Text }); err != nil {
		t.Fatalf("Go client has %q, y-websocket clients %q", lf.Text(), res.Text)
	}
	if !strings.Contains(res.Text, "{off.") || !strings.Contains(res.Text, "(1.") {
		t.Fatalf("offline or online edits missing: %q", res.Text)
	}
	if len(res.Text) < 100 {
		t.Fatalf("suspiciously short text %q", res.Text)
	}
	// every connection announced its state vector (the offline client twice)
	if n := len(s.be.Announcements()); n < 5 {
		t.Fatalf("%d state vectors announced", n)
	}
	t.Logf("converged on %d bytes; %d announcements", len(res.Text), len(s.be.Announcements()))
}

// TestYWebsocketRefused: a stock provider refused for another tenant's
// document sees 4403 with the reason and stops reconnecting.
func TestYWebsocketRefused(t *testing.T) {
	s := newTestServer(t, Limits{})
	s.be.CreateDocument("doc-b", "school-b")
	res := runNode(t, map[string]any{
		"mode": "refused",
		"url":  "ws" + strings.TrimPrefix(s.URL, "http") + strings.TrimSuffix(contract.PathSync, "/"),
		"doc":  "doc-b", "tokens": []string{token(t, "school-a", "ada")},
	})
	if len(res.Closes) == 0 || res.Closes[0].Code != contract.CloseForbidden || res.Terminal == nil || res.Terminal.Code != contract.CloseForbidden {
		t.Fatalf("%+v", res)
	}
	if len(res.Closes) != 1 {
		t.Fatalf("client reconnected after 4403: %+v", res.Closes)
	}
}

// TestYWebsocketThroughForwardingGateway: half the clients reach the
// document's hub through a second gateway that forwards the WebSocket
// with httputil.ReverseProxy (how a gateway forwards a document of another
// shard); all converge.
func TestYWebsocketThroughForwardingGateway(t *testing.T) {
	s := newTestServer(t, Limits{})
	target, _ := url.Parse(s.URL)
	fwd := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
	defer fwd.Close()
	var toks []string
	for _, u := range []string{"ada", "bob", "cy"} {
		toks = append(toks, token(t, "school-a", u))
	}
	base := strings.TrimSuffix(contract.PathSync, "/")
	res := runNode(t, map[string]any{
		"urls": []string{"ws" + strings.TrimPrefix(s.URL, "http") + base, "ws" + strings.TrimPrefix(fwd.URL, "http") + base},
		"doc":  "essay-2", "tokens": toks, "edits": 20, "offlineEdits": 10,
	})
	waitFor(t, "server converged", func() bool { return s.be.Text("essay-2") == res.Text })
	if !strings.Contains(res.Text, "{off.") {
		t.Fatalf("offline edits missing: %q", res.Text)
	}
}
