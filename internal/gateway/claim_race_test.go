package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// TestATypingTabOfTheSchoolThatLostAFreeIDLeavesATrace: two
// schools' tabs have the same free ID open (since 11b1e06 opening it
// claims nothing, so both sit there until one types). school-a types
// first and the ID is school-a's; school-b's keystroke, typed at the same
// moment, reaches the gateway after the claim stopped her connection but
// before her tab read its close. It is refused (4403), and a refused
// update goes on the document's ledger with the client that typed it
// (evidence of a student's lost text). Before: the hub read her update
// after the claim's stop and dropped it unrecorded; the ledger has no
// trace of school-b's text.
func TestATypingTabOfTheSchoolThatLostAFreeIDLeavesATrace(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("essay-race", 0)
	tokA := token(t, "school-a", "ada", time.Hour, false)
	tokB := token(t, "school-b", "bea", time.Hour, false)
	a := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+tokA, 101)
	b := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+tokB, 202)
	a.handshake()
	b.handshake()

	a.send(yprotocol.EncodeUpdate(a.insert("Ada's essay")))
	eventually(t, "school-a's update committed", func() bool {
		r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, tokA, nil)
		return r.status == http.StatusOK
	})
	// school-b types; her tab has not read the close yet.
	b.send(yprotocol.EncodeUpdate(b.insert("Bea's essay")))
	_, closeErr := b.drain(8 * time.Second)
	if code := websocket.CloseStatus(closeErr); code != contract.CloseForbidden {
		t.Errorf("school-b's tab closed with %v, want %d", closeErr, contract.CloseForbidden)
	}
	if txt := b.text(); txt != "Bea's essay" {
		t.Errorf("school-b's tab shows %q", txt)
	}
	if d := f.readDoc(0, tokA, doc); strings.Contains(d.Content, "Bea") {
		t.Fatalf("school-b's text in school-a's document: %q", d.Content)
	}
	if ev := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence", tokA, nil); true {
		t.Logf("full evidence: %s", ev.raw)
	}
	found := func() (bool, string) {
		ev := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?client=202", tokA, nil)
		raw, _ := json.Marshal(ev.body)
		for _, e := range ev.body["timeline"].([]any) {
			m := e.(map[string]any)
			if m["kind"] != "rejected" {
				continue
			}
			if cs, ok := m["clients"].([]any); ok {
				for _, c := range cs {
					if c == float64(202) {
						return true, string(raw)
					}
				}
			}
		}
		return false, string(raw)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, raw := found()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("school-b's refused keystroke (client 202) is nowhere in the ledger:\n%s", raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
