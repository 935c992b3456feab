package syncws

import (
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/auth"
)

// TestExpiredConnectionIsToldNothingOfOthersLeaving: in the second
// between a token's expiry and its connection's close the connection is
// relayed nothing, a classmate's leaving (the removal of her awareness
// client, sent when her connection closes) included.
func TestExpiredConnectionIsToldNothingOfOthersLeaving(t *testing.T) {
	s := newTestServer(t, Limits{})
	const doc, bobClient = "expiry-leave", 5150
	expiry := time.Now().Add(2 * time.Second)
	tok, err := auth.Mint(testKey, auth.Claims{Tenant: "school-a", User: "ada", Expiry: expiry.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	ada := dial(t, s.wsURL(doc)+"?token="+tok, nil)
	bob := dial(t, s.wsURL(doc)+"?token="+token(t, "school-a", "bob"), nil)
	if err := bob.send(awarenessOfOne(bobClient, 1, `{"user":{"name":"bob"}}`)); err != nil {
		t.Fatal(err)
	}
	adaR := readInBackground(ada)
	if got := adaR.awarenessOf(bobClient, 500*time.Millisecond); len(got) != 1 {
		t.Fatalf("ada saw %q of bob's client before her token ran out", got)
	}
	time.Sleep(time.Until(time.Unix(expiry.Unix(), 0)) + 100*time.Millisecond)
	// ada's token ran out; bob leaves within the second before ada's close.
	_ = bob.ws.Close(websocket.StatusNormalClosure, "")
	if got := adaR.awarenessOf(bobClient, 1500*time.Millisecond); len(got) > 0 {
		t.Errorf("ada's connection, its token expired, was relayed %q for bob's client %d", got, bobClient)
	}
}
