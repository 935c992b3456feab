package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/yprotocol"
)

// refusedCopyEvidence asks doc's evidence as the whole document, about
// client and about user, and checks what support reads: her work is
// saved-locally-not-synced (the server holds none of it; her device
// does), and the proof says the document was deleted, that her copy was
// refused, and where the text is. phase names the moment in failures.
func refusedCopyEvidence(t *testing.T, f *syncFixture, tok, doc string, client uint64, user, phase string) {
	t.Helper()
	for _, q := range []string{"", "?client=" + strconv.FormatUint(client, 10), "?user=" + user} {
		r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence"+q, tok, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s: evidence%s: %d %s", phase, q, r.status, r.raw)
		}
		proof, _ := r.body["proof"].(map[string]any)
		summary, _ := proof["summary"].(string)
		if r.body["verdict"] != store.VerdictSavedLocallyNotSynced {
			t.Errorf("%s: evidence%s says %v (%q); the student's edit was refused and is only on her device", phase, q, r.body["verdict"], summary)
			continue
		}
		for _, want := range []string{"deleted outside the gateway", "refused", "foreign_history", "device"} {
			if !strings.Contains(summary, want) {
				t.Errorf("%s: evidence%s proof does not say %q: %q", phase, q, want, summary)
			}
		}
	}
}

// TestReviewEvidRefusedEditOfADeletedDocument: a student holds a copy of
// her teacher's document in the local-first client; the legacy
// application deletes it and her next edit is refused with 4409 (the
// client keeps the copy). Support asks what happened to her work, while
// the ID is free and after the teacher made a new document with it.
// Before, while the ID was free, the whole document said "synced" (the
// deleted document's revision 1) and her client or user "rejected": the
// refusal was left out of saved-locally-not-synced because no document,
// hence no school, held the ID. After the new document, the answer said
// "saved-locally-not-synced" with a proof that did not say her copy was
// of a deleted document.
func TestReviewEvidRefusedEditOfADeletedDocument(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("evid-gone", 0)
	teacher, old := staleEditRefused(t, f, doc)
	refusedCopyEvidence(t, f, teacher, doc, old.ClientID(), "stu", "ID free")

	f.create(teacher, doc, "new")
	refusedCopyEvidence(t, f, teacher, doc, old.ClientID(), "stu", "ID taken")
	// The new document's own save is still reported as synced.
	r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?user=teacher", teacher, nil)
	if r.body["verdict"] != store.VerdictSynced {
		t.Errorf("the teacher's new document: %v %v", r.body["verdict"], r.body["proof"])
	}
}

// TestReviewEvidRefusedCopyReconnecting: a student typed a document into
// existence; it is deleted outside the gateway, her next edit is refused,
// another student types a new document into the ID, and her client
// reconnects with its whole copy, refused again. The last entry naming
// her client is the disconnection, so the proof read "client N announced
// operations up to clock 9; the server holds 0 of them": no refusal, no
// deletion, and "0" although the deleted document had held most of them.
func TestReviewEvidRefusedCopyReconnecting(t *testing.T) {
	f := setupSync(t)
	doc := docOnShard("evid-typed", 0)
	teacher, stu, p := typedEssay(t, f, doc, 6161)
	deleteOutside(t, f.fixture, teacher, doc)
	p.send(yprotocol.EncodeUpdate(p.insert("!")))
	_, _ = p.drain(3 * time.Second)
	refusedCopyEvidence(t, f, teacher, doc, 6161, "stu", "ID free")

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
	_ = q.finishSync(3 * time.Second)
	refusedCopyEvidence(t, f, teacher, doc, 6161, "stu", "ID taken")
	r := f.do(http.MethodGet, contract.PathDocuments+"/"+doc+"/evidence?user=ana", teacher, nil)
	if r.body["verdict"] != store.VerdictSynced {
		t.Errorf("ana's new document: %v %v", r.body["verdict"], r.body["proof"])
	}
}
