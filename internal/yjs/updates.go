package yjs

import (
	"slices"
)

// structReader streams the structs of an update in encoded order (yjs's
// LazyStructReader).
type structReader struct {
	d           *decoder
	clientsLeft int
	structsLeft int
	client      uint64
	clock       uint64
	filterSkips bool
	curr        *Item
}

func newStructReader(d *decoder, filterSkips bool) *structReader {
	r := &structReader{d: d, filterSkips: filterSkips}
	r.clientsLeft = d.readCount(3)
	r.next()
	return r
}

func (r *structReader) next() *Item {
	for {
		r.curr = r.read()
		if r.curr == nil || !r.filterSkips || r.curr.kind != kindSkip {
			return r.curr
		}
	}
}

func (r *structReader) read() *Item {
	d := r.d
	for r.structsLeft == 0 {
		if r.clientsLeft == 0 || d.err != nil {
			return nil
		}
		r.clientsLeft--
		r.structsLeft = d.readCount(1)
		r.client = d.readVarUint()
		r.clock = d.readVarUint()
		if d.err != nil {
			return nil
		}
	}
	r.structsLeft--
	s := readStruct(d, r.client, r.clock, nil)
	if s == nil {
		return nil
	}
	r.clock += uint64(s.Len)
	return s
}

// structWriter writes structs grouped by client (yjs LazyStructWriter).
type structWriter struct {
	e       *encoder
	cur     encoder
	client  uint64
	written int
	parts   []writtenPart
}

type writtenPart struct {
	written int
	data    []byte
}

func (w *structWriter) flush() {
	if w.written > 0 {
		w.parts = append(w.parts, writtenPart{w.written, w.cur.buf})
		w.cur = encoder{}
		w.written = 0
	}
}

func (w *structWriter) write(s *Item, offset int) {
	if w.written > 0 && w.client != s.ID.Client {
		w.flush()
	}
	if w.written == 0 {
		w.client = s.ID.Client
		w.cur.writeVarUint(s.ID.Client)
		w.cur.writeVarUint(s.ID.Clock + uint64(offset))
	}
	s.write(&w.cur, offset)
	w.written++
}

func (w *structWriter) finish() {
	w.flush()
	w.e.writeVarUint(uint64(len(w.parts)))
	for _, p := range w.parts {
		w.e.writeVarUint(uint64(p.written))
		w.e.buf = append(w.e.buf, p.data...)
	}
}

// sliceStruct returns the part of s from diff on (yjs sliceStruct).
func sliceStruct(s *Item, diff int) *Item {
	id := ID{s.ID.Client, s.ID.Clock + uint64(diff)}
	if s.kind != kindItem {
		return &Item{ID: id, Len: s.Len - diff, kind: s.kind, info: flagDeleted}
	}
	n := &Item{
		ID:          id,
		Origin:      ID{s.ID.Client, s.ID.Clock + uint64(diff) - 1},
		RightOrigin: s.RightOrigin,
		ParentSub:   s.ParentSub,
		raw:         s.raw,
		info:        s.info | flagOrigin,
	}
	n.Content = s.Content.splice(diff)
	n.Len = s.Len - diff
	s.Len = diff
	return n
}

// mergeLazy is Item/GC/Skip mergeWith for structs read from updates: items
// never merge there (they have no neighbours), GC and Skip runs do.
func mergeLazy(left, right *Item) bool {
	if left.kind == kindItem || left.kind != right.kind {
		return false
	}
	left.Len += right.Len
	return true
}

// MergeUpdates merges v1 updates into one v1 update without loading a
// document, exactly as yjs's mergeUpdates does.
func MergeUpdates(updates ...[]byte) ([]byte, error) {
	if len(updates) == 1 {
		if _, err := DecodeUpdate(updates[0]); err != nil {
			return nil, err
		}
		return updates[0], nil
	}
	decs := make([]*decoder, len(updates))
	readers := make([]*structReader, len(updates))
	for i, u := range updates {
		decs[i] = newDecoder(u)
		readers[i] = newStructReader(decs[i], true)
		if decs[i].err != nil {
			return nil, decs[i].err
		}
	}
	var e encoder
	w := &structWriter{e: &e}
	var currWrite *Item
	currOffset := 0
	for {
		readers = slices.DeleteFunc(readers, func(r *structReader) bool { return r.curr == nil })
		for _, dd := range decs {
			if dd.err != nil {
				return nil, dd.err
			}
		}
		slices.SortStableFunc(readers, func(a, b *structReader) int {
			ac, bc := a.curr, b.curr
			if ac.ID.Client == bc.ID.Client {
				if ac.ID.Clock == bc.ID.Clock {
					if ac.kind == kindSkip && bc.kind != kindSkip {
						return 1
					}
					if bc.kind == kindSkip && ac.kind != kindSkip {
						return -1
					}
					return 0
				}
				if ac.ID.Clock < bc.ID.Clock {
					return -1
				}
				return 1
			}
			return cmpDesc(ac.ID.Client, bc.ID.Client)
		})
		if len(readers) == 0 {
			break
		}
		cd := readers[0]
		firstClient := cd.curr.ID.Client
		if currWrite != nil {
			curr := cd.curr
			iterated := false
			for curr != nil && curr.ID.Clock+uint64(curr.Len) <= currWrite.ID.Clock+uint64(currWrite.Len) && curr.ID.Client >= currWrite.ID.Client {
				curr = cd.next()
				iterated = true
			}
			if curr == nil || curr.ID.Client != firstClient || (iterated && curr.ID.Clock > currWrite.ID.Clock+uint64(currWrite.Len)) {
				continue
			}
			if firstClient != currWrite.ID.Client {
				w.write(currWrite, currOffset)
				currWrite, currOffset = curr, 0
				cd.next()
			} else if cwEnd := currWrite.ID.Clock + uint64(currWrite.Len); cwEnd < curr.ID.Clock {
				if currWrite.kind == kindSkip {
					currWrite.Len = int(curr.ID.Clock + uint64(curr.Len) - currWrite.ID.Clock)
				} else {
					w.write(currWrite, currOffset)
					diff := curr.ID.Clock - cwEnd
					currWrite = &Item{ID: ID{firstClient, cwEnd}, Len: int(diff), kind: kindSkip, info: flagDeleted}
					currOffset = 0
				}
			} else {
				diff := int(cwEnd - curr.ID.Clock)
				if diff > 0 {
					if currWrite.kind == kindSkip {
						currWrite.Len -= diff
					} else {
						curr = sliceStruct(curr, diff)
					}
				}
				if !mergeLazy(currWrite, curr) {
					w.write(currWrite, currOffset)
					currWrite, currOffset = curr, 0
					cd.next()
				}
			}
		} else {
			currWrite, currOffset = cd.curr, 0
			cd.next()
		}
		for next := cd.curr; next != nil && next.ID.Client == firstClient && next.ID.Clock == currWrite.ID.Clock+uint64(currWrite.Len) && next.kind != kindSkip; next = cd.next() {
			w.write(currWrite, currOffset)
			currWrite, currOffset = next, 0
		}
	}
	for _, dd := range decs {
		if dd.err != nil {
			return nil, dd.err
		}
	}
	if currWrite != nil {
		w.write(currWrite, currOffset)
	}
	w.finish()
	dss := make([]DeleteSet, len(decs))
	for i, dd := range decs {
		dss[i] = readDeleteSet(dd)
		if dd.err != nil {
			return nil, dd.err
		}
	}
	writeDeleteSet(&e, mergeDeleteSets(dss))
	return e.buf, nil
}

// DiffUpdate returns the part of a v1 update that a peer with state vector
// sv lacks (the delete set is kept whole), as yjs's diffUpdate does.
func DiffUpdate(update, sv []byte) ([]byte, error) {
	state, err := DecodeStateVector(sv)
	if err != nil {
		return nil, err
	}
	return diffUpdate(update, state)
}

func diffUpdate(update []byte, state StateVector) ([]byte, error) {
	d := newDecoder(update)
	r := newStructReader(d, false)
	var e encoder
	w := &structWriter{e: &e}
	for r.curr != nil {
		curr := r.curr
		client := curr.ID.Client
		svClock := state[client]
		if curr.kind == kindSkip {
			r.next()
			continue
		}
		if curr.ID.Clock+uint64(curr.Len) > svClock {
			off := 0
			if svClock > curr.ID.Clock {
				off = int(svClock - curr.ID.Clock)
			}
			w.write(curr, off)
			r.next()
			for r.curr != nil && r.curr.ID.Client == client {
				w.write(r.curr, 0)
				r.next()
			}
		} else {
			for r.curr != nil && r.curr.ID.Client == client && r.curr.ID.Clock+uint64(r.curr.Len) <= svClock {
				r.next()
			}
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	w.finish()
	ds := readDeleteSet(d)
	if d.err != nil {
		return nil, d.err
	}
	writeDeleteSet(&e, ds)
	return e.buf, nil
}

// EncodeStateVectorFromUpdate computes the state vector an update would
// produce on an empty document, without loading it (yjs
// encodeStateVectorFromUpdate).
func EncodeStateVectorFromUpdate(update []byte) ([]byte, error) {
	d := newDecoder(update)
	r := newStructReader(d, false)
	type pair struct{ client, clock uint64 }
	var out []pair
	if curr := r.curr; curr != nil {
		client := curr.ID.Client
		stop := curr.ID.Clock != 0
		var clock uint64
		if !stop {
			clock = curr.ID.Clock + uint64(curr.Len)
		}
		for ; curr != nil; curr = r.next() {
			if client != curr.ID.Client {
				if clock != 0 {
					out = append(out, pair{client, clock})
				}
				client = curr.ID.Client
				clock = 0
				stop = curr.ID.Clock != 0
			}
			if curr.kind == kindSkip {
				stop = true
			}
			if !stop {
				clock = curr.ID.Clock + uint64(curr.Len)
			}
		}
		if clock != 0 {
			out = append(out, pair{client, clock})
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	var e encoder
	e.writeVarUint(uint64(len(out)))
	for _, p := range out {
		e.writeVarUint(p.client)
		e.writeVarUint(p.clock)
	}
	return e.buf, nil
}

// DecodedUpdate is an update's content: its structs in encoded order and
// its delete set.
type DecodedUpdate struct {
	Structs   []*Item
	DeleteSet DeleteSet
}

// DecodeUpdate decodes a v1 update without applying it.
func DecodeUpdate(update []byte) (*DecodedUpdate, error) {
	d := newDecoder(update)
	r := newStructReader(d, false)
	out := &DecodedUpdate{}
	for s := r.curr; s != nil; s = r.next() {
		out.Structs = append(out.Structs, s)
	}
	if d.err != nil {
		return nil, d.err
	}
	out.DeleteSet = readDeleteSet(d)
	if d.err != nil {
		return nil, d.err
	}
	return out, nil
}

// ParentKey returns the root key an undecoded struct's parent refers to.
func (it *Item) ParentKey() (string, bool) {
	if it.raw != nil && it.raw.isKey {
		return it.raw.key, true
	}
	if it.Parent != nil && it.Parent.item == nil {
		return it.Parent.name, true
	}
	return "", false
}

// ParentID returns the item ID an undecoded struct's parent refers to.
func (it *Item) ParentID() (ID, bool) {
	if it.raw != nil && !it.raw.isKey {
		return it.raw.id, true
	}
	if it.Parent != nil && it.Parent.item != nil {
		return it.Parent.item.ID, true
	}
	return ID{}, false
}
