package yjs

import (
	"fmt"
	"slices"
)

// writeClientsStructs writes the structs the store has beyond sv (yjs
// writeClientsStructs).
func (d *Doc) writeClientsStructs(e *encoder, sv StateVector) {
	type start struct{ client, clock uint64 }
	var sm []start
	for c, k := range sv {
		if d.state(c) > k {
			sm = append(sm, start{c, k})
		}
	}
	for c, cs := range d.clients {
		if _, ok := sv[c]; !ok && !cs.empty() {
			sm = append(sm, start{c, 0})
		}
	}
	slices.SortFunc(sm, func(a, b start) int { return cmpDesc(a.client, b.client) })
	e.writeVarUint(uint64(len(sm)))
	for _, s := range sm {
		writeStoreStructs(e, d.clients[s.client], s.client, s.clock)
	}
}

func writeStoreStructs(e *encoder, cs *clientStore, client, clock uint64) {
	if f := cs.first().ID.Clock; clock < f {
		clock = f
	}
	ci, i, _ := cs.locate(clock)
	n := len(cs.chunks[ci]) - i
	for _, c := range cs.chunks[ci+1:] {
		n += len(c)
	}
	e.writeVarUint(uint64(n))
	e.writeVarUint(client)
	e.writeVarUint(clock)
	first := true
	cs.eachFrom(clock, func(s *Item) bool {
		if first {
			s.write(e, int(clock-s.ID.Clock))
			first = false
		} else {
			s.write(e, 0)
		}
		return true
	})
}

// deleteSetFromStore computes the delete set of everything deleted in the
// document (yjs createDeleteSetFromStructStore).
func (d *Doc) deleteSetFromStore() DeleteSet {
	ds := DeleteSet{}
	for c, cs := range d.clients {
		var rs []Range
		cs.each(func(s *Item) bool {
			if s.Deleted() {
				if n := len(rs); n > 0 && rs[n-1].End() == s.ID.Clock {
					rs[n-1].Len += uint64(s.Len)
				} else {
					rs = append(rs, Range{s.ID.Clock, uint64(s.Len)})
				}
			}
			return true
		})
		if len(rs) > 0 {
			ds[c] = rs
		}
	}
	return ds
}

// DeleteSet returns the document's delete set.
func (d *Doc) DeleteSet() DeleteSet { return d.deleteSetFromStore() }

// EncodeStateAsUpdate encodes everything the document holds beyond sv (nil:
// everything) as a v1 update, pending structs and deletions included, the
// way yjs's encodeStateAsUpdate does.
func (d *Doc) EncodeStateAsUpdate(sv StateVector) []byte {
	if sv == nil {
		sv = StateVector{}
	}
	var e encoder
	d.writeClientsStructs(&e, sv)
	writeDeleteSet(&e, d.deleteSetFromStore())
	updates := [][]byte{e.buf}
	if d.pendingDs != nil {
		updates = append(updates, d.pendingDs)
	}
	if d.pending != nil {
		diff, err := diffUpdate(d.pending.update, sv)
		if err == nil {
			updates = append(updates, diff)
		}
	}
	if len(updates) > 1 {
		m, err := MergeUpdates(updates...)
		if err == nil {
			return m
		}
	}
	return updates[0]
}

// ApplyUpdate applies a v1 update. Structs and deletions whose dependencies
// are missing are kept pending until they arrive. Malformed updates return
// an error wrapping ErrMalformed; the document is left unchanged when the
// update fails to decode.
func (d *Doc) ApplyUpdate(update []byte) error {
	// Decode fully first so that a malformed update changes nothing.
	dec := newDecoder(update)
	refs := readUpdateStructs(dec, d)
	if dec.err != nil {
		return dec.err
	}
	dsStart := dec.pos
	readDeleteSet(dec)
	if dec.err != nil {
		return dec.err
	}
	dec.pos = dsStart
	return d.transact(false, func(txn *Transaction) error {
		return d.readUpdate(txn, refs, dec)
	})
}

func (d *Doc) readUpdate(txn *Transaction, refs map[uint64][]*Item, dec *decoder) error {
	retry := false
	rest, err := d.integrateStructs(txn, refs)
	if err != nil {
		return err
	}
	if p := d.pending; p != nil {
		for c, k := range p.missing {
			if k < d.state(c) {
				retry = true
				break
			}
		}
		if rest != nil {
			for c, k := range rest.missing {
				if m, ok := p.missing[c]; !ok || m > k {
					p.missing[c] = k
				}
			}
			m, err := MergeUpdates(p.update, rest.update)
			if err != nil {
				return err
			}
			p.update = m
		}
	} else {
		d.pending = rest
	}
	dsRest := d.readAndApplyDeleteSet(txn, dec)
	if dec.err != nil {
		return dec.err
	}
	if d.pendingDs != nil {
		pd := newDecoder(d.pendingDs)
		pd.readVarUint()
		dsRest2 := d.readAndApplyDeleteSet(txn, pd)
		if pd.err != nil {
			return pd.err
		}
		switch {
		case dsRest != nil && dsRest2 != nil:
			m, err := MergeUpdates(dsRest, dsRest2)
			if err != nil {
				return err
			}
			d.pendingDs = m
		case dsRest != nil:
			d.pendingDs = dsRest
		default:
			d.pendingDs = dsRest2
		}
	} else {
		d.pendingDs = dsRest
	}
	if retry {
		upd := d.pending.update
		d.pending = nil
		dec2 := newDecoder(upd)
		refs2 := readUpdateStructs(dec2, d)
		if dec2.err != nil {
			return dec2.err
		}
		return d.readUpdate(txn, refs2, dec2)
	}
	return nil
}

type clientRefs struct {
	i    int
	refs []*Item
}

// integrateStructs integrates decoded structs in yjs's order and returns
// those that could not be applied yet (yjs integrateStructs).
func (d *Doc) integrateStructs(txn *Transaction, refsByClient map[uint64][]*Item) (*pendingStructs, error) {
	if len(refsByClient) == 0 {
		return nil, nil
	}
	ids := make([]uint64, 0, len(refsByClient))
	targets := make(map[uint64]*clientRefs, len(refsByClient))
	for c, r := range refsByClient {
		ids = append(ids, c)
		targets[c] = &clientRefs{refs: r}
	}
	slices.Sort(ids)
	nextTarget := func() *clientRefs {
		for len(ids) > 0 {
			t := targets[ids[len(ids)-1]]
			if t.i < len(t.refs) {
				return t
			}
			ids = ids[:len(ids)-1]
		}
		return nil
	}
	cur := nextTarget()
	if cur == nil {
		return nil, nil
	}
	rest := map[uint64][]*Item{}
	missingSV := map[uint64]uint64{}
	updateMissing := func(c, k uint64) {
		if m, ok := missingSV[c]; !ok || m > k {
			missingSV[c] = k
		}
	}
	var stack []*Item
	head := cur.refs[cur.i]
	cur.i++
	state := map[uint64]uint64{}
	addStackToRest := func() {
		for _, it := range stack {
			c := it.ID.Client
			if t, ok := targets[c]; ok {
				t.i--
				rest[c] = append([]*Item(nil), t.refs[t.i:]...)
				delete(targets, c)
				t.i = 0
				t.refs = nil
			} else {
				rest[c] = []*Item{it}
			}
			ids = slices.DeleteFunc(ids, func(x uint64) bool { return x == c })
		}
		stack = stack[:0]
	}
	for {
		if head.kind != kindSkip {
			local, ok := state[head.ID.Client]
			if !ok {
				local = d.state(head.ID.Client)
				state[head.ID.Client] = local
			}
			if local < head.ID.Clock {
				stack = append(stack, head)
				updateMissing(head.ID.Client, head.ID.Clock-1)
				addStackToRest()
			} else {
				offset := int(local - head.ID.Clock)
				missing, isMissing, err := d.resolve(txn, head)
				if err != nil {
					return nil, err
				}
				if isMissing {
					stack = append(stack, head)
					t, ok := targets[missing]
					if !ok || t.i == len(t.refs) {
						updateMissing(missing, d.state(missing))
						addStackToRest()
					} else {
						head = t.refs[t.i]
						t.i++
						continue
					}
				} else if offset == 0 || offset < head.Len {
					if err := d.integrate(txn, head, offset); err != nil {
						return nil, err
					}
					state[head.ID.Client] = head.ID.Clock + uint64(head.Len)
				}
			}
		}
		if n := len(stack); n > 0 {
			head = stack[n-1]
			stack = stack[:n-1]
		} else if cur != nil && cur.i < len(cur.refs) {
			head = cur.refs[cur.i]
			cur.i++
		} else {
			cur = nextTarget()
			if cur == nil {
				break
			}
			head = cur.refs[cur.i]
			cur.i++
		}
	}
	if len(rest) == 0 {
		return nil, nil
	}
	var e encoder
	clients := make([]uint64, 0, len(rest))
	for c := range rest {
		clients = append(clients, c)
	}
	slices.SortFunc(clients, cmpDesc)
	e.writeVarUint(uint64(len(clients)))
	for _, c := range clients {
		list := rest[c]
		e.writeVarUint(uint64(len(list)))
		e.writeVarUint(c)
		e.writeVarUint(list[0].ID.Clock)
		for _, s := range list {
			s.write(&e, 0)
		}
	}
	e.writeVarUint(0)
	return &pendingStructs{missing: missingSV, update: e.buf}, nil
}

// readAndApplyDeleteSet applies a delete set section and returns the part
// that refers to structs not yet known, encoded as an update (or nil).
func (d *Doc) readAndApplyDeleteSet(txn *Transaction, dec *decoder) []byte {
	unapplied := DeleteSet{}
	var order []uint64
	n := dec.readCount(2)
	for i := 0; i < n && dec.err == nil; i++ {
		client := dec.readVarUint()
		k := dec.readCount(2)
		cs := d.clients[client]
		state := d.state(client)
		for j := 0; j < k && dec.err == nil; j++ {
			clock := dec.readVarUint()
			end := clock + dec.readVarUint()
			if dec.err != nil || end > maxSafeInteger {
				dec.fail("delete range out of range")
				return nil
			}
			addUnapplied := func(c, l uint64) {
				if _, ok := unapplied[client]; !ok {
					order = append(order, client)
				}
				unapplied.add(client, c, l)
			}
			if clock < state {
				if state < end {
					addUnapplied(state, end-state)
				}
				s := cs.find(clock)
				if !s.Deleted() && s.ID.Clock < clock {
					s = d.splitItem(txn, s, int(clock-s.ID.Clock))
				}
				for s != nil && s.ID.Clock < end {
					if !s.Deleted() {
						if end < s.end() {
							d.splitItem(txn, s, int(end-s.ID.Clock))
						}
						d.deleteItem(txn, s)
					}
					s = cs.nextOf(s)
				}
			} else {
				addUnapplied(clock, end-clock)
			}
		}
	}
	if len(unapplied) == 0 {
		return nil
	}
	var e encoder
	e.writeVarUint(0)
	writeDeleteSet(&e, unapplied)
	return e.buf
}

// HasPending reports whether structs or deletions wait for dependencies.
func (d *Doc) HasPending() bool { return d.pending != nil || d.pendingDs != nil }

// PendingState returns the encoded structs and delete set waiting for
// operations the document lacks (nil when none). The caller must not
// modify them.
func (d *Doc) PendingState() (structs, deletes []byte) {
	if d.pending != nil {
		structs = d.pending.update
	}
	return structs, d.pendingDs
}

// PendingError returns an error wrapping ErrPending that describes what is
// missing, or nil when nothing is pending.
func (d *Doc) PendingError() error {
	if !d.HasPending() {
		return nil
	}
	msg := ""
	if d.pending != nil {
		cl := make([]uint64, 0, len(d.pending.missing))
		for c := range d.pending.missing {
			cl = append(cl, c)
		}
		slices.Sort(cl)
		for _, c := range cl {
			msg += fmt.Sprintf(" client %d's operations beyond clock %d (have %d);", c, d.pending.missing[c], d.state(c))
		}
		msg = " structs wait for" + msg
	}
	if d.pendingDs != nil {
		msg += " deletions of structs not yet received"
	}
	return fmt.Errorf("%w:%s", ErrPending, msg)
}

// PendingMissing returns, per client, the first clock pending structs wait
// for (nil when nothing is pending).
func (d *Doc) PendingMissing() StateVector {
	if d.pending == nil {
		return nil
	}
	sv := make(StateVector, len(d.pending.missing))
	for c, k := range d.pending.missing {
		sv[c] = k
	}
	return sv
}
