package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSyncClosesLabelIsBounded: a client that closes first chooses its own
// close code (any in 1000-4999); yawp_gateway_sync_closes_total counts it
// as "client", so clients can neither grow the label set nor make a 4500
// the runbook reads as the server's failure (they could, found by review).
func TestSyncClosesLabelIsBounded(t *testing.T) {
	f := setupSync(t)
	m := f.metrics[0]
	doc := docOnShard("closer", 0)
	tok := token(t, "school-a", "stu", time.Hour, false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	codes := []int{4500, 4001, 4002, 4003, 4004, 4005, 4006, 4007, 4008, 4009, 4010, 3999}
	for _, code := range codes {
		ws, _, err := websocket.Dial(ctx, f.wsBase(0)+"/"+doc+"?token="+tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "open", func() bool { return testutil.ToFloat64(m.syncConns) == 1 })
		_ = ws.Close(websocket.StatusCode(code), "bye")
		eventually(t, "closed", func() bool { return testutil.ToFloat64(m.syncConns) == 0 })
	}
	series := testutil.CollectAndCount(m.syncCloses)
	t.Logf("yawp_gateway_sync_closes_total series: %d", series)
	if got := testutil.ToFloat64(m.syncCloses.WithLabelValues("4500")); got != 0 {
		t.Errorf("yawp_gateway_sync_closes_total{code=\"4500\"} = %v after clients closed with 4500; the server failed nothing", got)
	}
	if series > 3 {
		t.Errorf("%d series from %d client-chosen close codes: the label set is the clients' to grow (%s)", series, len(codes), fmt.Sprint(codes))
	}
}

// TestRefusedConnectionsAreCounted: a connection refused before it opened
// (bad token 4401, another tenant's document 4403, too many connections,
// shutting down) never reaches Opened/Closed; it is counted under the
// code sent all the same (it was not counted at all, found by review).
func TestRefusedConnectionsAreCounted(t *testing.T) {
	f := setupSync(t)
	m := f.metrics[0]
	doc := docOnShard("refused", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, f.wsBase(0)+"/"+doc+"?token=not-a-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	var code websocket.StatusCode
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			code = websocket.CloseStatus(err)
			break
		}
	}
	t.Logf("refused with %d", code)
	time.Sleep(200 * time.Millisecond)
	if got := testutil.CollectAndCount(m.syncCloses); got == 0 {
		t.Errorf("a connection refused with %d left no trace in yawp_gateway_sync_closes_total", code)
	}
}
