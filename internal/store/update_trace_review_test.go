package store

import (
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestAnUpdateTraceCannotPutAnotherClientsNameInTheLedger: a trace handed
// to the internal API becomes a ledger entry, which is never rewritten. A
// trace whose operation ranges name a client as "04711", or a client its
// own client list does not name, was taken as valid: evidence asked about
// client 4711 does not find the "04711" range (keys are compared as
// written), and the entry claims operations of a client the update never
// carried. Only canonical keys of the trace's own clients are valid.
func TestAnUpdateTraceCannotPutAnotherClientsNameInTheLedger(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "ada", Content: "Essay."})
	sha := strings.Repeat("ab", 32)
	for i, tr := range []*UpdateTrace{
		{SHA256: sha, Clients: []uint64{4711}, Ops: map[string][2]uint64{"04711": {0, 5}}},
		{SHA256: sha, Clients: []uint64{4711}, Ops: map[string][2]uint64{"4711": {0, 5}, "999": {0, 1 << 62}}},
	} {
		e.submit(Request{Kind: KindReject, Doc: "d", Tenant: "t", User: "ada", RequestID: "r" + string(rune('0'+i)), Code: "unconfirmed", Reason: "x", UpdateTrace: tr})
	}
	rows, err := LedgerRows(t.Context(), e.pool, "d")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if b := string(r.Body); strings.Contains(b, `"04711"`) || strings.Contains(b, `"999"`) {
			t.Errorf("ledger entry %d records a trace's non-canonical or foreign client: %s", r.Seq, b)
		}
	}
}
