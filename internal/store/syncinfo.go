package store

import (
	"context"
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
	if st.ydoc == nil {
		return nil, nil, st.tenant, nil
	}
	return st.ydoc.EncodeStateAsUpdate(v), st.ydoc.EncodeStateVector(), st.tenant, nil
}
