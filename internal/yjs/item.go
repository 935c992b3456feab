package yjs

// Struct kinds. GC structs stand for garbage collected ranges; Skip structs
// only occur in updates, for ranges an update does not carry.
const (
	kindItem uint8 = iota
	kindGC
	kindSkip
)

// Item flags.
const (
	flagOrigin uint8 = 1 << iota
	flagRightOrigin
	flagParentSub
	flagDeleted
	flagKeep
	flagCountable
)

// Item is one struct of a document: an insertion of content by one client
// (or, with kind GC or Skip, a placeholder range). Consecutive insertions of
// one client are run-length encoded in one Item until they must be split.
type Item struct {
	ID          ID
	Len         int
	Origin      ID // valid if HasOrigin
	RightOrigin ID // valid if HasRightOrigin
	Left, Right *Item
	Parent      *Type
	ParentSub   string // valid if HasParentSub
	Content     Content

	raw  *parentRef // parent reference read from an update, before integration
	leaf *seqNode
	kind uint8
	info uint8
}

// parentRef is a parent as written in an update: a root key or an item ID.
type parentRef struct {
	key   string
	id    ID
	isKey bool
}

// IsGC reports whether the struct is a garbage-collected range.
func (it *Item) IsGC() bool { return it.kind == kindGC }

// IsSkip reports whether the struct is a Skip range of an update.
func (it *Item) IsSkip() bool { return it.kind == kindSkip }

// Deleted reports whether the struct is deleted (GC and Skip always are).
func (it *Item) Deleted() bool { return it.kind != kindItem || it.info&flagDeleted != 0 }

// HasOrigin reports whether Origin is set.
func (it *Item) HasOrigin() bool { return it.info&flagOrigin != 0 }

// HasRightOrigin reports whether RightOrigin is set.
func (it *Item) HasRightOrigin() bool { return it.info&flagRightOrigin != 0 }

// HasParentSub reports whether the item is a map entry (ParentSub set).
func (it *Item) HasParentSub() bool { return it.info&flagParentSub != 0 }

func (it *Item) countable() bool { return it.info&flagCountable != 0 }

// Ref returns the struct's ref number (content ref, 0 for GC, 10 for Skip).
func (it *Item) Ref() uint8 {
	switch it.kind {
	case kindGC:
		return refGC
	case kindSkip:
		return refSkip
	}
	return it.Content.Ref()
}

func (it *Item) lastID() ID { return ID{it.ID.Client, it.ID.Clock + uint64(it.Len) - 1} }

func (it *Item) end() uint64 { return it.ID.Clock + uint64(it.Len) }

func newItem(id ID, left *Item, origin *ID, right *Item, rightOrigin *ID, parent *Type, parentSub *string, c Content) *Item {
	it := &Item{ID: id, Len: c.Len(), Left: left, Right: right, Parent: parent, Content: c}
	if origin != nil {
		it.Origin = *origin
		it.info |= flagOrigin
	}
	if rightOrigin != nil {
		it.RightOrigin = *rightOrigin
		it.info |= flagRightOrigin
	}
	if parentSub != nil {
		it.ParentSub = *parentSub
		it.info |= flagParentSub
	}
	if c.Countable() {
		it.info |= flagCountable
	}
	return it
}

func idPtr(id ID) *ID { return &id }

func sameOptID(a ID, aok bool, b ID, bok bool) bool {
	return aok == bok && (!aok || a == b)
}

// write encodes the struct, skipping its first offset clock ticks.
func (it *Item) write(e *encoder, offset int) {
	switch it.kind {
	case kindGC:
		e.writeUint8(refGC)
		e.writeVarUint(uint64(it.Len - offset))
		return
	case kindSkip:
		e.writeUint8(refSkip)
		e.writeVarUint(uint64(it.Len - offset))
		return
	}
	hasOrigin := it.HasOrigin() || offset > 0
	origin := it.Origin
	if offset > 0 {
		origin = ID{it.ID.Client, it.ID.Clock + uint64(offset) - 1}
	}
	info := it.Content.Ref() & 0x1f
	if hasOrigin {
		info |= 0x80
	}
	if it.HasRightOrigin() {
		info |= 0x40
	}
	if it.HasParentSub() {
		info |= 0x20
	}
	e.writeUint8(info)
	if hasOrigin {
		e.writeVarUint(origin.Client)
		e.writeVarUint(origin.Clock)
	}
	if it.HasRightOrigin() {
		e.writeVarUint(it.RightOrigin.Client)
		e.writeVarUint(it.RightOrigin.Clock)
	}
	if !hasOrigin && !it.HasRightOrigin() {
		switch {
		case it.Parent != nil && it.Parent.item == nil:
			e.writeVarUint(1)
			e.writeVarString(it.Parent.name)
		case it.Parent != nil:
			e.writeVarUint(0)
			e.writeVarUint(it.Parent.item.ID.Client)
			e.writeVarUint(it.Parent.item.ID.Clock)
		case it.raw != nil && it.raw.isKey:
			e.writeVarUint(1)
			e.writeVarString(it.raw.key)
		case it.raw != nil:
			e.writeVarUint(0)
			e.writeVarUint(it.raw.id.Client)
			e.writeVarUint(it.raw.id.Clock)
		default:
			// An item without any parent information cannot be written
			// faithfully; yjs never produces one. Write an empty root key.
			e.writeVarUint(1)
			e.writeVarString("")
		}
		if it.HasParentSub() {
			e.writeVarString(it.ParentSub)
		}
	}
	it.Content.write(e, offset)
}

// readStruct reads one struct of client at clock. doc may be nil.
func readStruct(d *decoder, client, clock uint64, doc *Doc) *Item {
	info := d.readUint8()
	if d.err != nil {
		return nil
	}
	id := ID{client, clock}
	switch info & 0x1f {
	case refGC, refSkip:
		if info&0x1f == refSkip && info != refSkip {
			// yjs only treats the exact byte 10 as Skip
			break
		}
		n := d.readVarUint()
		if d.err == nil && (n == 0 || clock+n > maxSafeInteger) {
			d.fail("bad struct length")
		}
		if d.err != nil {
			return nil
		}
		k := kindGC
		if info == refSkip {
			k = kindSkip
		}
		return &Item{ID: id, Len: int(n), kind: k, info: flagDeleted}
	}
	it := &Item{ID: id}
	if info&0x80 != 0 {
		it.Origin = ID{d.readVarUint(), d.readVarUint()}
		it.info |= flagOrigin
	}
	if info&0x40 != 0 {
		it.RightOrigin = ID{d.readVarUint(), d.readVarUint()}
		it.info |= flagRightOrigin
	}
	if info&0xc0 == 0 {
		if d.readVarUint() == 1 {
			it.raw = &parentRef{key: d.readVarString(), isKey: true}
		} else {
			it.raw = &parentRef{id: ID{d.readVarUint(), d.readVarUint()}}
		}
		if info&0x20 != 0 {
			it.ParentSub = d.readVarString()
			it.info |= flagParentSub
		}
	}
	// References to the same client must point backwards; anything else
	// could never be satisfied and would corrupt integration.
	if (it.HasOrigin() && it.Origin.Client == client && it.Origin.Clock >= clock) ||
		(it.HasRightOrigin() && it.RightOrigin.Client == client && it.RightOrigin.Clock >= clock) ||
		(it.raw != nil && !it.raw.isKey && it.raw.id.Client == client && it.raw.id.Clock >= clock) {
		d.fail("struct refers forward to its own client")
		return nil
	}
	it.Content = readContent(d, info, doc)
	if d.err != nil {
		return nil
	}
	it.Len = it.Content.Len()
	if clock+uint64(it.Len) > maxSafeInteger {
		d.fail("struct clock out of range")
		return nil
	}
	if it.Content.Countable() {
		it.info |= flagCountable
	}
	return it
}

// readUpdateStructs reads the struct section of an update into per-client
// lists. A client listed twice keeps only its last list, as in yjs.
func readUpdateStructs(d *decoder, doc *Doc) map[uint64][]*Item {
	n := d.readCount(3)
	refs := make(map[uint64][]*Item, n)
	for i := 0; i < n && d.err == nil; i++ {
		count := d.readCount(1)
		client := d.readVarUint()
		clock := d.readVarUint()
		list := make([]*Item, 0, count)
		for j := 0; j < count && d.err == nil; j++ {
			s := readStruct(d, client, clock, doc)
			if s == nil {
				break
			}
			list = append(list, s)
			clock += uint64(s.Len)
		}
		refs[client] = list
	}
	return refs
}
