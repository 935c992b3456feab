package yjs

// seqIndex is an order-statistic B+ tree over the items of one sequence
// (a type's list of items, deleted and invisible ones included) that maps a
// visible position to the item holding it in O(log n).
type seqIndex struct {
	root *seqNode
	// ver changes whenever a visible position may have shifted.
	ver uint64
	// cur is a cursor: an item in the sequence starting at visible
	// position curStart, valid while curVer == ver. Editors work around
	// one spot, so most lookups are answered next to it.
	cur      *Item
	curStart int
	curVer   uint64
}

type seqNode struct {
	parent *seqNode
	sum    int
	kids   []*seqNode
	items  []*Item
	leaf   bool
	// A leaf's text as typeString renders it (textcache.go), kept while
	// textOK: every change to the leaf's items or to their visible length
	// clears it.
	text textLeaf
}

const seqMax = 64

func visLen(it *Item) int {
	if it.info&(flagCountable|flagDeleted) == flagCountable {
		return it.Len
	}
	return 0
}

func buildSeqIndex(start *Item) *seqIndex {
	x := &seqIndex{root: &seqNode{leaf: true}}
	leaf := x.root
	for it := start; it != nil; it = it.Right {
		if len(leaf.items) >= seqMax {
			nl := &seqNode{leaf: true}
			x.insertSibling(leaf, nl)
			leaf = nl
		}
		leaf.items = append(leaf.items, it)
		it.leaf = leaf
		x.adjustNode(leaf, visLen(it))
	}
	return x
}

func (x *seqIndex) adjustNode(n *seqNode, d int) {
	if d == 0 {
		return
	}
	n.text.ok = false
	x.ver++
	for ; n != nil; n = n.parent {
		n.sum += d
	}
}

// adjust changes the visible length recorded for it by d.
func (x *seqIndex) adjust(it *Item, d int) {
	if d != 0 && it.leaf != nil {
		x.adjustNode(it.leaf, d)
	}
}

// insertSibling links node nw into the tree right after n.
func (x *seqIndex) insertSibling(n, nw *seqNode) {
	p := n.parent
	if p == nil {
		r := &seqNode{kids: []*seqNode{n, nw}, sum: n.sum + nw.sum}
		n.parent, nw.parent = r, r
		x.root = r
		return
	}
	k := 0
	for p.kids[k] != n {
		k++
	}
	p.kids = append(p.kids, nil)
	copy(p.kids[k+2:], p.kids[k+1:])
	p.kids[k+1] = nw
	nw.parent = p
	if len(p.kids) > seqMax {
		h := len(p.kids) / 2
		q := &seqNode{kids: append([]*seqNode(nil), p.kids[h:]...)}
		for j := h; j < len(p.kids); j++ {
			p.kids[j] = nil
		}
		p.kids = p.kids[:h]
		for _, c := range q.kids {
			c.parent = q
			q.sum += c.sum
		}
		p.sum -= q.sum
		x.insertSibling(p, q)
	}
}

// insertAfter adds it to the sequence right after prev (nil: at the start).
func (x *seqIndex) insertAfter(prev, it *Item) {
	var leaf *seqNode
	pos := 0
	if prev == nil || prev.leaf == nil {
		leaf = x.root
		for !leaf.leaf {
			leaf = leaf.kids[0]
		}
	} else {
		leaf = prev.leaf
		for pos < len(leaf.items) && leaf.items[pos] != prev {
			pos++
		}
		pos++
	}
	leaf.items = append(leaf.items, nil)
	copy(leaf.items[pos+1:], leaf.items[pos:])
	leaf.items[pos] = it
	it.leaf = leaf
	leaf.text.ok = false
	x.adjustNode(leaf, visLen(it))
	if len(leaf.items) > seqMax {
		h := len(leaf.items) / 2
		nl := &seqNode{leaf: true, items: append(make([]*Item, 0, seqMax+1), leaf.items[h:]...)}
		for j := h; j < len(leaf.items); j++ {
			leaf.items[j] = nil
		}
		leaf.items = leaf.items[:h]
		for _, c := range nl.items {
			c.leaf = nl
			nl.sum += visLen(c)
		}
		leaf.sum -= nl.sum
		x.insertSibling(leaf, nl)
	}
}

// remove drops it from the sequence.
func (x *seqIndex) remove(it *Item) {
	leaf := it.leaf
	if leaf == nil {
		return
	}
	x.adjustNode(leaf, -visLen(it))
	leaf.text.ok = false
	k := 0
	for leaf.items[k] != it {
		k++
	}
	copy(leaf.items[k:], leaf.items[k+1:])
	leaf.items[len(leaf.items)-1] = nil
	leaf.items = leaf.items[:len(leaf.items)-1]
	it.leaf = nil
	n := leaf
	for n.parent != nil && len(n.items) == 0 && len(n.kids) == 0 {
		p := n.parent
		j := 0
		for p.kids[j] != n {
			j++
		}
		copy(p.kids[j:], p.kids[j+1:])
		p.kids[len(p.kids)-1] = nil
		p.kids = p.kids[:len(p.kids)-1]
		n = p
	}
	if len(x.root.kids) == 0 && !x.root.leaf {
		x.root = &seqNode{leaf: true}
	}
}

// find returns the item holding visible position pos and the offset of pos
// inside it; pos must be below the total visible length.
func (x *seqIndex) find(pos int) (*Item, int) {
	n := x.root
	if pos < 0 || pos >= n.sum {
		return nil, 0
	}
	for !n.leaf {
		for _, c := range n.kids {
			if pos < c.sum {
				n = c
				break
			}
			pos -= c.sum
		}
	}
	for _, it := range n.items {
		l := visLen(it)
		if pos < l {
			return it, pos
		}
		pos -= l
	}
	return nil, 0
}

// setCursor records that it starts at visible position start.
func (x *seqIndex) setCursor(it *Item, start int) {
	x.cur, x.curStart, x.curVer = it, start, x.ver
}

// keepCursor declares the cursor still valid: the caller only changed the
// sequence after it.
func (x *seqIndex) keepCursor() { x.curVer = x.ver }

// cursorValid reports whether the cursor may be used.
func (x *seqIndex) cursorValid() bool {
	return x.cur != nil && x.curVer == x.ver && x.cur.leaf != nil
}

// findNear is find, answered from the cursor when pos is close to it; it
// leaves the cursor on the item found.
func (x *seqIndex) findNear(pos int) (*Item, int) {
	if x.cursorValid() {
		it, st := x.cur, x.curStart
		if pos >= st {
			for k := 0; k < 16 && it != nil; k++ {
				l := visLen(it)
				if pos < st+l {
					x.cur, x.curStart = it, st
					return it, pos - st
				}
				st += l
				it = it.Right
			}
		} else {
			for k := 0; k < 16; k++ {
				it = it.Left
				if it == nil {
					break
				}
				l := visLen(it)
				st -= l
				if l > 0 && pos >= st {
					x.cur, x.curStart = it, st
					return it, pos - st
				}
			}
		}
	}
	it, off := x.find(pos)
	if it != nil {
		x.setCursor(it, pos-off)
	}
	return it, off
}
