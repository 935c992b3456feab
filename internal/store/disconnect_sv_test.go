package store

import (
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestDisconnectEvidenceIsBoundedToo: the gateway sends the state vector a
// client announced in its sync step 1 again when that client disconnects
// (KindDisconnect) while the server still lacks some of its operations.
// Session 12 bounded what a sync step 1 leaves in the append-only ledger
// (announcedSV), but the disconnected entry still records the whole state
// vector: one student's 1 MiB state vector naming one missing client
// becomes a permanent multi-megabyte ledger row at every disconnect.
func TestDisconnectEvidenceIsBoundedToo(t *testing.T) {
	e := setup(t)
	e.cohort("c", dataplane.StageLocalFirst, "t")
	e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "x"})
	sv := yjs.StateVector{777: 5} // operations the server lacks: a gap opens
	for c := uint64(16384); len(sv) < (contract.MaxStateVectorBytes-64)/4; c++ {
		sv[c] = 0
	}
	body := yjs.EncodeStateVector(sv)
	if r := e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "u", RequestID: "ws-1", StateVector: body}); len(r.Missing) != 1 {
		t.Fatalf("missing: %v", r.Missing)
	}
	e.submit(Request{Kind: KindDisconnect, Doc: "d", Tenant: "t", User: "u", RequestID: "ws-1", StateVector: body, Code: "websocket_1006"})
	var kind string
	var raw int64
	if err := e.pool.QueryRow(t.Context(), `SELECT kind, octet_length(body::text) FROM save_ledger WHERE doc_id = 'd' ORDER BY octet_length(body::text) DESC LIMIT 1`).Scan(&kind, &raw); err != nil {
		t.Fatal(err)
	}
	if raw > 64<<10 {
		t.Fatalf("a %d-byte state vector (%d clients) left a %d-byte %q row in the append-only ledger", len(body), len(sv), raw, kind)
	}
}
