package syncws

import "github.com/yawp/persistence-operator/internal/yprotocol"

// Publish relays a committed update that did not come through the Hub
// (e.g. a legacy REST save, which the syncer also applies to the Yjs
// representation) to docID's connections as an update message. It
// reports whether the document has a room here. Yjs applies an update it
// already holds as a no-op, so publishing overlapping updates is safe.
func (h *Hub) Publish(docID string, update []byte) bool {
	h.mu.Lock()
	rm := h.rooms[docID]
	h.mu.Unlock()
	if rm == nil {
		return false
	}
	if len(update) > 0 && !isEmptyUpdate(update) {
		h.broadcast(rm, yprotocol.EncodeUpdate(update), nil)
	}
	return true
}

// HasRoom reports whether docID has open connections on this Hub.
func (h *Hub) HasRoom(docID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[docID] != nil
}
