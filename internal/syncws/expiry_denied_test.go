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
