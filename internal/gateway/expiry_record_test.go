package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestUpdateArrivingAfterTheTokenExpiredIsOnRecord: when a sync
// connection's token runs out the gateway closes it with 4401. An update
// the editor sent just then (typed before its client saw the close)
// reaches the gateway: it is refused and on record with the work it
// carried (docs/api.md), so evidence about the student's client says
// `rejected`. Before, the hub stopped reading at once and dropped it, and
// evidence called the client `synced`.
func TestUpdateArrivingAfterTheTokenExpiredIsOnRecord(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("expiring", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	f.create(teacher, doc, "Start. ")
	short := token(t, "school-a", "stu", 2*time.Second, false)
	claims, err := auth.Unverified(short)
	if err != nil {
		t.Fatal(err)
	}
	const client = 7707
	p := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+short, client)
	p.handshake()
	p.send(yprotocol.EncodeUpdate(p.insert("In time.")))
	eventually(t, "the first edit committed", func() bool {
		r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, teacher, nil)
		return strings.Contains(r.raw, "In time.")
	})
	// The token runs out; the student types once more, before her
	// client has read the gateway's close.
	time.Sleep(time.Until(time.Unix(claims.Expiry, 0)) + 300*time.Millisecond)
	late := p.insert(" Typed as the token ran out.")
	p.send(yprotocol.EncodeUpdate(late))
	_, closeErr := p.drain(5 * time.Second)
	t.Logf("connection ended: %v", closeErr)

	d := f.readDoc(0, teacher, doc)
	committed := strings.Contains(d.Content, "Typed as the token ran out.")
	var rejected []map[string]any
	eventually(t, "the evidence of the client", func() bool {
		r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?client="+strconv.Itoa(client), teacher, nil)
		if r.status != http.StatusOK {
			return false
		}
		rejected = nil
		for _, e := range r.body["timeline"].([]any) {
			if m := e.(map[string]any); m["kind"] == "rejected" {
				rejected = append(rejected, m)
			}
		}
		if !committed && len(rejected) == 0 {
			b, _ := json.Marshal(map[string]any{"verdict": r.body["verdict"], "proof": r.body["proof"]})
			t.Logf("evidence for client %d: %s", client, b)
		}
		return true
	})
	if !committed && len(rejected) == 0 {
		t.Errorf("an update that reached the gateway after the token expired was neither committed (text %q) nor recorded as refused: evidence for client %d has no rejected entry", d.Content, client)
	}
}
