package gateway

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/syncws"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestAClientForwardedToAFullGatewayIsToldItIsFullAndForwardedOnesDoNotCountWhereTheyPass:
// a connection for a document of shard 1 that reaches gateway 0 is
// forwarded to gateway 1; when gateway 1 is at its connection limit the
// client gets gateway 1's 1013 and its reason (not a 1006 or a 4500 from
// the gateway it passed through), and gateway 0 keeps nothing of it. The
// connections gateway 0 forwards are not in its hub and do not count
// against its limit: they count where they are served, and the pod they
// pass shows them in yawp_gateway_sync_forwarded_connections.
func TestAClientForwardedToAFullGatewayIsToldItIsFullAndForwardedOnesDoNotCountWhereTheyPass(t *testing.T) {
	f := setupSyncHubs(t, nil, nil, syncws.Limits{MaxConns: 1})
	tok := func(user string) string { return token(t, "school-a", user, time.Hour, false) }
	doc1 := docOnShard("limit-fwd", 1)
	doc0 := docOnShard("limit-own", 0)

	ada := dialPeer(t, f.wsBase(1)+"/"+doc1+"?token="+tok("ada"), 701)
	ada.handshake()

	cy := dialPeer(t, f.wsBase(0)+"/"+doc1+"?token="+tok("cy"), 702)
	_, err := cy.drain(10 * time.Second)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || int(ce.Code) != contract.CloseRateLimited || !strings.Contains(ce.Reason, "connection limit (1)") {
		t.Fatalf("a connection through gateway 0 to the full gateway 1: %v, want close %d and the connection limit", err, contract.CloseRateLimited)
	}
	eventually(t, "gateway 0 forwards nothing any more", func() bool {
		g := f.gateway[0]
		g.fwd.mu.Lock()
		defer g.fwd.mu.Unlock()
		return g.fwd.open == 0
	})
	if n := f.hubs[0].Stats().Conns; n != 0 {
		t.Fatalf("gateway 0's hub holds %d connections, want none", n)
	}

	// Gateway 0 at its own limit still forwards: dan's connection is
	// gateway 1's, once gateway 1 has room.
	bob := dialPeer(t, f.wsBase(0)+"/"+doc0+"?token="+tok("bob"), 703)
	bob.handshake()
	_ = ada.ws.CloseNow()
	eventually(t, "ada's connection gone from gateway 1", func() bool { return f.hubs[1].Stats().Conns == 0 })
	dan := dialPeer(t, f.wsBase(0)+"/"+doc1+"?token="+tok("dan"), 704)
	dan.handshake()
	dan.send(yprotocol.EncodeUpdate(dan.insert("through gateway 0")))
	eventually(t, "dan's update committed", func() bool {
		r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc1, tok("reader"), nil)
		return r.status == http.StatusOK && r.body["content"] == "through gateway 0"
	})
	if a, b := f.hubs[0].Stats().Conns, f.hubs[1].Stats().Conns; a != 1 || b != 1 {
		t.Fatalf("hubs hold %d and %d connections, want 1 (bob) and 1 (dan)", a, b)
	}
	forwarded := func(i int) float64 { return testutil.ToFloat64(f.metrics[i].syncFwd) }
	if a, b := forwarded(0), forwarded(1); a != 1 || b != 0 {
		t.Fatalf("yawp_gateway_sync_forwarded_connections: gateway 0 %v, gateway 1 %v; want 1 (dan's) and 0", a, b)
	}
	if a, b := testutil.ToFloat64(f.metrics[0].syncConns), testutil.ToFloat64(f.metrics[1].syncConns); a != 1 || b != 1 {
		t.Fatalf("yawp_gateway_sync_connections: gateway 0 %v, gateway 1 %v; want 1 (bob) and 1 (dan)", a, b)
	}
	_ = dan.ws.CloseNow()
	eventually(t, "gateway 0 shows no forwarded connection once dan leaves", func() bool { return forwarded(0) == 0 })
}
