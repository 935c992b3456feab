package store

import (
	"context"
	"encoding/binary"
	"net/http"

	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// DocumentTenant returns the tenant owning doc, or "" when the document
// does not exist yet (the sync gateway's authoriser: a first Yjs update
// creates it in the caller's tenant).
func (e *Engine) DocumentTenant(ctx context.Context, doc string) (string, error) {
	l := e.laneOf(doc)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if verr := e.validate(&Request{Kind: KindReject, Doc: doc, Tenant: "-"}); verr != nil {
		return "", verr
	}
	st, err := e.doc(ctx, doc)
	if err != nil {
		return "", err
	}
	if !st.exists {
		return "", nil
	}
	return st.tenant, nil
}

// TenantStage returns the (stage, epoch) a tenant's documents are under
// now, without locking (the sync gateway tells clients their protocol
// from it).
func (e *Engine) TenantStage(ctx context.Context, tenant string) (dataplane.SaveStage, error) {
	return dataplane.ReadTenantStage(ctx, e.pool, tenant)
}

// YjsSince returns what the document's Yjs representation holds beyond
// state vector sv (empty: everything) and its state vector, from committed
// state, without recording anything (the sync gateway relays saves made
// outside its WebSocket to connected clients with it). Both are nil when
// the document has no Yjs representation. tenant is the document's owner
// ("" when it does not exist): the room to relay to is that tenant's,
// whoever asked.
//
// sv is a state vector this engine answered earlier (a room's). When it
// reaches beyond the document's (HistoryReplaced), the Yjs history it
// came from is gone: the document was deleted outside the gateway and
// its ID taken again. The answer is then 409 foreign_history, with
// tenant set: what the document holds beyond sv would be merged by the
// room's clients into the text of the deleted document (they would show
// both).
func (e *Engine) YjsSince(ctx context.Context, doc string, sv []byte) (update, serverSV []byte, tenant string, err error) {
	l := e.laneOf(doc)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if verr := e.validate(&Request{Kind: KindReject, Doc: doc, Tenant: "-"}); verr != nil {
		return nil, nil, "", verr
	}
	var v yjs.StateVector
	if len(sv) > 0 {
		if v, err = yjs.DecodeStateVector(sv); err != nil {
			return nil, nil, "", errf(http.StatusBadRequest, CodeInvalidSV, "not a Yjs state vector: %v", err)
		}
	}
	st, err := e.doc(ctx, doc)
	if err != nil {
		return nil, nil, "", err
	}
	if !st.exists {
		return nil, nil, "", nil
	}
	if st.ydoc == nil || st.regiven != notRegiven {
		// regiven: the Yjs side is another document until the
		// repair starts this one's (repair.go); none of it is relayed.
		return nil, nil, st.tenant, nil
	}
	if c, ok := beyond(v, st.ydoc.StateVector()); ok {
		return nil, nil, st.tenant, errf(http.StatusConflict, CodeForeignHistory,
			"the state vector names operations of client %d the document's history does not have: it is of an earlier history of this document ID", c)
	}
	return st.ydoc.EncodeStateAsUpdate(v), st.ydoc.EncodeStateVector(), st.tenant, nil
}

// HistoryReplaced reports whether earlier, a state vector the store
// answered for a document (a sync step 1's, or YjsSince's), reaches
// beyond now, the document's state vector today. A document's Yjs history
// only grows, so a state vector of the store's that it does not cover is
// of a history that is gone: the document was deleted outside the gateway
// and its ID taken again (a rollback keeps the Yjs rows, and backfill
// skips documents that have them). A client answered from it holds text
// the document no longer has. An empty or undecodable earlier, or an
// undecodable now, reports false; an empty now (no Yjs history) is
// reached beyond by any earlier naming operations.
func HistoryReplaced(earlier, now []byte) bool {
	if len(earlier) == 0 {
		return false
	}
	e, err := yjs.DecodeStateVector(earlier)
	if err != nil {
		return false
	}
	if len(now) == 0 {
		_, ok := beyond(e, nil) // the document has no operations now
		return ok
	}
	return ReachesBeyond(e, now)
}

// ReachesBeyond is HistoryReplaced with earlier decoded, reading now
// without allocating (the sync gateway checks every update it relays
// against its room's state vector). Unlike HistoryReplaced, an empty now
// reports false, as a malformed one does: the gateway passes a
// committed update's state vector, never empty.
func ReachesBeyond(earlier yjs.StateVector, now []byte) bool {
	want := 0 // clients of earlier with operations: each must be in now
	for _, k := range earlier {
		if k > 0 {
			want++
		}
	}
	if want == 0 {
		return false
	}
	n, i := binary.Uvarint(now)
	if i <= 0 {
		return false
	}
	found := 0
	for j := uint64(0); j < n; j++ {
		c, w := binary.Uvarint(now[i:])
		if w <= 0 {
			return false
		}
		i += w
		k, w := binary.Uvarint(now[i:])
		if w <= 0 {
			return false
		}
		i += w
		if e := earlier[c]; e > 0 {
			if e > k {
				return true
			}
			found++
		}
	}
	return found < want
}

// beyond returns a client whose operations earlier counts more of than
// now does.
func beyond(earlier, now yjs.StateVector) (uint64, bool) {
	for c, k := range earlier {
		if k > now[c] {
			return c, true
		}
	}
	return 0, false
}
