package syncws

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestAHubAtItsConnectionLimitRefusesMoreAndTakesThemOnceThereIsRoom: with
// MaxConns open, the next connection is refused with 1013 and a reason
// saying why (a student's editor retries; her edits stay in the
// browser), nothing is recorded against the document for it, and the
// open connections keep working. Once one closes, a new one is taken.
func TestAHubAtItsConnectionLimitRefusesMoreAndTakesThemOnceThereIsRoom(t *testing.T) {
	s := newTestServer(t, Limits{MaxConns: 2})
	ada := dial(t, s.wsURL("essay")+"?token="+token(t, "school-a", "ada"), nil)
	bob := dial(t, s.wsURL("essay")+"?token="+token(t, "school-a", "bob"), nil)
	waitFor(t, "two connections registered", func() bool { return s.hub.Stats().Conns == 2 })

	cy := dial(t, s.wsURL("essay")+"?token="+token(t, "school-a", "cy"), nil)
	code, reason := cy.closeStatus()
	if code != contract.CloseRateLimited || !strings.Contains(reason, "connection limit (2)") {
		t.Fatalf("third connection: %d %q, want %d and the connection limit", code, reason, contract.CloseRateLimited)
	}
	// Refused before its token was looked at: a bad one gets the same.
	bad := dial(t, s.wsURL("essay")+"?token=garbage", nil)
	if code, _ := bad.closeStatus(); code != contract.CloseRateLimited {
		t.Fatalf("connection with a bad token at the limit: %d, want %d", code, contract.CloseRateLimited)
	}
	if n := len(s.be.Rejections()); n != 0 {
		t.Fatalf("%d rejections recorded for connections refused at the limit, want none: %+v", n, s.be.Rejections())
	}

	// The open ones still edit together.
	e := newEditor(5)
	if err := ada.send(yprotocol.EncodeUpdate(e.insert(t, "hello"))); err != nil {
		t.Fatal(err)
	}
	bob.nextOf(yprotocol.MessageSync, yprotocol.SyncUpdate)
	waitFor(t, "ada's update committed", func() bool { return s.be.Text("essay") == "hello" })

	// Room again once one leaves.
	_ = ada.ws.CloseNow()
	waitFor(t, "ada's connection gone", func() bool { return s.hub.Stats().Conns == 1 })
	dan := dial(t, s.wsURL("essay")+"?token="+token(t, "school-a", "dan"), nil)
	waitFor(t, "a new connection taken", func() bool { return s.hub.Stats().Conns == 2 })
	if err := dan.send(yprotocol.EncodeUpdate(e.insert(t, " world"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dan's update committed", func() bool { return s.be.Text("essay") == "hello world" })
}

// gatedAuth is TokenAuth whose Authenticate tells entered and then waits
// for gate to close.
type gatedAuth struct {
	TokenAuth
	entered chan struct{}
	gate    chan struct{}
}

func (a gatedAuth) Authenticate(ctx context.Context, tok string) (Principal, time.Duration, error) {
	a.entered <- struct{}{}
	<-a.gate
	return a.TokenAuth.Authenticate(ctx, tok)
}

// TestConnectionsBeingOpenedTakeTheirPlaceUnderTheLimit: a connection
// whose token is being checked holds a place under MaxConns, so one that
// arrives meanwhile at a hub with no other room is refused with 1013
// before its token is checked. The pre-check used to count only open
// connections: in a reconnection storm to an empty (just restarted)
// gateway every connection passed it, and each had its token checked and
// its document looked up at the syncer before all but MaxConns were
// refused. A connection refused after taking its place (a bad token)
// gives the place back.
func TestConnectionsBeingOpenedTakeTheirPlaceUnderTheLimit(t *testing.T) {
	be := NewMemoryBackend()
	a := gatedAuth{TokenAuth: TokenAuth{Key: testKey, Tenants: be}, entered: make(chan struct{}, 8), gate: make(chan struct{})}
	hub := NewHub(Config{Backend: be, Auth: a, Limits: Limits{MaxConns: 1}})
	mux := http.NewServeMux()
	mux.Handle(contract.PathSync, hub)
	srv := httptest.NewServer(mux)
	s := &testServer{Server: srv, hub: hub, be: be}
	released := false
	release := func() {
		if !released {
			released = true
			close(a.gate)
		}
	}
	t.Cleanup(func() {
		release()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Shutdown(ctx)
		srv.Close()
	})

	type dialed struct {
		ws  *websocket.Conn
		err error
	}
	dialAsync := func(tok string) chan dialed {
		ch := make(chan dialed, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, s.wsURL("essay")+"?token="+tok, nil)
			ch <- dialed{ws, err}
		}()
		return ch
	}
	first := dialAsync(token(t, "school-a", "ada"))
	<-a.entered // ada's token is being checked

	second := dialAsync(token(t, "school-a", "bob"))
	select {
	case <-a.entered:
		t.Errorf("bob's token was checked while ada's connection, being opened, held the only place")
	case d := <-second:
		if d.err != nil {
			t.Fatal(d.err)
		}
		c := &client{t: t, ws: d.ws}
		if code, reason := c.closeStatus(); code != contract.CloseRateLimited || !strings.Contains(reason, "connection limit (1)") {
			t.Errorf("bob: %d %q, want %d and the connection limit", code, reason, contract.CloseRateLimited)
		}
	}
	release()
	d := <-first
	if d.err != nil {
		t.Fatal(d.err)
	}
	ada := &client{t: t, ws: d.ws}
	waitFor(t, "ada's connection registered", func() bool { return hub.Stats().Conns == 1 })
	_ = ada.ws.CloseNow()
	waitFor(t, "ada's connection gone", func() bool { return hub.Stats().Conns == 0 })

	// A connection refused for its token gives its place back.
	bad := dial(t, s.wsURL("essay")+"?token=garbage", nil)
	if code, _ := bad.closeStatus(); code != contract.CloseUnauthenticated {
		t.Fatalf("bad token: %d, want %d", code, contract.CloseUnauthenticated)
	}
	cy := dial(t, s.wsURL("essay")+"?token="+token(t, "school-a", "cy"), nil)
	waitFor(t, "cy's connection registered", func() bool { return hub.Stats().Conns == 1 })
	_ = cy
}
