package syncws

import (
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestExpiredTokenCloseCarriesPermissionDenied: docs/api.md, close
// codes: "Before 4401 and 4403 it sends a y-protocols auth "permission
// denied" message carrying the reason", and 4401 is "also sent when the
// token of an open connection expires": then too, not only at a refused
// connect.
func TestExpiredTokenCloseCarriesPermissionDenied(t *testing.T) {
	s := newTestServer(t, Limits{})
	tok, err := auth.Mint(testKey, auth.Claims{Tenant: "school-a", User: "ada", Expiry: time.Now().Add(2 * time.Second).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.wsURL("expiry-doc")+"?token="+tok, nil)
	handshake(t, c, newEditor(5))
	denied := false
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		m, err := c.next()
		if err != nil {
			var ce websocket.CloseError
			if asCloseError(err, &ce) && int(ce.Code) == contract.CloseUnauthenticated {
				if !denied {
					t.Errorf("closed with 4401 (%q) without a permission-denied auth message first", ce.Reason)
				}
				return
			}
			t.Fatalf("connection ended: %v", err)
		}
		if m.Type == yprotocol.MessageAuth {
			denied = true
		}
	}
	t.Fatal("not closed after the token expired")
}

// TestAConnectionWhoseTokenRanOutIsRelayedNothingMore: in the second
// between a token's expiry and its connection's close, a classmate's edit
// is not relayed to it: the document is not served past the token.
func TestAConnectionWhoseTokenRanOutIsRelayedNothingMore(t *testing.T) {
	s := newTestServer(t, Limits{})
	expiry := time.Now().Add(2 * time.Second)
	tok, err := auth.Mint(testKey, auth.Claims{Tenant: "school-a", User: "ada", Expiry: expiry.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	ada := dial(t, s.wsURL("expiry-relay")+"?token="+tok, nil)
	handshake(t, ada, newEditor(5))
	bob := dial(t, s.wsURL("expiry-relay")+"?token="+token(t, "school-a", "bob"), nil)
	eb := newEditor(6)
	handshake(t, bob, eb)
	time.Sleep(time.Until(time.Unix(expiry.Unix(), 0)) + 100*time.Millisecond)
	if err := bob.send(yprotocol.EncodeUpdate(eb.insert(t, "after ada's token ran out"))); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := ada.next()
		if err != nil {
			var ce websocket.CloseError
			if !asCloseError(err, &ce) || int(ce.Code) != contract.CloseUnauthenticated {
				t.Fatalf("ada's connection ended with %v, want 4401", err)
			}
			return
		}
		if m.Type == yprotocol.MessageSync && m.Sync == yprotocol.SyncUpdate {
			t.Fatalf("ada's connection, its token expired, was relayed an update")
		}
	}
}
