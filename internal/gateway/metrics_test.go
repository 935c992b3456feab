package gateway

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestMetricsCountWhatClientsSaw: what an operator's dashboard and alerts
// read (yawp_gateway_*) follows real REST requests and a real sync
// connection through to the syncer and PostgreSQL: each answer by route
// and status, each update by outcome with its commit time, and the
// connections open and closed.
func TestMetricsCountWhatClientsSaw(t *testing.T) {
	f := setupSync(t)
	m := f.metrics[0]
	doc := docOnShard("counted", 0)
	tok := token(t, "school-a", "stu", time.Hour, false)

	f.create(tok, doc, "Hello")
	if r := f.do(http.MethodPut, contract.PathDocuments+"/"+doc, tok, map[string]any{"content": "Hello there"}, "If-Match", `"1"`); r.status != http.StatusOK {
		t.Fatalf("save: %d %s", r.status, r.raw)
	}
	if r := f.do(http.MethodPut, contract.PathDocuments+"/"+doc, tok, "{not json", "If-Match", `"2"`); r.status != http.StatusBadRequest {
		t.Fatalf("bad save: %d %s", r.status, r.raw)
	}
	if r := f.do(http.MethodGet, "/v1/nowhere", tok, nil); r.status != http.StatusNotFound {
		t.Fatalf("unknown path: %d %s", r.status, r.raw)
	}
	for _, c := range []struct {
		route, code string
		want        float64
	}{
		{routeCreate, "201", 1}, {routeSave, "200", 1}, {routeSave, "400", 1}, {routeOther, "404", 1}, {routeRead, "200", 0},
	} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(c.route, c.code)); got != c.want {
			t.Errorf("yawp_gateway_http_requests_total{route=%q,code=%q} = %v, want %v", c.route, c.code, got, c.want)
		}
	}
	if n := histogramCount(t, m.duration.WithLabelValues(routeSave).(prometheus.Histogram)); n != 2 {
		t.Errorf("save durations observed: %d, want 2", n)
	}

	// A sync connection: an update is committed and relayed, its replay
	// is a duplicate, garbage is refused and closes the connection.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, f.wsBase(0)+"/"+doc+"?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ws.CloseNow() }()
	eventually(t, "the connection counted open", func() bool { return testutil.ToFloat64(m.syncConns) == 1 })
	c := yjs.NewDoc(yjs.Options{ClientID: 91})
	var u []byte
	c.OnUpdate(func(b []byte) { u = b })
	if err := c.GetText(contract.YjsTextName).Insert(0, "drafted offline ", nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := ws.Write(ctx, websocket.MessageBinary, yprotocol.EncodeUpdate(u)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the update committed, then its replay", func() bool {
		return testutil.ToFloat64(m.syncUpdates.WithLabelValues(updateRelayed)) == 1 &&
			testutil.ToFloat64(m.syncUpdates.WithLabelValues(updateDuplicate)) == 1
	})
	if n := histogramCount(t, m.syncCommit); n != 2 {
		t.Errorf("commit times observed: %d, want 2 (the update and its replay)", n)
	}
	if got := f.readDoc(0, tok, doc).Content; got != "drafted offline Hello there" {
		t.Fatalf("the counted update is not in the document: %q", got)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, yprotocol.EncodeUpdate([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3})); err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) || int(ce.Code) != contract.CloseMalformed {
				t.Fatalf("want close %d, got %v", contract.CloseMalformed, err)
			}
			break
		}
	}
	eventually(t, "the connection counted closed", func() bool {
		return testutil.ToFloat64(m.syncConns) == 0 &&
			testutil.ToFloat64(m.syncCloses.WithLabelValues("4400")) == 1
	})
	if got := testutil.ToFloat64(m.syncUpdates.WithLabelValues(updateRefused)); got != 1 {
		t.Errorf("refused updates: %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.syncUpdates.WithLabelValues(updateFailed)); got != 0 {
		t.Errorf("failed updates: %v, want 0", got)
	}
}

func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	h.Collect(ch)
	var out dto.Metric
	if err := (<-ch).Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetHistogram().GetSampleCount()
}
