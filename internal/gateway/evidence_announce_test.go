package gateway

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
	"github.com/yawp/persistence-operator/pkg/localfirst"
)

// requestEvidence asks doc's evidence about request id and checks the
// verdict and that the proof's summary says each of wants.
func requestEvidence(t *testing.T, f *syncFixture, tok, doc, id, verdict string, wants ...string) map[string]any {
	t.Helper()
	r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?request="+id, tok, nil)
	if r.status != http.StatusOK {
		t.Fatalf("evidence?request=%s: %d %s", id, r.status, r.raw)
	}
	proof, _ := r.body["proof"].(map[string]any)
	summary, _ := proof["summary"].(string)
	t.Logf("evidence?request=%s: %v: %s", id, r.body["verdict"], summary)
	if r.body["verdict"] != verdict {
		t.Errorf("evidence?request=%s says %v (%q), want %s", id, r.body["verdict"], summary, verdict)
		return proof
	}
	for _, want := range wants {
		if !strings.Contains(summary, want) {
			t.Errorf("evidence?request=%s: the proof does not say %q: %q", id, want, summary)
		}
	}
	return proof
}

// wsRequestOf is the request ID of the first announcement (state-vector
// entry) of client in doc's ledger: the ID of its WebSocket connection.
func wsRequestOf(t *testing.T, f *syncFixture, tok, doc string, client uint64) string {
	t.Helper()
	r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?client="+strconv.FormatUint(client, 10), tok, nil)
	tl, _ := r.body["timeline"].([]any)
	for _, x := range tl {
		en, _ := x.(map[string]any)
		if id, _ := en["request_id"].(string); en["kind"] == "state-vector" && strings.HasPrefix(id, "ws-") {
			return id
		}
	}
	t.Fatalf("no WebSocket announcement of client %d: %s", client, r.raw)
	return ""
}

// TestEvidenceOfAnHTTPAnnouncementWhoseOperationsCameByAnotherRequest: a
// local-first editor edits offline, announces its state over plain HTTP
// sync (request "hello-1"), and its operations then reach the server over
// the WebSocket. Asked about "hello-1", evidence said never-persisted
// ("none of them a save"), although the work is on the server: support
// would tell the student it was lost. The request carried no operations;
// what it announced is synced, and the proof names the request that
// brought them.
func TestEvidenceOfAnHTTPAnnouncementWhoseOperationsCameByAnotherRequest(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("evid-hello", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	stu := token(t, "school-a", "stu", time.Hour, false)
	f.create(teacher, doc, "Start. ")
	c, err := localfirst.Open(filepath.Join(t.TempDir(), "stu.ylf"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	remote := localfirst.Remote{URL: f.wsBase(0) + "/", DocID: doc, Token: stu}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop := f.runClient(c, remote)
	if err := c.WaitFor(ctx, func(s string) bool { return s == "Start. " }); err != nil {
		t.Fatalf("initial sync: %q", c.Text())
	}
	stop()
	if err := c.Edit(func(x *yjs.Text) error { return x.Insert(x.Len(), "My offline draft.", nil) }); err != nil {
		t.Fatal(err)
	}
	r := f.do(http.MethodPost, contract.PathDocuments+"/"+doc+"/sync", stu, yjs.EncodeStateVector(c.StateVector()), contract.HeaderRequestID, "hello-1")
	if missing, _ := r.body["missing"].(map[string]any); r.status != http.StatusOK || missing[strconv.FormatUint(c.ClientID(), 10)] == nil {
		t.Fatalf("HTTP sync step 1: %d %s", r.status, r.raw)
	}
	// Before its operations arrive, the announcement is the evidence
	// that they exist only on the student's device.
	requestEvidence(t, f, teacher, doc, "hello-1", store.VerdictSavedLocallyNotSynced, "announced operations up to clock 17")

	stop = f.runClient(c, remote)
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	f.checkBothRepresentations(teacher, doc, "Start. My offline draft.")
	ws := wsRequestOf(t, f, teacher, doc, c.ClientID())
	proof := requestEvidence(t, f, teacher, doc, "hello-1", store.VerdictSynced,
		"request hello-1 carried no operations", "announced", "committed since by request "+ws, "revision 2")
	if proof["revision"] != float64(2) {
		t.Errorf("proof revision %v, want 2 (the draft's)", proof["revision"])
	}
	if es, _ := proof["entries"].([]any); len(es) < 2 {
		t.Errorf("proof entries %v: want the announcement and the commit that brought its operations", es)
	}
}

// TestEvidenceOfAWebSocketAnnouncementWhoseOperationsCameOverHTTP: a
// client announces over the WebSocket and is cut before sending its
// operations; the editor then posts them over HTTP (request "late-ops").
// The connection's request said never-persisted once they arrived.
// Another announcement whose operations never arrive stays
// saved-locally-not-synced.
func TestEvidenceOfAWebSocketAnnouncementWhoseOperationsCameOverHTTP(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("evid-wsann", 0)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	stu := token(t, "school-a", "stu", time.Hour, false)
	f.create(teacher, doc, "Start. ")
	p := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+stu, 4242)
	p.handshake()
	u := p.insert("Typed on the train.")
	// Announce what it holds, then go away without sending it.
	p.send(yprotocol.EncodeSyncStep1(p.doc.EncodeStateVector()))
	_, _ = p.drain(2 * time.Second)
	_ = p.ws.CloseNow()
	ws := wsRequestOf(t, f, teacher, doc, 4242)
	eventually(t, "the connection's announcement unsynced", func() bool {
		r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?request="+ws, teacher, nil)
		return r.body["verdict"] == store.VerdictSavedLocallyNotSynced
	})

	if r := f.do(http.MethodPost, contract.PathDocuments+"/"+doc+"/updates", stu, u, contract.HeaderRequestID, "late-ops"); r.status != http.StatusOK {
		t.Fatalf("update over HTTP: %d %s", r.status, r.raw)
	}
	requestEvidence(t, f, teacher, doc, ws, store.VerdictSynced, "client 4242", "committed since by request late-ops")
	requestEvidence(t, f, teacher, doc, "late-ops", store.VerdictSynced, "committed as revision 2")

	// An announcement over HTTP whose operations never arrive.
	d := yjs.NewDoc(yjs.Options{ClientID: 5151})
	if err := d.GetText(contract.YjsTextName).Insert(0, "never sent", nil); err != nil {
		t.Fatal(err)
	}
	if r := f.do(http.MethodPost, contract.PathDocuments+"/"+doc+"/sync", stu, d.EncodeStateVector(), contract.HeaderRequestID, "hello-2"); r.status != http.StatusOK {
		t.Fatalf("HTTP sync step 1: %d %s", r.status, r.raw)
	}
	requestEvidence(t, f, teacher, doc, "hello-2", store.VerdictSavedLocallyNotSynced, "client 5151 announced operations up to clock 10; the server holds 0 of them")
}
