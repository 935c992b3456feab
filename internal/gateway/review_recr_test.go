package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/yjs"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// finishSync answers the server's sync step 1 with the peer's whole
// state and applies what the server sends, for d; it returns the close
// error, if any.
func (p *rawPeer) finishSync(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		m, ok, err := p.next(time.Until(deadline))
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if m.Type != yprotocol.MessageSync {
			continue
		}
		if m.Sync == yprotocol.SyncStep1 {
			sv, err := yjs.DecodeStateVector(m.Payload)
			if err != nil {
				p.t.Fatal(err)
			}
			p.send(yprotocol.EncodeSyncStep2(p.doc.EncodeStateAsUpdate(sv)))
			continue
		}
		p.apply(m.Payload)
	}
	return nil
}

// TestReviewRecrNewStudentTypingOnConnectIsNotRefused: the legacy
// application deleted a document; a new student opens the ID in a fresh
// Y.Doc where she had typed "my " offline, and types "x" the moment the
// connection opens, before the server's sync step 1 reaches her (a stock
// y-websocket client sends each edit as soon as the socket is open). Her
// "x" continues her own offline text, which her sync step 2 brings a
// moment later. She is a legitimate author of a new document and must
// not be closed with 4409 ("your copy is of the deleted one"): on an ID
// that never had a document the same sequence works.
func TestReviewRecrNewStudentTypingOnConnectIsNotRefused(t *testing.T) {
	f := setupSync(t)
	teacher := token(t, "school-a", "teacher", time.Hour, false)
	for _, deletedBefore := range []bool{false, true} {
		doc := docOnShard("fast-typer", 0)
		if deletedBefore {
			doc = docOnShard("fast-typer-again", 0)
			f.create(teacher, doc, "the deleted essay")
			// A client opened it: the document has a Yjs side.
			dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+teacher, 777).handshake()
			eventually(t, "the deleted essay's Yjs side", func() bool {
				return f.readDoc(0, teacher, doc).HasYjs
			})
			deleteOutside(t, f.fixture, teacher, doc)
		}
		p := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+token(t, "school-a", "ana", time.Hour, false), 4242)
		p.insert("my ") // typed offline, before connecting
		p.send(yprotocol.EncodeSyncStep1(p.doc.EncodeStateVector()))
		p.send(yprotocol.EncodeUpdate(p.insert("x")))
		closeErr := p.finishSync(3 * time.Second)
		if code := websocket.CloseStatus(closeErr); code == contract.CloseForeignHistory {
			t.Fatalf("deleted before=%v: the new student was closed with 4409 (%v): her own new document was taken for a copy of the deleted one", deletedBefore, closeErr)
		}
		eventually(t, "the student's text committed", func() bool {
			r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, teacher, nil)
			return r.status == http.StatusOK && r.body["content"] == "my x"
		})
	}
}

// TestReviewRecrStaleCopyReconnectingDoesNotBringBackTheDeletedDocument:
// a student typed a document into existence; the legacy application
// deletes it; her next edit is refused with 4409. A stock y-websocket
// client reconnects after any close (as does a tab reopened from
// IndexedDB): its sync step 2 carries its whole history from clock 0, so
// nothing is missing, and no server genesis marks it. The deleted
// document must not come back from it.
func TestReviewRecrStaleCopyReconnectingDoesNotBringBackTheDeletedDocument(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("typed-back", 0)
	teacher, stu, p := typedEssay(t, f, doc, 5151)
	deleteOutside(t, f.fixture, teacher, doc)
	p.send(yprotocol.EncodeUpdate(p.insert("!")))
	if _, err := p.drain(3 * time.Second); websocket.CloseStatus(err) != contract.CloseForeignHistory {
		t.Fatalf("the stale edit ended with %v, want 4409", err)
	}
	// The stock client reconnects with the same Y.Doc.
	q := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+stu, 5151)
	q.apply(p.doc.EncodeStateAsUpdate(nil))
	q.send(yprotocol.EncodeSyncStep1(q.doc.EncodeStateVector()))
	closeErr := q.finishSync(3 * time.Second)
	if r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, teacher, nil); r.status != http.StatusNotFound {
		t.Fatalf("the deleted document is back after its stale copy reconnected (close %v): %d %s", closeErr, r.status, r.raw)
	}
}

// TestReviewRecrStaleCopyDoesNotJoinTheNewDocument: as above, but another
// student has meanwhile typed a new document into the ID. The deleted
// document's copy, reconnecting, must not be CRDT-merged into it: the new
// student would see the deleted essay appear in her text.
func TestReviewRecrStaleCopyDoesNotJoinTheNewDocument(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("typed-joined", 0)
	teacher, stu, p := typedEssay(t, f, doc, 6161)
	_ = p.ws.CloseNow() // the tab is closed; its copy stays in IndexedDB
	deleteOutside(t, f.fixture, teacher, doc)
	ana := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+token(t, "school-a", "ana", time.Hour, false), 7171)
	ana.handshake()
	ana.send(yprotocol.EncodeUpdate(ana.insert("fresh start")))
	eventually(t, "the new document committed", func() bool {
		r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, teacher, nil)
		return r.status == http.StatusOK && r.body["content"] == "fresh start"
	})
	q := dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+stu, 6161)
	q.apply(p.doc.EncodeStateAsUpdate(nil))
	q.send(yprotocol.EncodeSyncStep1(q.doc.EncodeStateVector()))
	closeErr := q.finishSync(3 * time.Second)
	if got := f.readDoc(0, teacher, doc).Content; got != "fresh start" {
		t.Fatalf("the new document reads %q after the deleted one's copy reconnected (close %v)", got, closeErr)
	}
	if code := websocket.CloseStatus(closeErr); code != contract.CloseForeignHistory {
		t.Errorf("the deleted document's copy ended with %v, want 4409", closeErr)
	}
}

// typedEssay: student "stu" of school-a types "my essay" into doc over a
// peer with Yjs client id, which the server commits; it returns a
// teacher's token, the student's and her peer, still connected.
func typedEssay(t *testing.T, f *syncFixture, doc string, id uint64) (teacher, stu string, p *rawPeer) {
	t.Helper()
	teacher = token(t, "school-a", "teacher", time.Hour, false)
	stu = token(t, "school-a", "stu", time.Hour, false)
	p = dialPeer(t, f.wsBase(0)+"/"+doc+"?token="+stu, id)
	p.handshake()
	p.send(yprotocol.EncodeUpdate(p.insert("my essay")))
	eventually(t, "the typed document committed", func() bool {
		r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc, teacher, nil)
		return r.status == http.StatusOK && r.body["content"] == "my essay"
	})
	return teacher, stu, p
}
