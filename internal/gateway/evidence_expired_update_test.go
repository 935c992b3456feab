package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/store"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestEvidenceOfAnUpdateRefusedForAnExpiredTokenFindsItsClient: a
// student's laptop wakes up after her token expired and the editor posts
// her offline work as a Yjs update: 401 token_expired, recorded under her
// school and name, but without the update's hash or clients. Support asks
// about her client and hears "never-persisted: no trace at any layer";
// the whole document answers "synced". The same update refused for
// another reason (not_found, too_large) is recorded with its clients and
// answers saved-locally-not-synced.
func TestEvidenceOfAnUpdateRefusedForAnExpiredTokenFindsItsClient(t *testing.T) {
	f := setup(t)
	alice := token(t, "school-a", "alice", time.Hour, false)
	expired := token(t, "school-a", "alice", -time.Minute, false)
	f.create(alice, "essay-1", "Hello")
	d := yjs.NewDoc(yjs.Options{ClientID: 777})
	var u []byte
	d.OnUpdate(func(b []byte) { u = b })
	if err := d.GetText(contract.YjsTextName).Insert(0, "my offline paragraph, typed on the bus", nil); err != nil {
		t.Fatal(err)
	}
	if r := f.do(http.MethodPost, contract.PathDocuments+"/essay-1/updates", expired, u, "X-Request-Id", "late-1"); r.status != http.StatusUnauthorized {
		t.Fatalf("update with an expired token: %d %s", r.status, r.raw)
	}
	for _, q := range []string{"?client=777", ""} {
		r := f.do(http.MethodGet, contract.PathDocuments+"/essay-1/evidence"+q, alice, nil)
		if r.status != http.StatusOK || r.body["verdict"] != store.VerdictSavedLocallyNotSynced {
			t.Errorf("evidence%s: verdict %v (%v); client 777's operations reached the gateway in a refused update and exist only on her laptop",
				q, r.body["verdict"], r.body["proof"])
		}
	}
}
