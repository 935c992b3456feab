package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestEvidenceOfARefusedUpdateWhoseOperationsWereSentAgain: a student's
// editor posts her offline work after her token expired (401, recorded
// with the update's clients and clock ranges), refreshes the token and
// sends the work again, with what she typed since, under a new request
// ID: committed. Support asks about the first request and read only
// "rejected, refused: token_expired", and told her the work was lost.
// The refusal stays rejected (it is true of that request), but its
// finding says which request committed the operations it carried, at
// which ledger entry and revision.
func TestEvidenceOfARefusedUpdateWhoseOperationsWereSentAgain(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	expired := token(t, "school-a", "alice", -time.Minute, false)
	f.create(alice, "essay-1", "Hello")
	d := yjs.NewDoc(yjs.Options{ClientID: 777})
	var us [][]byte
	d.OnUpdate(func(b []byte) { us = append(us, b) })
	txt := d.GetText(contract.YjsTextName)
	if err := txt.Insert(0, "my offline paragraph, typed on the bus", nil); err != nil {
		t.Fatal(err)
	}
	if r := f.do(http.MethodPost, contract.PathDocuments+"/essay-1/updates", expired, us[0], "X-Request-Id", "late-1"); r.status != http.StatusUnauthorized {
		t.Fatalf("update with an expired token: %d %s", r.status, r.raw)
	}
	if err := txt.Insert(0, "Title. ", nil); err != nil {
		t.Fatal(err)
	}
	all, err := yjs.MergeUpdates(us...)
	if err != nil {
		t.Fatal(err)
	}
	r := f.do(http.MethodPost, contract.PathDocuments+"/essay-1/updates", alice, all, "X-Request-Id", "late-2")
	if r.status != http.StatusOK {
		t.Fatalf("update sent again: %d %s", r.status, r.raw)
	}
	rev := int64(r.body["revision"].(float64))

	ev := f.do(http.MethodGet, contract.PathDocuments+"/essay-1/evidence?request=late-1", alice, nil)
	if ev.status != http.StatusOK || ev.body["verdict"] != store.VerdictRejected {
		t.Fatalf("evidence of the refused request: %d verdict %v, want rejected (true of that request)", ev.status, ev.body["verdict"])
	}
	proof := ev.body["proof"].(map[string]any)
	sum, _ := proof["summary"].(string)
	for _, want := range []string{"refused: token_expired", "committed later by request late-2", fmt.Sprintf("revision %d", rev), "client 777"} {
		if !strings.Contains(sum, want) {
			t.Errorf("rejected finding's summary %q does not say %q: support reads the work as lost", sum, want)
		}
	}
	if n := len(proof["entries"].([]any)); n != 2 {
		t.Errorf("proof entries %v: want the refusal and the commit that holds its operations", proof["entries"])
	}
	// The client, the user and the whole document answer synced.
	for _, q := range []string{"?client=777", "?user=alice", ""} {
		if ev := f.do(http.MethodGet, contract.PathDocuments+"/essay-1/evidence"+q, alice, nil); ev.body["verdict"] != store.VerdictSynced {
			t.Errorf("evidence%s: verdict %v (%v), want synced", q, ev.body["verdict"], ev.body["proof"])
		}
	}
}

// TestEvidenceOfARefusedSaveWhoseTextWasSavedAgain: a legacy editor's
// save names a base revision the document never had (412
// unknown_revision, recorded with the content's hash); the editor loads
// the document and saves the same text on the right base, under a new
// key: committed, with the same content hash. Asked about the first key,
// the refusal says the same text was committed later by the same user.
// A later save of other text says nothing of the kind.
func TestEvidenceOfARefusedSaveWhoseTextWasSavedAgain(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	f.create(alice, "essay-1", "Hello")
	body := map[string]any{"content": "Hello, my whole essay"}
	if r := f.do(http.MethodPut, contract.PathDocuments+"/essay-1", alice, body, "If-Match", `"7"`, "Idempotency-Key", "k1"); r.status != http.StatusPreconditionFailed {
		t.Fatalf("save on a base the document never had: %d %s", r.status, r.raw)
	}
	if r := f.do(http.MethodPut, contract.PathDocuments+"/essay-1", alice, map[string]any{"content": "Hello, my essay"}, "If-Match", `"7"`, "Idempotency-Key", "k3"); r.status != http.StatusPreconditionFailed {
		t.Fatalf("save on a base the document never had: %d %s", r.status, r.raw)
	}
	r := f.do(http.MethodPut, contract.PathDocuments+"/essay-1", alice, body, "If-Match", `"1"`, "Idempotency-Key", "k2")
	if r.status != http.StatusOK {
		t.Fatalf("save again: %d %s", r.status, r.raw)
	}
	rev := int64(r.body["revision"].(float64))
	ev := f.do(http.MethodGet, contract.PathDocuments+"/essay-1/evidence?request=k1", alice, nil)
	if ev.body["verdict"] != store.VerdictRejected {
		t.Fatalf("evidence of k1: verdict %v, want rejected", ev.body["verdict"])
	}
	proof := ev.body["proof"].(map[string]any)
	sum, _ := proof["summary"].(string)
	for _, want := range []string{"refused: unknown_revision", "committed later by request k2", fmt.Sprintf("revision %d", rev)} {
		if !strings.Contains(sum, want) {
			t.Errorf("rejected finding's summary %q does not say %q", sum, want)
		}
	}
	if n := len(proof["entries"].([]any)); n != 2 {
		t.Errorf("proof entries %v: want the refusal and the commit of the same text", proof["entries"])
	}
	// Text that was never saved again stays plainly rejected.
	ev = f.do(http.MethodGet, contract.PathDocuments+"/essay-1/evidence?request=k3", alice, nil)
	if sum := ev.body["proof"].(map[string]any)["summary"]; ev.body["verdict"] != store.VerdictRejected || sum != "refused: unknown_revision" {
		t.Errorf("evidence of k3 (its text never saved): %v %q", ev.body["verdict"], sum)
	}
}

// TestEvidenceOfASaveRefusedForAnExpiredTokenThenSavedAgain: the legacy
// editor's save is refused for an expired token (its body was not read,
// so the record had no content hash); it refreshes the token and saves
// the same text under a new request ID. Asked about the refused request,
// support read only "refused: token_expired". The record now keeps the
// text's hash (never the text), and the refusal says the same text was
// committed by the later request.
func TestEvidenceOfASaveRefusedForAnExpiredTokenThenSavedAgain(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	expired := token(t, "school-a", "alice", -time.Minute, false)
	f.create(alice, "essay-1", "Hello")
	body := map[string]any{"content": "Hello, my essay from last night"}
	if r := f.do(http.MethodPut, contract.PathDocuments+"/essay-1", expired, body, "X-Request-Id", "night-1"); r.status != http.StatusUnauthorized {
		t.Fatalf("save with an expired token: %d %s", r.status, r.raw)
	}
	r := f.do(http.MethodPut, contract.PathDocuments+"/essay-1", alice, body, "X-Request-Id", "night-2")
	if r.status != http.StatusOK {
		t.Fatalf("save again: %d %s", r.status, r.raw)
	}
	ev := f.do(http.MethodGet, contract.PathDocuments+"/essay-1/evidence?request=night-1", alice, nil)
	if ev.body["verdict"] != store.VerdictRejected {
		t.Fatalf("evidence of night-1: verdict %v, want rejected", ev.body["verdict"])
	}
	proof := ev.body["proof"].(map[string]any)
	sum, _ := proof["summary"].(string)
	for _, want := range []string{"refused: token_expired", "the same text", "committed later by request night-2", "revision 2"} {
		if !strings.Contains(sum, want) {
			t.Errorf("rejected finding's summary %q does not say %q", sum, want)
		}
	}
	if proof["revision"] != float64(2) || len(proof["entries"].([]any)) != 2 {
		t.Errorf("proof revision %v entries %v: want revision 2, the refusal and the commit", proof["revision"], proof["entries"])
	}
	// Another user's save of the same text proves nothing of alice's.
	f.create(alice, "essay-2", "Hello")
	bob := token(t, "school-a", "bob", time.Hour, false)
	if r := f.do(http.MethodPut, contract.PathDocuments+"/essay-2", expired, body, "X-Request-Id", "night-3"); r.status != http.StatusUnauthorized {
		t.Fatalf("save with an expired token: %d %s", r.status, r.raw)
	}
	if r := f.do(http.MethodPut, contract.PathDocuments+"/essay-2", bob, body); r.status != http.StatusOK {
		t.Fatalf("bob's save: %d %s", r.status, r.raw)
	}
	ev = f.do(http.MethodGet, contract.PathDocuments+"/essay-2/evidence?request=night-3", alice, nil)
	if sum := ev.body["proof"].(map[string]any)["summary"]; sum != "refused: token_expired" {
		t.Errorf("evidence of night-3 (saved again only by another user): %q", sum)
	}
}

// TestEvidenceOfARateLimitedUpdateSentAgain: a Yjs update refused by the
// user's rate limit (429, "retry in a second") was recorded without its
// update, so nothing tied it to the retry that committed it. It is now
// recorded with its operations, and its refusal names the retry.
func TestEvidenceOfARateLimitedUpdateSentAgain(t *testing.T) {
	at := time.Now()
	f := customFixture(t, nil, func() time.Time { return at })
	alice := token(t, "school-a", "alice", time.Hour, false)
	f.create(alice, "essay-1", "Hello")
	for i := 0; i < userBurst; i++ {
		if r := f.do(http.MethodPost, contract.PathDocuments+"/other-1/sync", alice, []byte{0}); r.status == http.StatusTooManyRequests {
			break
		}
	}
	d := yjs.NewDoc(yjs.Options{ClientID: 888})
	var u []byte
	d.OnUpdate(func(b []byte) { u = b })
	if err := d.GetText(contract.YjsTextName).Insert(0, "typed in a hurry", nil); err != nil {
		t.Fatal(err)
	}
	if r := f.do(http.MethodPost, contract.PathDocuments+"/essay-1/updates", alice, u, "X-Request-Id", "busy-1"); r.status != http.StatusTooManyRequests {
		t.Fatalf("update past the user's limit: %d %s", r.status, r.raw)
	}
	ev := f.do(http.MethodGet, contract.PathDocuments+"/essay-1/evidence?client=888", alice, nil)
	if ev.body["verdict"] != store.VerdictSavedLocallyNotSynced {
		t.Errorf("evidence of client 888 before the retry: %v (%v); its operations are only on the device", ev.body["verdict"], ev.body["proof"])
	}
	at = at.Add(2 * time.Second)
	if r := f.do(http.MethodPost, contract.PathDocuments+"/essay-1/updates", alice, u, "X-Request-Id", "busy-2"); r.status != http.StatusOK {
		t.Fatalf("update retried: %d %s", r.status, r.raw)
	}
	ev = f.do(http.MethodGet, contract.PathDocuments+"/essay-1/evidence?request=busy-1", alice, nil)
	proof := ev.body["proof"].(map[string]any)
	sum, _ := proof["summary"].(string)
	if ev.body["verdict"] != store.VerdictRejected || !strings.HasPrefix(sum, "refused: rate_limited") ||
		!strings.Contains(sum, "(client 888 clocks 0-15) was committed later by request busy-2") {
		t.Errorf("evidence of busy-1: %v %q", ev.body["verdict"], sum)
	}
}

// TestEvidenceOfARefusedUpdateOnlyPartlySentAgain: the later request
// committed only some of the refused update's operations. Nothing proves
// the rest reached the server: the refusal says no more than refused,
// and the client answers saved-locally-not-synced.
func TestEvidenceOfARefusedUpdateOnlyPartlySentAgain(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	expired := token(t, "school-a", "alice", -time.Minute, false)
	f.create(alice, "essay-1", "Hello")
	d := yjs.NewDoc(yjs.Options{ClientID: 779})
	var us [][]byte
	d.OnUpdate(func(b []byte) { us = append(us, b) })
	txt := d.GetText(contract.YjsTextName)
	for _, s := range []string{"first part ", "second part"} {
		if err := txt.Insert(txt.Len(), s, nil); err != nil {
			t.Fatal(err)
		}
	}
	both, err := yjs.MergeUpdates(us...)
	if err != nil {
		t.Fatal(err)
	}
	if r := f.do(http.MethodPost, contract.PathDocuments+"/essay-1/updates", expired, both, "X-Request-Id", "part-1"); r.status != http.StatusUnauthorized {
		t.Fatalf("update with an expired token: %d %s", r.status, r.raw)
	}
	if r := f.do(http.MethodPost, contract.PathDocuments+"/essay-1/updates", alice, us[0], "X-Request-Id", "part-2"); r.status != http.StatusOK {
		t.Fatalf("first part sent again: %d %s", r.status, r.raw)
	}
	ev := f.do(http.MethodGet, contract.PathDocuments+"/essay-1/evidence?request=part-1", alice, nil)
	if sum := ev.body["proof"].(map[string]any)["summary"]; ev.body["verdict"] != store.VerdictSavedLocallyNotSynced || strings.Contains(fmt.Sprint(ev.body["findings"]), "committed later") {
		t.Errorf("evidence of part-1: %v %q (%v); the second part is only on the device", ev.body["verdict"], sum, ev.body["findings"])
	}
}
