// Package yjs is a Yjs-compatible CRDT document engine.
//
// It owns the Yjs v1 wire format (updates, state vectors, delete sets and
// the lib0 encodings under them) and the CRDT document model: per-client
// struct stores, YATA integration identical to yjs's Item.integrate, pending
// structs and deletions, shared types, and a complete Y.Text. Content the
// engine does not interpret (maps, arrays, XML, embeds, subdocuments, any
// values) is decoded, kept and re-encoded losslessly. It also offers the
// evidence helpers the syncer needs (clock ranges, missing operations, text
// as of a state vector) and update merging and diffing without a document.
//
// It must not touch anything outside memory: no I/O, no database, no
// Kubernetes. Callers own persistence and transport.
package yjs

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
)

// Options configure a Doc.
type Options struct {
	// ClientID identifies this replica's own operations; 0 picks a random
	// 32-bit id like yjs does.
	ClientID uint64
	// GC turns on garbage collection of deleted content. Off by default:
	// the server keeps deleted text as evidence.
	GC bool
}

// Doc is a Yjs document. It is not safe for concurrent use.
type Doc struct {
	clientID uint64
	gc       bool

	clients    map[uint64]*clientStore
	clientList []uint64       // insertion order, for deterministic iteration
	storeList  []*clientStore // the stores of clientList, in its order
	own        *clientStore   // the store of clientID, once it exists
	clientIdx  map[uint64]int
	share      map[string]*Type
	shareOrder []string

	txn      *Transaction
	cleanups []*Transaction
	txnPool  []*Transaction

	pending   *pendingStructs
	pendingDs []byte

	onUpdate []func(update []byte)
}

type pendingStructs struct {
	missing map[uint64]uint64
	update  []byte
}

// NewDoc creates an empty document.
func NewDoc(opts Options) *Doc {
	id := opts.ClientID
	if id == 0 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		id = uint64(binary.LittleEndian.Uint32(b[:]))
		if id == 0 {
			id = 1
		}
	}
	return &Doc{
		clientID:  id,
		gc:        opts.GC,
		clients:   make(map[uint64]*clientStore),
		clientIdx: make(map[uint64]int),
		share:     make(map[string]*Type),
	}
}

// ClientID returns the id this document's local operations are made under.
func (d *Doc) ClientID() uint64 { return d.clientID }

// GC reports whether garbage collection is on.
func (d *Doc) GC() bool { return d.gc }

// OnUpdate registers f to receive the v1 update of every transaction that
// changed the document (local or remote), after the transaction completes.
func (d *Doc) OnUpdate(f func(update []byte)) { d.onUpdate = append(d.onUpdate, f) }

// Get returns the root type named name, creating it if needed. Its kind
// stays as recorded until a caller asks for it as a specific kind.
func (d *Doc) Get(name string) *Type {
	t := d.share[name]
	if t == nil {
		t = &Type{doc: d, name: name, Kind: KindUnknown}
		d.share[name] = t
		d.shareOrder = append(d.shareOrder, name)
	}
	return t
}

// RootNames lists the root types in creation order.
func (d *Doc) RootNames() []string { return slices.Clone(d.shareOrder) }

func (d *Doc) store(client uint64) *clientStore {
	cs := d.clients[client]
	if cs == nil {
		cs = &clientStore{}
		d.clients[client] = cs
		d.clientIdx[client] = len(d.clientList)
		d.clientList = append(d.clientList, client)
		d.storeList = append(d.storeList, cs)
		if client == d.clientID {
			d.own = cs
		}
	}
	return cs
}

// storeOf returns client's store or nil.
func (d *Doc) storeOf(client uint64) *clientStore {
	if client == d.clientID {
		return d.own
	}
	return d.clients[client]
}

func (d *Doc) state(client uint64) uint64 {
	if cs := d.storeOf(client); cs != nil {
		return cs.state()
	}
	return 0
}

// StateVector returns the document's state vector (structs integrated;
// pending structs are not counted).
func (d *Doc) StateVector() StateVector {
	sv := make(StateVector, len(d.clients))
	for c, cs := range d.clients {
		if !cs.empty() {
			sv[c] = cs.state()
		}
	}
	return sv
}

// EncodeStateVector returns the document's state vector in v1 form.
func (d *Doc) EncodeStateVector() []byte { return EncodeStateVector(d.StateVector()) }

func (d *Doc) find(id ID) *Item {
	cs := d.storeOf(id.Client)
	if cs == nil {
		return nil
	}
	return cs.find(id.Clock)
}

func (d *Doc) addStruct(it *Item) error {
	cs := d.store(it.ID.Client)
	if cs.state() != it.ID.Clock {
		return malformed("struct %d:%d does not follow client state %d", it.ID.Client, it.ID.Clock, cs.state())
	}
	cs.push(it)
	return nil
}

// splitItem splits left at diff and returns the new right part, which it
// puts into the struct store and the sequence after left.
func (d *Doc) splitItem(txn *Transaction, left *Item, diff int) *Item {
	id := left.ID
	right := &Item{
		ID:          ID{id.Client, id.Clock + uint64(diff)},
		Origin:      ID{id.Client, id.Clock + uint64(diff) - 1},
		RightOrigin: left.RightOrigin,
		Left:        left,
		Right:       left.Right,
		Parent:      left.Parent,
		ParentSub:   left.ParentSub,
		kind:        kindItem,
		info:        left.info | flagOrigin,
	}
	var idx *seqIndex
	if left.leaf != nil && left.Parent != nil {
		idx = left.Parent.index
	}
	visBefore := visLen(left)
	right.Content = left.Content.splice(diff)
	right.Len = left.Len - diff
	left.Len = diff
	left.Right = right
	if right.Right != nil {
		right.Right.Left = right
	}
	txn.mergeStructs = append(txn.mergeStructs, right)
	if right.HasParentSub() && right.Right == nil {
		right.Parent.mapSet(right.ParentSub, right)
	}
	if idx != nil {
		idx.adjust(left, visLen(left)-visBefore)
		idx.insertAfter(left, right)
	}
	cs := d.storeOf(id.Client)
	ci, i, _ := cs.locate(id.Clock)
	cs.insertAfter(ci, i, right)
	return right
}

// cleanStart returns the struct starting exactly at id, splitting if needed.
func (d *Doc) cleanStart(txn *Transaction, id ID) *Item {
	s := d.find(id)
	if s != nil && s.ID.Clock < id.Clock && s.kind == kindItem {
		return d.splitItem(txn, s, int(id.Clock-s.ID.Clock))
	}
	return s
}

// cleanEnd returns the struct ending exactly at id, splitting if needed.
func (d *Doc) cleanEnd(txn *Transaction, id ID) *Item {
	s := d.find(id)
	if s != nil && id.Clock != s.ID.Clock+uint64(s.Len)-1 && s.kind == kindItem {
		d.splitItem(txn, s, int(id.Clock-s.ID.Clock+1))
	}
	return s
}

// Transaction groups changes; observers see them, and one update is
// produced for them, when the outermost transaction ends.
type Transaction struct {
	doc          *Doc
	local        bool
	before       []uint64 // client states at the start, by d.clientList index
	after        []uint64 // client states at commit, by d.clientList index
	mergeStructs []*Item
	changed      map[*Type]struct{}
	// The delete set: dsOrder lists the clients in the order they entered
	// it (a JS Map's order), dsRanges their ranges. dsIdx indexes dsOrder
	// once it is long.
	dsOrder  []uint64
	dsRanges [][]Range
	dsIdx    map[uint64]int
}

const dsIdxMin = 8

// dsIndex returns client's position in dsOrder, or -1.
func (txn *Transaction) dsIndex(client uint64) int {
	if txn.dsIdx != nil {
		if i, ok := txn.dsIdx[client]; ok {
			return i
		}
		return -1
	}
	for i := len(txn.dsOrder) - 1; i >= 0; i-- {
		if txn.dsOrder[i] == client {
			return i
		}
	}
	return -1
}

// dsFor returns client's deleted ranges in this transaction.
func (txn *Transaction) dsFor(client uint64) []Range {
	if i := txn.dsIndex(client); i >= 0 {
		return txn.dsRanges[i]
	}
	return nil
}

func (txn *Transaction) addDelete(client, clock, length uint64) {
	i := txn.dsIndex(client)
	if i < 0 {
		i = len(txn.dsOrder)
		txn.dsOrder = append(txn.dsOrder, client)
		// dsRanges keeps the emptied slices of earlier uses.
		if i == len(txn.dsRanges) {
			txn.dsRanges = append(txn.dsRanges, nil)
		}
		txn.dsRanges[i] = txn.dsRanges[i][:0]
		if txn.dsIdx != nil {
			txn.dsIdx[client] = i
		} else if len(txn.dsOrder) > dsIdxMin {
			txn.dsIdx = make(map[uint64]int, len(txn.dsOrder))
			for j, c := range txn.dsOrder {
				txn.dsIdx[c] = j
			}
		}
	}
	txn.dsRanges[i] = append(txn.dsRanges[i], Range{clock, length})
}

func (d *Doc) newTransaction(local bool) *Transaction {
	var txn *Transaction
	if n := len(d.txnPool); n > 0 {
		txn = d.txnPool[n-1]
		d.txnPool = d.txnPool[:n-1]
	} else {
		txn = &Transaction{}
	}
	txn.doc = d
	txn.local = local
	txn.before = d.clientStatesInto(txn.before[:0])
	txn.after = txn.after[:0]
	return txn
}

// release resets a committed transaction and keeps it for reuse; the
// delete set keeps its slices (emptied) to avoid reallocating them.
func (d *Doc) release(txn *Transaction) {
	for i := range txn.dsOrder {
		txn.dsRanges[i] = txn.dsRanges[i][:0]
	}
	txn.dsOrder = txn.dsOrder[:0]
	txn.dsIdx = nil
	clear(txn.mergeStructs)
	txn.mergeStructs = txn.mergeStructs[:0]
	txn.changed = nil
	if len(d.txnPool) < 4 {
		d.txnPool = append(d.txnPool, txn)
	}
}

// Transact runs f inside a transaction (joining the current one if any).
func (d *Doc) Transact(f func(txn *Transaction) error) error {
	return d.transact(true, f)
}

func (d *Doc) transact(local bool, f func(txn *Transaction) error) error {
	if d.txn != nil {
		return f(d.txn)
	}
	txn := d.newTransaction(local)
	d.txn = txn
	d.cleanups = append(d.cleanups, txn)
	err := f(txn)
	d.txn = nil
	if len(d.cleanups) > 0 && d.cleanups[0] == txn {
		// A commit may open further transactions (formatting cleanup);
		// they queue behind the one being committed, as in yjs.
		for i := 0; i < len(d.cleanups); i++ {
			t := d.cleanups[i]
			d.commit(t)
			d.cleanups[i] = nil
			d.release(t)
		}
		d.cleanups = d.cleanups[:0]
	}
	return err
}

func (d *Doc) clientStatesInto(st []uint64) []uint64 {
	for _, cs := range d.storeList {
		st = append(st, cs.state())
	}
	return st
}

// deletes returns the transaction's delete set without emptied entries.
func (txn *Transaction) deletes() DeleteSet {
	ds := make(DeleteSet, len(txn.dsOrder))
	for i, c := range txn.dsOrder {
		ds[c] = txn.dsRanges[i]
	}
	return ds
}

func (txn *Transaction) beforeClock(client uint64) uint64 {
	i, ok := txn.doc.clientIdx[client]
	if ok && i < len(txn.before) {
		return txn.before[i]
	}
	return 0
}

func (txn *Transaction) beforeAt(i int) uint64 {
	if i < len(txn.before) {
		return txn.before[i]
	}
	return 0
}

func (txn *Transaction) afterClock(client uint64) uint64 {
	i, ok := txn.doc.clientIdx[client]
	if ok && i < len(txn.after) {
		return txn.after[i]
	}
	return 0
}

// beforeSV returns the start state as a state vector.
func (txn *Transaction) beforeSV() StateVector {
	sv := make(StateVector, len(txn.before))
	for i, k := range txn.before {
		sv[txn.doc.clientList[i]] = k
	}
	return sv
}

func (txn *Transaction) addChanged(t *Type) {
	if txn.local || !t.isText() {
		return
	}
	if t.item == nil || (t.item.ID.Clock < txn.beforeClock(t.item.ID.Client) && !t.item.Deleted()) {
		if txn.changed == nil {
			txn.changed = make(map[*Type]struct{})
		}
		txn.changed[t] = struct{}{}
	}
}

// commit runs the end-of-transaction work of yjs's cleanupTransactions:
// formatting cleanup after remote changes, garbage collection, merging of
// structs, and the update event.
func (d *Doc) commit(txn *Transaction) {
	for i := range txn.dsOrder {
		txn.dsRanges[i] = sortAndMergeRanges(txn.dsRanges[i])
	}
	txn.after = d.clientStatesInto(txn.after[:0])
	needCleanup := false
	if len(txn.changed) > 0 {
		for t := range txn.changed {
			if (t.item == nil || !t.item.Deleted()) && t.hasFormatting {
				needCleanup = true
			}
		}
	}
	if needCleanup {
		d.cleanupTextAfterTransaction(txn)
	}
	if d.gc {
		d.tryGcDeleteSet(txn)
	}
	d.tryMergeDeleteSet(txn)
	for ci, clock := range txn.after {
		before := txn.beforeAt(ci)
		if before == clock {
			continue
		}
		cs := d.storeList[ci]
		first := cs.find(before)
		if first == nil {
			continue
		}
		if first == cs.first() {
			first = cs.nextOf(first)
			if first == nil {
				continue
			}
		}
		limit := first.ID.Clock
		for s := cs.last(); s != nil && s.ID.Clock >= limit; {
			s, _ = d.mergeWithLefts(cs, s)
			if s.ID.Clock <= limit {
				break // the struct before is below the limit
			}
			s = cs.prevOf(s)
		}
	}
	for i := len(txn.mergeStructs) - 1; i >= 0; i-- {
		id := txn.mergeStructs[i].ID
		cs := d.storeOf(id.Client)
		s := cs.find(id.Clock)
		if s == nil {
			continue
		}
		if n := cs.nextOf(s); n != nil {
			if _, merged := d.mergeWithLefts(cs, n); merged > 1 {
				continue
			}
		}
		if s != cs.first() {
			d.mergeWithLefts(cs, s)
		}
	}
	if len(d.onUpdate) > 0 {
		changed := len(txn.dsOrder) > 0
		if !changed {
			for i, k := range txn.after {
				if txn.beforeAt(i) != k {
					changed = true
					break
				}
			}
		}
		if changed {
			var e encoder
			d.writeClientsStructs(&e, txn.beforeSV())
			writeDeleteSet(&e, txn.deletes())
			for _, f := range d.onUpdate {
				f(e.buf)
			}
		}
	}
}

// mergeWithLefts tries to merge s into the structs before it, like yjs's
// tryToMergeWithLefts. It returns the surviving struct and how many
// structs were merged away.
func (d *Doc) mergeWithLefts(cs *clientStore, s *Item) (*Item, int) {
	merged := 0
	for {
		var l *Item
		if s.kind == kindItem {
			// An item only merges into its left neighbour in the sequence,
			// and only if that is the struct before it in the store.
			l = s.Left
			if l == nil || l.ID.Client != s.ID.Client || l.end() != s.ID.Clock || l.Right != s {
				return s, merged
			}
		} else {
			l = cs.prevOf(s)
		}
		if l == nil || l.Deleted() != s.Deleted() || l.kind != s.kind {
			return s, merged
		}
		// Find s before the merge: afterwards l's range covers s's clock,
		// and a lookup by clock could land on l and remove it instead
		// (a fuzzed update left a gap in the store that way, and the
		// document's encoded state could not be decoded again).
		ci, i, _ := cs.locate(s.ID.Clock)
		if !d.mergeStructs(l, s) {
			return s, merged
		}
		if s.kind == kindItem && s.HasParentSub() && s.Parent.mapGet(s.ParentSub) == s {
			s.Parent.mapSet(s.ParentSub, l)
		}
		cs.removeAt(ci, i)
		merged++
		s = l
	}
}

// mergeStructs appends right to left if yjs would (Item.mergeWith and
// GC.mergeWith); the caller removes right from the store. left's end clock
// must not be read before right is removed from the store.
func (d *Doc) mergeStructs(left, right *Item) bool {
	if left.kind == kindGC {
		left.Len += right.Len
		return true
	}
	if left.kind != kindItem ||
		!right.HasOrigin() || right.Origin != left.lastID() ||
		left.Right != right ||
		!sameOptID(left.RightOrigin, left.HasRightOrigin(), right.RightOrigin, right.HasRightOrigin()) ||
		left.ID.Client != right.ID.Client || left.end() != right.ID.Clock ||
		left.Deleted() != right.Deleted() ||
		left.Content.Ref() != right.Content.Ref() {
		return false
	}
	if !left.Content.mergeWith(right.Content) {
		return false
	}
	var idx *seqIndex
	if right.leaf != nil && right.Parent != nil {
		idx = right.Parent.index
	}
	rv := visLen(right)
	if idx != nil {
		idx.remove(right)
	}
	if right.info&flagKeep != 0 {
		left.info |= flagKeep
	}
	left.Right = right.Right
	if left.Right != nil {
		left.Right.Left = left
	}
	left.Len += right.Len
	if idx != nil {
		idx.adjust(left, rv)
	}
	return true
}

func (d *Doc) tryMergeDeleteSet(txn *Transaction) {
	for i, client := range txn.dsOrder {
		rs := txn.dsRanges[i]
		cs := d.storeOf(client)
		if cs == nil {
			continue
		}
		for j := len(rs) - 1; j >= 0; j-- {
			r := rs[j]
			if r.Len == 0 {
				continue
			}
			s := cs.find(r.Clock + r.Len - 1)
			if s == nil {
				continue
			}
			if n := cs.nextOf(s); n != nil {
				s = n
			}
			for s != nil && s != cs.first() && s.ID.Clock >= r.Clock {
				s, _ = d.mergeWithLefts(cs, s)
				if s.ID.Clock <= r.Clock {
					break // the struct before is below the range
				}
				s = cs.prevOf(s)
			}
		}
	}
}

func (d *Doc) tryGcDeleteSet(txn *Transaction) {
	for i, client := range txn.dsOrder {
		rs := txn.dsRanges[i]
		cs := d.storeOf(client)
		if cs == nil {
			continue
		}
		for j := len(rs) - 1; j >= 0; j-- {
			r := rs[j]
			end := r.Clock + r.Len
			var todo []*Item
			cs.eachFrom(r.Clock, func(s *Item) bool {
				if s.ID.Clock >= end {
					return false
				}
				todo = append(todo, s)
				return true
			})
			for _, s := range todo {
				if s.kind == kindItem && s.Deleted() && s.info&flagKeep == 0 {
					d.gcItem(s, false)
				}
			}
		}
	}
}

// gcItem drops a deleted item's content (yjs Item.gc).
func (d *Doc) gcItem(it *Item, parentGCd bool) {
	if ct, ok := it.Content.(*ContentType); ok {
		t := ct.Type
		for c := t.start; c != nil; {
			next := c.Right
			d.gcItem(c, true)
			c = next
		}
		t.start = nil
		for _, c := range t.keys {
			for c != nil {
				prev := c.Left
				d.gcItem(c, true)
				c = prev
			}
		}
		t.keys = nil
		t.index = nil
	}
	if parentGCd {
		gc := &Item{ID: it.ID, Len: it.Len, kind: kindGC, info: flagDeleted}
		d.clients[it.ID.Client].replace(it, gc)
	} else {
		it.Content = &ContentDeleted{it.Len}
	}
}

// deleteItem marks it deleted (yjs Item.delete).
func (d *Doc) deleteItem(txn *Transaction, it *Item) {
	if it.Deleted() {
		return
	}
	p := it.Parent
	if it.countable() && !it.HasParentSub() {
		p.length -= it.Len
		if p.index != nil && it.leaf != nil {
			p.index.adjust(it, -it.Len)
		}
	}
	it.info |= flagDeleted
	txn.addDelete(it.ID.Client, it.ID.Clock, uint64(it.Len))
	txn.addChanged(p)
	if ct, ok := it.Content.(*ContentType); ok {
		t := ct.Type
		for c := t.start; c != nil; c = c.Right {
			if !c.Deleted() {
				d.deleteItem(txn, c)
			} else if c.ID.Clock < txn.beforeClock(c.ID.Client) {
				txn.mergeStructs = append(txn.mergeStructs, c)
			}
		}
		for _, c := range t.keys {
			if !c.Deleted() {
				d.deleteItem(txn, c)
			} else if c.ID.Clock < txn.beforeClock(c.ID.Client) {
				txn.mergeStructs = append(txn.mergeStructs, c)
			}
		}
		delete(txn.changed, t)
	}
}

// integrate places a struct whose dependencies are present (yjs
// Item.integrate / GC.integrate).
//
//nolint:gocyclo // one function on purpose: it mirrors yjs's Item.integrate step by step, so the two can be compared line for line.
func (d *Doc) integrate(txn *Transaction, it *Item, offset int) error {
	if it.kind == kindGC {
		if offset > 0 {
			it.ID.Clock += uint64(offset)
			it.Len -= offset
		}
		return d.addStruct(it)
	}
	if offset > 0 {
		it.ID.Clock += uint64(offset)
		it.Left = d.cleanEnd(txn, ID{it.ID.Client, it.ID.Clock - 1})
		if it.Left == nil {
			return malformed("missing left neighbour of %d:%d", it.ID.Client, it.ID.Clock)
		}
		it.Origin = it.Left.lastID()
		it.info |= flagOrigin
		it.Content = it.Content.splice(offset)
		it.Len -= offset
	}
	p := it.Parent
	if p == nil {
		gc := &Item{ID: it.ID, Len: it.Len, kind: kindGC, info: flagDeleted}
		return d.addStruct(gc)
	}
	hasSub := it.HasParentSub()
	if (it.Left == nil && (it.Right == nil || it.Right.Left != nil)) || (it.Left != nil && it.Left.Right != it.Right) {
		left := it.Left
		var o *Item
		if left != nil {
			o = left.Right
		} else if hasSub {
			o = p.mapGet(it.ParentSub)
			for o != nil && o.Left != nil {
				o = o.Left
			}
		} else {
			o = p.start
		}
		var conflicting, beforeOrigin map[*Item]struct{}
		if o != nil && o != it.Right {
			conflicting = make(map[*Item]struct{})
			beforeOrigin = make(map[*Item]struct{})
		}
		for o != nil && o != it.Right {
			beforeOrigin[o] = struct{}{}
			conflicting[o] = struct{}{}
			if sameOptID(it.Origin, it.HasOrigin(), o.Origin, o.HasOrigin()) {
				if o.ID.Client < it.ID.Client {
					left = o
					clear(conflicting)
				} else if sameOptID(it.RightOrigin, it.HasRightOrigin(), o.RightOrigin, o.HasRightOrigin()) {
					break
				}
			} else if oo := d.originItem(o); oo != nil {
				if _, ok := beforeOrigin[oo]; ok {
					if _, ok := conflicting[oo]; !ok {
						left = o
						clear(conflicting)
					}
				} else {
					break
				}
			} else {
				break
			}
			o = o.Right
		}
		it.Left = left
	}
	if it.Left != nil {
		it.Right = it.Left.Right
		it.Left.Right = it
	} else {
		var r *Item
		if hasSub {
			r = p.mapGet(it.ParentSub)
			for r != nil && r.Left != nil {
				r = r.Left
			}
		} else {
			r = p.start
			p.start = it
		}
		it.Right = r
	}
	if it.Right != nil {
		it.Right.Left = it
	} else if hasSub {
		p.mapSet(it.ParentSub, it)
		if it.Left != nil {
			d.deleteItem(txn, it.Left)
		}
	}
	if !hasSub && it.countable() && !it.Deleted() {
		p.length += it.Len
	}
	if err := d.addStruct(it); err != nil {
		return err
	}
	if !hasSub && p.index != nil {
		p.index.insertAfter(it.Left, it)
	}
	switch c := it.Content.(type) {
	case *ContentDeleted:
		txn.addDelete(it.ID.Client, it.ID.Clock, uint64(c.N))
		it.info |= flagDeleted
	case *ContentType:
		c.Type.doc = d
		c.Type.item = it
	case *ContentFormat:
		p.hasFormatting = true
	}
	txn.addChanged(p)
	if (p.item != nil && p.item.Deleted()) || (hasSub && it.Right != nil) {
		d.deleteItem(txn, it)
	}
	return nil
}

// originItem returns the struct holding o's origin, or nil if o has none.
func (d *Doc) originItem(o *Item) *Item {
	if !o.HasOrigin() {
		return nil
	}
	return d.find(o.Origin)
}

// resolve implements yjs's Item.getMissing: it returns the client whose
// operations are missing, or resolves the item's neighbours and parent.
func (d *Doc) resolve(txn *Transaction, it *Item) (missing uint64, isMissing bool, err error) {
	if it.kind != kindItem {
		return 0, false, nil
	}
	if it.HasOrigin() && it.Origin.Client != it.ID.Client && it.Origin.Clock >= d.state(it.Origin.Client) {
		return it.Origin.Client, true, nil
	}
	if it.HasRightOrigin() && it.RightOrigin.Client != it.ID.Client && it.RightOrigin.Clock >= d.state(it.RightOrigin.Client) {
		return it.RightOrigin.Client, true, nil
	}
	if it.raw != nil && !it.raw.isKey && it.raw.id.Client != it.ID.Client && it.raw.id.Clock >= d.state(it.raw.id.Client) {
		return it.raw.id.Client, true, nil
	}
	if it.HasOrigin() {
		if it.Origin.Clock >= d.state(it.Origin.Client) {
			return 0, false, malformed("struct %d:%d has origin %d:%d it cannot follow", it.ID.Client, it.ID.Clock, it.Origin.Client, it.Origin.Clock)
		}
		it.Left = d.cleanEnd(txn, it.Origin)
		it.Origin = it.Left.lastID()
	}
	if it.HasRightOrigin() {
		if it.RightOrigin.Clock >= d.state(it.RightOrigin.Client) {
			return 0, false, malformed("struct %d:%d has right origin %d:%d it cannot follow", it.ID.Client, it.ID.Clock, it.RightOrigin.Client, it.RightOrigin.Clock)
		}
		it.Right = d.cleanStart(txn, it.RightOrigin)
		it.RightOrigin = it.Right.ID
	}
	raw := it.raw
	it.raw = nil
	switch {
	case (it.Left != nil && it.Left.kind == kindGC) || (it.Right != nil && it.Right.kind == kindGC):
		it.Parent = nil
	case raw == nil:
		if it.Left != nil && it.Left.kind == kindItem {
			it.Parent = it.Left.Parent
			it.ParentSub = it.Left.ParentSub
			it.info = it.info&^flagParentSub | it.Left.info&flagParentSub
		} else if it.Right != nil && it.Right.kind == kindItem {
			it.Parent = it.Right.Parent
			it.ParentSub = it.Right.ParentSub
			it.info = it.info&^flagParentSub | it.Right.info&flagParentSub
		}
	case raw.isKey:
		it.Parent = d.Get(raw.key)
	default:
		if raw.id.Clock >= d.state(raw.id.Client) {
			return 0, false, malformed("struct %d:%d has parent %d:%d it cannot follow", it.ID.Client, it.ID.Clock, raw.id.Client, raw.id.Clock)
		}
		pi := d.find(raw.id)
		if ct, ok := pi.Content.(*ContentType); ok && pi.kind == kindItem {
			it.Parent = ct.Type
		} else {
			it.Parent = nil
		}
	}
	return 0, false, nil
}

func (d *Doc) String() string {
	return fmt.Sprintf("Doc(client=%d, clients=%d)", d.clientID, len(d.clients))
}
