package yjs

import (
	"cmp"
	"slices"
)

// Snapshot is a document version: the operations known (state vector) and
// the deletions made (delete set), as in yjs's snapshots.
type Snapshot struct {
	StateVector StateVector
	DeleteSet   DeleteSet
}

// Snapshot returns the document's current version.
func (d *Doc) Snapshot() Snapshot {
	return Snapshot{StateVector: d.StateVector(), DeleteSet: d.deleteSetFromStore()}
}

// EncodeSnapshot writes a snapshot in yjs's v1 form (delete set, then
// state vector).
func EncodeSnapshot(s Snapshot) []byte {
	var e encoder
	writeDeleteSet(&e, s.DeleteSet)
	writeStateVector(&e, s.StateVector)
	return e.buf
}

// DecodeSnapshot reads a snapshot written by EncodeSnapshot or yjs's
// encodeSnapshot.
func DecodeSnapshot(b []byte) (Snapshot, error) {
	d := newDecoder(b)
	ds := readDeleteSet(d)
	if d.err != nil {
		return Snapshot{}, d.err
	}
	ds.sortAndMerge()
	n := d.readCount(2)
	sv := make(StateVector, n)
	for i := 0; i < n && d.err == nil; i++ {
		c := d.readVarUint()
		sv[c] = d.readVarUint()
	}
	if d.err != nil {
		return Snapshot{}, d.err
	}
	return Snapshot{sv, ds}, nil
}

// TextAt returns the text of the root type name as it was at snapshot s:
// content inserted within s.StateVector and not deleted in s.DeleteSet (a
// nil DeleteSet: nothing deleted yet). Run-length items that the snapshot
// cuts through are handled per code unit. It needs deleted content, so the
// document must have garbage collection off.
func (d *Doc) TextAt(name string, s Snapshot) (string, error) {
	if d.gc {
		return "", ErrGCEnabled
	}
	t := d.share[name]
	if t == nil {
		return "", nil
	}
	ds := s.DeleteSet
	if ds != nil {
		ds = DeleteSet{}
		for c, rs := range s.DeleteSet {
			ds[c] = sortAndMergeRanges(slices.Clone(rs))
		}
	}
	var u []uint16
	for it := t.start; it != nil; it = it.Right {
		c, ok := it.Content.(*ContentString)
		if !ok || it.kind != kindItem {
			continue
		}
		limit := s.StateVector[it.ID.Client]
		for i, ch := range c.s {
			clock := it.ID.Clock + uint64(i)
			if clock >= limit {
				break
			}
			if ds != nil && ds.Contains(ID{it.ID.Client, clock}) {
				continue
			}
			u = append(u, ch)
		}
	}
	return fromUTF16(u), nil
}

// ClientRanges tells, for one client, the clock ranges a document holds.
type ClientRanges struct {
	Client     uint64  `json:"client"`
	Integrated []Range `json:"integrated"`
	Pending    []Range `json:"pending,omitempty"`
}

// ClockRanges returns, per client (ascending), the clock ranges the
// document holds: integrated ones and those waiting in pending structs.
func (d *Doc) ClockRanges() []ClientRanges {
	byClient := map[uint64]*ClientRanges{}
	get := func(c uint64) *ClientRanges {
		r := byClient[c]
		if r == nil {
			r = &ClientRanges{Client: c}
			byClient[c] = r
		}
		return r
	}
	for c, cs := range d.clients {
		if !cs.empty() {
			get(c).Integrated = []Range{{0, cs.state()}}
		}
	}
	if d.pending != nil {
		if u, err := DecodeUpdate(d.pending.update); err == nil {
			for _, s := range u.Structs {
				if s.kind == kindSkip {
					continue
				}
				r := get(s.ID.Client)
				if n := len(r.Pending); n > 0 && r.Pending[n-1].End() == s.ID.Clock {
					r.Pending[n-1].Len += uint64(s.Len)
				} else {
					r.Pending = append(r.Pending, Range{s.ID.Clock, uint64(s.Len)})
				}
			}
		}
	}
	out := make([]ClientRanges, 0, len(byClient))
	for _, r := range byClient {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b ClientRanges) int {
		switch {
		case a.Client < b.Client:
			return -1
		case a.Client > b.Client:
			return 1
		}
		return 0
	})
	return out
}

// Missing returns, for each client of sv, the clock range sv claims that
// the document neither integrated nor holds in pending structs:
// operations a peer announced (for example a client's own edits saved
// locally) that never reached us. Operations held pending (waiting for
// another client's) did reach us. The range spans the first to the last
// clock still lacking.
func (d *Doc) Missing(sv StateVector) map[uint64]Range {
	out := map[uint64]Range{}
	var pending map[uint64][]Range
	for c, k := range sv {
		have := d.state(c)
		if k <= have {
			continue
		}
		if pending == nil {
			pending = d.PendingRanges()
		}
		// [have, k) less what pending holds, as one span.
		lo, hi, at := uint64(0), uint64(0), have
		lack := func(from, to uint64) {
			if from >= to {
				return
			}
			if hi == 0 {
				lo = from
			}
			hi = to
		}
		for _, r := range pending[c] { // ascending
			if r.End() <= at {
				continue
			}
			if r.Clock >= k {
				break
			}
			lack(at, r.Clock)
			at = max(at, r.End())
		}
		lack(at, k)
		if hi > 0 {
			out[c] = Range{lo, hi - lo}
		}
	}
	return out
}

// PendingRanges is, per client, the clock ranges held in pending structs,
// ascending.
func (d *Doc) PendingRanges() map[uint64][]Range {
	out := map[uint64][]Range{}
	for _, cr := range d.ClockRanges() {
		if len(cr.Pending) > 0 {
			slices.SortFunc(cr.Pending, func(a, b Range) int { return cmp.Compare(a.Clock, b.Clock) })
			out[cr.Client] = cr.Pending
		}
	}
	return out
}
