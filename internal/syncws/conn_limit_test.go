package syncws

import (
	"strings"
	"testing"

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
