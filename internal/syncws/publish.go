package syncws

import "github.com/yawp/persistence-operator/internal/yprotocol"

// Publish relays a committed update that did not come through the Hub
// (e.g. a legacy REST save, which the syncer also applies to the Yjs
// representation) to the connections of tenant, the document's owner, to
// docID, as an update message; connections of other tenants that opened
// docID before it existed are closed (4403), never sent it. It reports
// whether tenant has a room for the document here. Yjs applies an update
// it already holds as a no-op, so publishing overlapping updates is safe.
func (h *Hub) Publish(tenant, docID string, update []byte) bool {
	h.claimed(tenant, docID)
	h.mu.Lock()
	rm := h.rooms[roomKey{tenant, docID}]
	h.mu.Unlock()
	if rm == nil {
		return false
	}
	if len(update) > 0 && !isEmptyUpdate(update) {
		h.broadcast(rm, yprotocol.EncodeUpdate(update), nil)
	}
	return true
}

// Closing reports whether Shutdown has begun (new connections are refused
// with 4503).
func (h *Hub) Closing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closing
}

// HasRoom reports whether docID has open connections on this Hub, of any
// tenant.
func (h *Hub) HasRoom(docID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byDoc[docID]) > 0
}
