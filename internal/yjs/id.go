package yjs

import (
	"slices"
	"sort"
)

// ID identifies one element of one client's operations: the element at
// position Clock in client Client's sequence of insertions.
type ID struct {
	Client uint64
	Clock  uint64
}

// StateVector maps a client to the number of its operations known, i.e.
// the next clock expected from it.
type StateVector map[uint64]uint64

// EncodeStateVector writes sv in the Yjs v1 form (clients in descending
// order, as yjs writes them).
func EncodeStateVector(sv StateVector) []byte {
	var e encoder
	writeStateVector(&e, sv)
	return e.buf
}

func writeStateVector(e *encoder, sv StateVector) {
	clients := make([]uint64, 0, len(sv))
	for c := range sv {
		clients = append(clients, c)
	}
	slices.SortFunc(clients, func(a, b uint64) int { return cmpDesc(a, b) })
	e.writeVarUint(uint64(len(clients)))
	for _, c := range clients {
		e.writeVarUint(c)
		e.writeVarUint(sv[c])
	}
}

func cmpDesc(a, b uint64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// DecodeStateVector reads a Yjs v1 state vector. Trailing bytes are allowed
// (yjs ignores them too).
func DecodeStateVector(b []byte) (StateVector, error) {
	d := newDecoder(b)
	n := d.readCount(2)
	// Grown as entries are read: the count alone is no proof of them.
	sv := make(StateVector, min(n, 64))
	for i := 0; i < n && d.err == nil; i++ {
		c := d.readVarUint()
		k := d.readVarUint()
		sv[c] = k
	}
	if d.err != nil {
		return nil, d.err
	}
	return sv, nil
}

// Range is a half-open clock range [Clock, Clock+Len) of one client.
type Range struct {
	Clock uint64 `json:"clock"`
	Len   uint64 `json:"len"`
}

// End returns the first clock after the range.
func (r Range) End() uint64 { return r.Clock + r.Len }

// DeleteSet lists, per client, the clock ranges that are deleted.
type DeleteSet map[uint64][]Range

func (ds DeleteSet) add(client, clock, length uint64) {
	ds[client] = append(ds[client], Range{clock, length})
}

// sortAndMerge sorts every client's ranges and joins overlapping or
// adjacent ones.
func (ds DeleteSet) sortAndMerge() {
	for c, rs := range ds {
		ds[c] = sortAndMergeRanges(rs)
	}
}

func sortAndMergeRanges(rs []Range) []Range {
	if len(rs) < 2 {
		return rs
	}
	if !sort.SliceIsSorted(rs, func(i, j int) bool { return rs[i].Clock < rs[j].Clock }) {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].Clock < rs[j].Clock })
	}
	j := 1
	for i := 1; i < len(rs); i++ {
		l := &rs[j-1]
		r := rs[i]
		if l.Clock+l.Len >= r.Clock {
			if e := r.Clock + r.Len; e > l.Clock+l.Len {
				l.Len = e - l.Clock
			}
		} else {
			rs[j] = r
			j++
		}
	}
	return rs[:j]
}

// Contains reports whether id lies in a deleted range. The set must be
// sorted and merged (as decoded and computed sets are).
func (ds DeleteSet) Contains(id ID) bool {
	rs := ds[id.Client]
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Clock+rs[i].Len > id.Clock })
	return i < len(rs) && rs[i].Clock <= id.Clock
}

func mergeDeleteSets(dss []DeleteSet) DeleteSet {
	out := DeleteSet{}
	for _, ds := range dss {
		for c, rs := range ds {
			out[c] = append(out[c], rs...)
		}
	}
	out.sortAndMerge()
	return out
}

func writeDeleteSet(e *encoder, ds DeleteSet) {
	clients := make([]uint64, 0, len(ds))
	for c := range ds {
		clients = append(clients, c)
	}
	slices.SortFunc(clients, cmpDesc)
	e.writeVarUint(uint64(len(clients)))
	for _, c := range clients {
		rs := ds[c]
		e.writeVarUint(c)
		e.writeVarUint(uint64(len(rs)))
		for _, r := range rs {
			e.writeVarUint(r.Clock)
			e.writeVarUint(r.Len)
		}
	}
}

// readDeleteSet reads a delete set; clients with zero ranges are dropped,
// as yjs does.
func readDeleteSet(d *decoder) DeleteSet {
	ds := DeleteSet{}
	n := d.readCount(2)
	for i := 0; i < n && d.err == nil; i++ {
		c := d.readVarUint()
		k := d.readCount(2)
		for j := 0; j < k && d.err == nil; j++ {
			clock := d.readVarUint()
			l := d.readVarUint()
			if clock+l > maxSafeInteger {
				d.fail("delete range out of range")
			}
			ds[c] = append(ds[c], Range{clock, l})
		}
	}
	return ds
}

// EncodeDeleteSet writes ds in the Yjs v1 form.
func EncodeDeleteSet(ds DeleteSet) []byte {
	var e encoder
	writeDeleteSet(&e, ds)
	return e.buf
}

// DecodeDeleteSet reads a Yjs v1 delete set.
func DecodeDeleteSet(b []byte) (DeleteSet, error) {
	d := newDecoder(b)
	ds := readDeleteSet(d)
	if d.err != nil {
		return nil, d.err
	}
	return ds, nil
}
