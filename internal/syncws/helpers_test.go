package syncws

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

var testKey = []byte("test-key-0123456789")

func token(t testing.TB, tenant, user string) string {
	t.Helper()
	tok, err := auth.Mint(testKey, auth.Claims{Tenant: tenant, User: user, Expiry: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type testServer struct {
	*httptest.Server
	hub *Hub
	be  *MemoryBackend
}

func newTestServer(t testing.TB, lim Limits) *testServer {
	t.Helper()
	be := NewMemoryBackend()
	hub := NewHub(Config{Backend: be, Auth: TokenAuth{Key: testKey, Tenants: be}, Limits: lim})
	mux := http.NewServeMux()
	mux.Handle(contract.PathSync, hub)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Shutdown(ctx)
		srv.Close()
	})
	return &testServer{Server: srv, hub: hub, be: be}
}

func (s *testServer) wsURL(doc string) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + contract.PathSync + doc
}

type client struct {
	t    testing.TB
	ws   *websocket.Conn
	resp *http.Response
}

func dial(t testing.TB, url string, opts *websocket.DialOptions) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	ws.SetReadLimit(64 << 20)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return &client{t: t, ws: ws, resp: resp}
}

func (c *client) send(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageBinary, b)
}

// next reads the next message; a close returns its status and reason.
func (c *client) next() (yprotocol.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		return yprotocol.Message{}, err
	}
	return yprotocol.DecodeClient(b)
}

// nextOf skips messages until one of type typ (and sync type st for sync).
func (c *client) nextOf(typ yprotocol.MessageType, st yprotocol.SyncType) yprotocol.Message {
	c.t.Helper()
	for {
		m, err := c.next()
		if err != nil {
			c.t.Fatalf("waiting for %v/%v: %v", typ, st, err)
		}
		if m.Type == typ && (typ != yprotocol.MessageSync || m.Sync == st) {
			return m
		}
	}
}

// closeStatus reads until the connection closes and returns the close.
func (c *client) closeStatus() (websocket.StatusCode, string) {
	c.t.Helper()
	for {
		_, err := c.next()
		if err != nil {
			var ce websocket.CloseError
			if ok := asCloseError(err, &ce); ok {
				return ce.Code, ce.Reason
			}
			c.t.Fatalf("connection ended without a close frame: %v", err)
		}
	}
}
