package yjs

// clientStore holds one client's structs ordered by clock, in chunks so that
// splitting and merging structs in the middle of a long history stays cheap.
type clientStore struct {
	chunks [][]*Item
	// hc, hi is where the last lookup ended: edits cluster, so the next
	// lookup usually lands on or next to it.
	hc, hi int
}

const storeChunk = 512

func (cs *clientStore) empty() bool { return len(cs.chunks) == 0 }

func (cs *clientStore) first() *Item {
	if len(cs.chunks) == 0 {
		return nil
	}
	return cs.chunks[0][0]
}

func (cs *clientStore) last() *Item {
	if len(cs.chunks) == 0 {
		return nil
	}
	c := cs.chunks[len(cs.chunks)-1]
	return c[len(c)-1]
}

// state is the next clock expected from this client.
func (cs *clientStore) state() uint64 {
	l := cs.last()
	if l == nil {
		return 0
	}
	return l.ID.Clock + uint64(l.Len)
}

// locate returns the chunk and position of the struct containing clock, or
// ok=false when clock is not covered.
func (cs *clientStore) locate(clock uint64) (ci, i int, ok bool) {
	chunks := cs.chunks
	if len(chunks) == 0 {
		return 0, 0, false
	}
	// Fast path: the last struct (appends and local edits at the end).
	last := chunks[len(chunks)-1]
	if l := last[len(last)-1]; l.ID.Clock <= clock {
		if clock < l.ID.Clock+uint64(l.Len) {
			return len(chunks) - 1, len(last) - 1, true
		}
		return 0, 0, false
	}
	// Next: the struct of the last lookup and its neighbours.
	if hc := cs.hc; hc < len(chunks) {
		c := chunks[hc]
		if hi := cs.hi; hi < len(c) {
			s := c[hi]
			if s.ID.Clock <= clock {
				if clock < s.ID.Clock+uint64(s.Len) {
					return hc, hi, true
				}
				if hi+1 < len(c) {
					if n := c[hi+1]; clock < n.ID.Clock+uint64(n.Len) {
						cs.hi = hi + 1
						return hc, hi + 1, true
					}
				}
			} else if hi > 0 {
				if p := c[hi-1]; p.ID.Clock <= clock {
					cs.hi = hi - 1
					return hc, hi - 1, true
				}
			} else if hc > 0 {
				pc := chunks[hc-1]
				if p := pc[len(pc)-1]; p.ID.Clock <= clock {
					cs.hc, cs.hi = hc-1, len(pc)-1
					return hc - 1, len(pc) - 1, true
				}
			}
		}
	}
	lo, hi := 0, len(chunks)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if chunks[m][0].ID.Clock <= clock {
			lo = m + 1
		} else {
			hi = m
		}
	}
	ci = lo - 1
	if ci < 0 {
		return 0, 0, false
	}
	c := chunks[ci]
	lo, hi = 0, len(c)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if c[m].ID.Clock <= clock {
			lo = m + 1
		} else {
			hi = m
		}
	}
	i = lo - 1
	s := c[i]
	if clock >= s.ID.Clock+uint64(s.Len) {
		return 0, 0, false
	}
	cs.hc, cs.hi = ci, i
	return ci, i, true
}

func (cs *clientStore) find(clock uint64) *Item {
	ci, i, ok := cs.locate(clock)
	if !ok {
		return nil
	}
	return cs.chunks[ci][i]
}

func (cs *clientStore) push(it *Item) {
	n := len(cs.chunks)
	if n == 0 || len(cs.chunks[n-1]) >= storeChunk {
		c := make([]*Item, 0, storeChunk)
		cs.chunks = append(cs.chunks, append(c, it))
		return
	}
	cs.chunks[n-1] = append(cs.chunks[n-1], it)
}

// insertAfter puts it right after the struct at (ci, i).
func (cs *clientStore) insertAfter(ci, i int, it *Item) {
	c := cs.chunks[ci]
	if len(c) >= storeChunk {
		// split the chunk in two halves first
		h := len(c) / 2
		right := make([]*Item, len(c)-h, storeChunk)
		copy(right, c[h:])
		for k := h; k < len(c); k++ {
			c[k] = nil
		}
		cs.chunks[ci] = c[:h]
		cs.chunks = append(cs.chunks, nil)
		copy(cs.chunks[ci+2:], cs.chunks[ci+1:])
		cs.chunks[ci+1] = right
		if i >= h {
			ci++
			i -= h
		}
		c = cs.chunks[ci]
	}
	c = append(c, nil)
	copy(c[i+2:], c[i+1:])
	c[i+1] = it
	cs.chunks[ci] = c
}

// removeAt deletes the struct at (ci, i).
func (cs *clientStore) removeAt(ci, i int) {
	c := cs.chunks[ci]
	copy(c[i:], c[i+1:])
	c[len(c)-1] = nil
	c = c[:len(c)-1]
	if len(c) == 0 {
		copy(cs.chunks[ci:], cs.chunks[ci+1:])
		cs.chunks[len(cs.chunks)-1] = nil
		cs.chunks = cs.chunks[:len(cs.chunks)-1]
		return
	}
	cs.chunks[ci] = c
}

// prevOf returns the struct before the one at clock (exactly at its start).
func (cs *clientStore) prevOf(it *Item) *Item {
	if it.ID.Clock == 0 {
		return nil
	}
	return cs.find(it.ID.Clock - 1)
}

// nextOf returns the struct after it.
func (cs *clientStore) nextOf(it *Item) *Item {
	return cs.find(it.ID.Clock + uint64(it.Len))
}

// each calls f for every struct in clock order until f returns false.
func (cs *clientStore) each(f func(*Item) bool) {
	for _, c := range cs.chunks {
		for _, s := range c {
			if !f(s) {
				return
			}
		}
	}
}

// eachFrom calls f for every struct starting with the one containing clock.
func (cs *clientStore) eachFrom(clock uint64, f func(*Item) bool) {
	ci, i, ok := cs.locate(clock)
	if !ok {
		return
	}
	for ; ci < len(cs.chunks); ci, i = ci+1, 0 {
		c := cs.chunks[ci]
		for ; i < len(c); i++ {
			if !f(c[i]) {
				return
			}
		}
	}
}

// replace swaps the struct starting at old's clock for nw.
func (cs *clientStore) replace(old, nw *Item) {
	ci, i, ok := cs.locate(old.ID.Clock)
	if ok {
		cs.chunks[ci][i] = nw
	}
}

// StructCount returns how many structs (items, deleted or not, and GC
// ranges) the document holds: what its memory grows with, far more than
// with its text (deleting every other character of a text splits it into
// a struct per character). Pending structs are not counted.
func (d *Doc) StructCount() int {
	n := 0
	for _, cs := range d.clients {
		for _, c := range cs.chunks {
			n += len(c)
		}
	}
	return n
}

// What a document holds, measured (TestApproxBytesTracksTheHeap): an item
// with its links and index leaf is about 216 bytes; each client's store
// has its chunks of slots (a 512-slot chunk, 4 KiB, even for a client
// that wrote one struct: every browser session is a client); content is
// held as UTF-16, deleted content too where garbage collection is off
// (the syncer's documents), which a client's clock counts; and the text
// keeps renderings of what is visible.
const (
	approxBytesPerStruct = 216
	approxBytesPerClient = 128
	approxBytesPerUnit   = 2
	approxBytesPerDoc    = 1024
)

// ApproxBytes estimates the memory the document holds: what a cache of
// documents should weigh it by. It is O(clients + chunks) and must not
// run concurrently with changes to the document.
func (d *Doc) ApproxBytes() int64 {
	n := int64(approxBytesPerDoc) + int64(approxBytesPerStruct)*int64(d.StructCount())
	for client, cs := range d.clients {
		n += approxBytesPerClient + approxBytesPerUnit*int64(d.state(client))
		for _, c := range cs.chunks {
			n += 8 * int64(cap(c))
		}
	}
	for _, t := range d.share {
		n += approxBytesPerUnit * int64(t.length)
	}
	if d.pending != nil {
		n += int64(len(d.pending.update))
	}
	return n + int64(len(d.pendingDs))
}

// MaxNewStructs bounds how many structs applying u can add to a document:
// each of its structs, and two splits per deleted range (at its ends).
func (u *DecodedUpdate) MaxNewStructs() int {
	n := len(u.Structs)
	for _, rs := range u.DeleteSet {
		n += 2 * len(rs)
	}
	return n
}
