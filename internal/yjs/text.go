package yjs

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// fmtVal is a formatting attribute value as yjs sees it: primitives compare
// by value, objects and arrays by identity. nil stands for null.
type fmtVal struct {
	raw string
	obj bool
}

func newFmtVal(raw string) *fmtVal {
	raw = strings.TrimSpace(raw)
	if raw == jsonNull {
		return nil
	}
	return &fmtVal{raw: raw, obj: strings.HasPrefix(raw, "{") || strings.HasPrefix(raw, "[")}
}

func (c *ContentFormat) val() *fmtVal {
	if c.v == nil && !c.isNull() {
		c.v = newFmtVal(c.Value)
	}
	return c.v
}

// strictEq is JavaScript's === on attribute values.
func strictEq(a, b *fmtVal) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.obj || b.obj {
		return a == b
	}
	return a.raw == b.raw
}

// equalAttrs is yjs's equalAttrs: === or shallow equality of two objects.
func equalAttrs(a, b *fmtVal) bool {
	if strictEq(a, b) {
		return true
	}
	if a == nil || b == nil || !a.obj || !b.obj {
		return false
	}
	if a.raw[0] != b.raw[0] {
		return false
	}
	prim := func(r json.RawMessage) (string, bool) {
		r = bytes.TrimSpace(r)
		if len(r) == 0 || r[0] == '{' || r[0] == '[' {
			return "", false
		}
		return string(r), true
	}
	if a.raw[0] == '[' {
		var x, y []json.RawMessage
		if json.Unmarshal([]byte(a.raw), &x) != nil || json.Unmarshal([]byte(b.raw), &y) != nil || len(x) != len(y) {
			return false
		}
		for i := range x {
			p, ok1 := prim(x[i])
			q, ok2 := prim(y[i])
			if !ok1 || !ok2 || p != q {
				return false
			}
		}
		return true
	}
	var x, y map[string]json.RawMessage
	if json.Unmarshal([]byte(a.raw), &x) != nil || json.Unmarshal([]byte(b.raw), &y) != nil || len(x) != len(y) {
		return false
	}
	for k, v := range x {
		w, ok := y[k]
		if !ok {
			return false
		}
		p, ok1 := prim(v)
		q, ok2 := prim(w)
		if !ok1 || !ok2 || p != q {
			return false
		}
	}
	return true
}

// attrMap is an insertion-ordered map of attribute values, like a
// JavaScript Map; values may be nil (null).
type attrMap struct{ e []attrEntry }

type attrEntry struct {
	key string
	val *fmtVal
}

func (m *attrMap) get(k string) (*fmtVal, bool) {
	if m == nil {
		return nil, false
	}
	for _, e := range m.e {
		if e.key == k {
			return e.val, true
		}
	}
	return nil, false
}

func (m *attrMap) set(k string, v *fmtVal) {
	for i := range m.e {
		if m.e[i].key == k {
			m.e[i].val = v
			return
		}
	}
	m.e = append(m.e, attrEntry{k, v})
}

func (m *attrMap) del(k string) {
	if m == nil {
		return
	}
	for i := range m.e {
		if m.e[i].key == k {
			m.e = append(m.e[:i], m.e[i+1:]...)
			return
		}
	}
}

func (m *attrMap) clone() *attrMap { return &attrMap{e: append([]attrEntry(nil), m.e...)} }

func (m *attrMap) entries() []attrEntry {
	if m == nil {
		return nil
	}
	return m.e
}

// jsObject is an attribute object with JavaScript's own-key order: array
// index keys ascending first, then other keys in insertion order.
type jsObject struct{ attrMap }

func isArrayIndex(k string) (uint64, bool) {
	if k == "" || (len(k) > 1 && k[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(k, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, false
	}
	return n, true
}

func (o *jsObject) set(k string, v *fmtVal) {
	if _, ok := o.get(k); ok {
		o.attrMap.set(k, v)
		return
	}
	o.e = append(o.e, attrEntry{k, v})
	sort.SliceStable(o.e, func(i, j int) bool {
		a, ai := isArrayIndex(o.e[i].key)
		b, bi := isArrayIndex(o.e[j].key)
		if ai && bi {
			return a < b
		}
		return ai && !bi
	})
}

func updateCurrentAttributes(m *attrMap, c *ContentFormat) {
	if c.isNull() {
		m.del(c.Key)
	} else {
		m.set(c.Key, c.val())
	}
}

// Attr is one formatting attribute; Value must marshal to JSON (nil means
// null, which removes the attribute).
type Attr struct {
	Key   string
	Value any
}

// Text is a Y.Text. Indexes and lengths count UTF-16 code units, exactly
// like JavaScript.
type Text struct{ t *Type }

// GetText returns the root Y.Text named name.
func (d *Doc) GetText(name string) *Text {
	t := d.Get(name)
	if t.Kind == KindUnknown {
		t.Kind = KindText
	}
	return &Text{t}
}

// Type returns the shared type behind the text.
func (x *Text) Type() *Type { return x.t }

// Len returns the text's length in UTF-16 code units.
func (x *Text) Len() int { return x.t.length }

// String returns the text. It updates the renderings the text keeps
// (textcache.go), so it must not run concurrently with anything else on
// the document, another String included.
func (x *Text) String() string { return typeString(x.t) }

func typeString(t *Type) string {
	// The visible length in UTF-16 units bounds an ASCII text's bytes.
	b := t.seqIndex().appendText(make([]byte, 0, t.length+t.length/8))
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// typeStringWalk renders t item by item. typeString answers the same from
// the leaves' renderings (textcache.go), which tests check against this.
func typeStringWalk(t *Type) string {
	b := make([]byte, 0, t.length+t.length/8)
	// One pass, item by item, straight into UTF-8. A surrogate pair may be
	// split over two items (a remote client's split): a high surrogate
	// ending one item waits for the next visible item's first unit, as if
	// the items were one run of UTF-16.
	var high uint16
	for it := t.start; it != nil; it = it.Right {
		c, ok := it.Content.(*ContentString)
		if !ok || !it.countable() || it.Deleted() || len(c.s) == 0 {
			continue
		}
		s := c.s
		if high != 0 {
			if isLowSurrogate(s[0]) {
				b = utf8.AppendRune(b, utf16.DecodeRune(rune(high), rune(s[0])))
				s = s[1:]
			} else {
				b = utf8.AppendRune(b, utf8.RuneError)
			}
			high = 0
		}
		if n := len(s); n > 0 && isHighSurrogate(s[n-1]) {
			high, s = s[n-1], s[:n-1]
		}
		b = appendUTF8(b, s)
	}
	if high != 0 {
		b = utf8.AppendRune(b, utf8.RuneError)
	}
	if len(b) == 0 {
		return ""
	}
	// Handed over as the string without a copy (nothing writes b again).
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func isLowSurrogate(c uint16) bool { return c >= 0xdc00 && c <= 0xdfff }

// UTF16Indexed returns the text as UTF-16 code units with the index of
// each in the Y.Text, which also counts embeds (one each) that the text
// leaves out: an edit worked out on the text lands where it should.
func (x *Text) UTF16Indexed() (units []uint16, at []int) {
	units = make([]uint16, 0, x.t.length)
	at = make([]int, 0, x.t.length)
	i := 0
	for it := x.t.start; it != nil; it = it.Right {
		if it.Deleted() || !it.countable() {
			continue
		}
		if c, ok := it.Content.(*ContentString); ok {
			for k, u := range c.s {
				units, at = append(units, u), append(at, i+k)
			}
		}
		i += it.Len
	}
	return units, at
}

type textPos struct {
	left, right *Item
	index       int
	attrs       attrMap
}

func (p *textPos) forward() {
	r := p.right
	if c, ok := r.Content.(*ContentFormat); ok {
		if !r.Deleted() {
			updateCurrentAttributes(&p.attrs, c)
		}
	} else if !r.Deleted() {
		p.index += r.Len
	}
	p.left = r
	p.right = r.Right
}

func (x *Text) findPosition(txn *Transaction, index int, pos *textPos) {
	t := x.t
	d := t.doc
	*pos = textPos{right: t.start}
	if index == 0 {
		return
	}
	if !t.hasFormatting {
		x := t.seqIndex()
		it, off := x.findNear(index - 1)
		if it != nil {
			if off+1 < it.Len {
				d.splitItem(txn, it, off+1)
				x.keepCursor()
			}
			pos.left, pos.right, pos.index = it, it.Right, index
			return
		}
	}
	count := index
	for pos.right != nil && count > 0 {
		r := pos.right
		if c, ok := r.Content.(*ContentFormat); ok {
			if !r.Deleted() {
				updateCurrentAttributes(&pos.attrs, c)
			}
		} else if !r.Deleted() {
			if count < r.Len {
				d.cleanStart(txn, ID{r.ID.Client, r.ID.Clock + uint64(count)})
			}
			pos.index += r.Len
			count -= r.Len
		}
		pos.left = r
		pos.right = r.Right
	}
}

func (x *Text) newItem(txn *Transaction, pos *textPos, c Content) *Item {
	d := x.t.doc
	var origin, rorigin *ID
	if pos.left != nil {
		origin = idPtr(pos.left.lastID())
	}
	if pos.right != nil {
		rorigin = idPtr(pos.right.ID)
	}
	it := newItem(ID{d.clientID, d.state(d.clientID)}, pos.left, origin, pos.right, rorigin, x.t, nil, c)
	_ = d.integrate(txn, it, 0)
	return it
}

func (x *Text) minimizeAttributeChanges(pos *textPos, attrs *jsObject) {
	for pos.right != nil {
		r := pos.right
		if !r.Deleted() {
			c, ok := r.Content.(*ContentFormat)
			if !ok {
				break
			}
			v, _ := attrs.get(c.Key)
			if !equalAttrs(v, c.val()) {
				break
			}
		}
		pos.forward()
	}
}

func (x *Text) insertAttributes(txn *Transaction, pos *textPos, attrs *jsObject) *attrMap {
	var neg *attrMap
	for _, e := range attrs.e {
		cur, _ := pos.attrs.get(e.key)
		if !equalAttrs(cur, e.val) {
			if neg == nil {
				neg = &attrMap{}
			}
			neg.set(e.key, cur)
			raw := jsonNull
			if e.val != nil {
				raw = e.val.raw
			}
			pos.right = x.newItem(txn, pos, &ContentFormat{Key: e.key, Value: raw, v: e.val})
			pos.forward()
		}
	}
	return neg
}

func (x *Text) insertNegatedAttributes(txn *Transaction, pos *textPos, neg *attrMap) {
	for pos.right != nil {
		r := pos.right
		if !r.Deleted() {
			c, ok := r.Content.(*ContentFormat)
			if !ok {
				break
			}
			v, present := neg.get(c.Key)
			if !present || !equalAttrs(v, c.val()) {
				break
			}
			neg.del(c.Key)
		}
		pos.forward()
	}
	for _, e := range neg.entries() {
		raw := jsonNull
		if e.val != nil {
			raw = e.val.raw
		}
		pos.right = x.newItem(txn, pos, &ContentFormat{Key: e.key, Value: raw, v: e.val})
		pos.forward()
	}
}

func (x *Text) insertContent(txn *Transaction, pos *textPos, c Content, attrs *jsObject) {
	for _, e := range pos.attrs.e {
		if _, ok := attrs.get(e.key); !ok {
			attrs.set(e.key, nil)
		}
	}
	x.minimizeAttributeChanges(pos, attrs)
	neg := x.insertAttributes(txn, pos, attrs)
	index := pos.index
	if cs, ok := c.(*ContentString); ok && len(neg.entries()) == 0 && x.tryAppend(pos, cs) {
		return
	}
	pos.right = x.newItem(txn, pos, c)
	pos.index = index
	pos.forward()
	x.insertNegatedAttributes(txn, pos, neg)
}

// tryAppend is the local typing fast path: when the new item would be
// merged into its left neighbour at the end of the transaction anyway, grow
// the neighbour now instead of creating an item.
func (x *Text) tryAppend(pos *textPos, c *ContentString) bool {
	if !x.canAppend(pos) {
		return false
	}
	l := pos.left
	l.Content.(*ContentString).appendUnits(c.s)
	n := len(c.s)
	l.Len += n
	x.t.length += n
	if x.t.index != nil {
		x.t.index.adjust(l, n)
	}
	return true
}

// insertPlain is insertContent for a string without attributes into text
// that has no formatting: no attribute items are involved, and the
// insertion point only moves past deleted items.
func (x *Text) insertPlain(txn *Transaction, pos *textPos, s string) {
	for pos.right != nil && pos.right.Deleted() {
		pos.left = pos.right
		pos.right = pos.right.Right
	}
	if l := pos.left; l != nil && x.canAppend(pos) {
		n := utf16Len(s)
		putUTF16(l.Content.(*ContentString).grow(n), s)
		vl := visLen(l)
		l.Len += n
		x.t.length += n
		if idx := x.t.index; idx != nil {
			idx.adjust(l, n)
			idx.setCursor(l, pos.index-vl)
		}
		return
	}
	// Typing goes on at the end of this item: leave room to grow in place.
	n := utf16Len(s)
	u := make([]uint16, n, max(2*n, 16))
	putUTF16(u, s)
	it := x.newItem(txn, pos, &ContentString{s: u, own: true})
	if idx := x.t.index; idx != nil && it.leaf != nil && !it.Deleted() {
		idx.setCursor(it, pos.index)
	}
}

// canAppend reports whether tryAppend may grow pos.left.
func (x *Text) canAppend(pos *textPos) bool {
	l := pos.left
	d := x.t.doc
	if l == nil || l.ID.Client != d.clientID || l.kind != kindItem || l.Deleted() || l.Right != pos.right {
		return false
	}
	if _, ok := l.Content.(*ContentString); !ok {
		return false
	}
	cs := d.own
	if cs == nil || cs.last() != l {
		return false
	}
	if pos.right != nil {
		return l.HasRightOrigin() && l.RightOrigin == pos.right.ID
	}
	return !l.HasRightOrigin()
}

func (x *Text) toAttrs(attrs []Attr) (*jsObject, error) {
	o := &jsObject{}
	for _, a := range attrs {
		raw, err := jsonText(a.Value)
		if err != nil {
			return nil, err
		}
		o.set(a.Key, newFmtVal(raw))
	}
	return o, nil
}

func (x *Text) check(index, length int) error {
	if index < 0 || length < 0 || index+length > x.t.length {
		return ErrIndex
	}
	return nil
}

// Insert inserts s at index. With attrs nil the text takes the formatting
// at the insertion point; otherwise exactly attrs (like yjs's insert).
func (x *Text) Insert(index int, s string, attrs []Attr) error {
	if s == "" {
		return nil
	}
	if err := x.check(index, 0); err != nil {
		return err
	}
	return x.t.doc.Transact(func(txn *Transaction) error {
		var pos textPos
		x.findPosition(txn, index, &pos)
		if attrs == nil && !x.t.hasFormatting {
			x.insertPlain(txn, &pos, s)
			return nil
		}
		var o *jsObject
		if attrs == nil {
			o = &jsObject{}
			for _, e := range pos.attrs.e {
				o.set(e.key, e.val)
			}
		} else {
			var err error
			if o, err = x.toAttrs(attrs); err != nil {
				return err
			}
		}
		x.insertContent(txn, &pos, &ContentString{s: toUTF16(s)}, o)
		return nil
	})
}

// InsertUTF16 is Insert for text given as UTF-16 code units (which may hold
// lone surrogates, as JavaScript strings may).
func (x *Text) InsertUTF16(index int, s []uint16) error {
	if len(s) == 0 {
		return nil
	}
	if err := x.check(index, 0); err != nil {
		return err
	}
	return x.t.doc.Transact(func(txn *Transaction) error {
		var pos textPos
		x.findPosition(txn, index, &pos)
		o := &jsObject{}
		for _, e := range pos.attrs.e {
			o.set(e.key, e.val)
		}
		x.insertContent(txn, &pos, &ContentString{s: append([]uint16(nil), s...)}, o)
		return nil
	})
}

// InsertEmbed inserts an embed (any JSON value) at index.
func (x *Text) InsertEmbed(index int, embed any, attrs []Attr) error {
	if err := x.check(index, 0); err != nil {
		return err
	}
	raw, err := jsonText(embed)
	if err != nil {
		return err
	}
	o, err := x.toAttrs(attrs)
	if err != nil {
		return err
	}
	return x.t.doc.Transact(func(txn *Transaction) error {
		var pos textPos
		x.findPosition(txn, index, &pos)
		x.insertContent(txn, &pos, &ContentEmbed{raw}, o)
		return nil
	})
}

// Delete removes length code units starting at index.
func (x *Text) Delete(index, length int) error {
	if length == 0 {
		return nil
	}
	if err := x.check(index, length); err != nil {
		return err
	}
	return x.t.doc.Transact(func(txn *Transaction) error {
		if x.deleteJoin(txn, index, length) {
			return nil
		}
		var pos textPos
		x.findPosition(txn, index, &pos)
		x.deleteText(txn, &pos, length)
		return nil
	})
}

// deleteJoin is the backspace and forward-delete fast path. Deleting the
// tail of an item whose right neighbour is the deleted rest of it (or the
// head of an item whose left neighbour is the deleted start of it) makes
// yjs split the item and merge the deleted part into that neighbour when
// the transaction ends. deleteJoin moves the boundary between the two
// items instead, which leaves exactly the structs yjs ends up with, and
// reports whether it could.
func (x *Text) deleteJoin(txn *Transaction, index, length int) bool {
	t := x.t
	d := t.doc
	if t.hasFormatting || d.gc {
		return false
	}
	idx := t.seqIndex()
	it, off := idx.findNear(index)
	if it == nil || it.kind != kindItem || it.HasParentSub() || off+length > it.Len {
		return false
	}
	c, ok := it.Content.(*ContentString)
	if !ok {
		return false
	}
	var delClock uint64
	if off > 0 && off+length == it.Len {
		// Backspace: its tail joins the deleted item on its right.
		b := it.Right
		if b == nil || !joinable(it, b) || !b.Deleted() {
			return false
		}
		bc, ok := b.Content.(*ContentString)
		if !ok {
			return false
		}
		delClock = it.ID.Clock + uint64(off)
		tail := c.cutTail(off)
		bc.prepend(tail)
		it.Len = off
		b.ID.Clock -= uint64(length)
		b.Len += length
		b.Origin = it.lastID()
		b.info |= it.info & flagKeep
	} else if off == 0 && length < it.Len {
		// Forward delete: its head joins the deleted item on its left.
		a := it.Left
		if a == nil || !joinable(a, it) || !a.Deleted() {
			return false
		}
		ac, ok := a.Content.(*ContentString)
		if !ok {
			return false
		}
		delClock = it.ID.Clock
		head := c.cutHead(length)
		ac.extend(head, false)
		a.Len += length
		a.info |= it.info & flagKeep
		it.ID.Clock += uint64(length)
		it.Len -= length
		it.Origin = a.lastID()
	} else {
		return false
	}
	t.length -= length
	idx.adjust(it, -length)
	idx.keepCursor()
	txn.addDelete(it.ID.Client, delClock, uint64(length))
	txn.addChanged(t)
	return true
}

// joinable reports whether a and b would merge if both were deleted
// (Item.mergeWith without the deleted check): b continues a.
func joinable(a, b *Item) bool {
	return a.kind == kindItem && b.kind == kindItem &&
		a.Right == b && b.Left == a &&
		a.ID.Client == b.ID.Client && a.end() == b.ID.Clock &&
		b.HasOrigin() && b.Origin == a.lastID() &&
		sameOptID(a.RightOrigin, a.HasRightOrigin(), b.RightOrigin, b.HasRightOrigin()) &&
		a.Parent == b.Parent && a.info&flagParentSub == 0 && b.info&flagParentSub == 0
}

func (x *Text) deleteText(txn *Transaction, pos *textPos, length int) {
	d := x.t.doc
	var startAttrs *attrMap
	if x.t.hasFormatting {
		startAttrs = pos.attrs.clone()
	}
	start := pos.right
	idx := x.t.index
	keep := idx != nil && idx.cursorValid() && idx.cur == pos.left && pos.left != nil
	for length > 0 && pos.right != nil {
		r := pos.right
		if !r.Deleted() {
			switch r.Content.(type) {
			case *ContentType, *ContentEmbed, *ContentString:
				if length < r.Len {
					d.cleanStart(txn, ID{r.ID.Client, r.ID.Clock + uint64(length)})
				}
				length -= r.Len
				d.deleteItem(txn, r)
			}
		}
		pos.forward()
	}
	if start != nil && x.t.hasFormatting {
		cleanupFormattingGap(txn, start, pos.right, startAttrs, &pos.attrs)
	}
	if keep {
		// Everything deleted lies after the cursor.
		idx.keepCursor()
	}
}

// Format applies attrs to length code units starting at index (a nil
// value removes an attribute).
func (x *Text) Format(index, length int, attrs []Attr) error {
	if length == 0 {
		return nil
	}
	if err := x.check(index, length); err != nil {
		return err
	}
	o, err := x.toAttrs(attrs)
	if err != nil {
		return err
	}
	return x.t.doc.Transact(func(txn *Transaction) error {
		var pos textPos
		x.findPosition(txn, index, &pos)
		if pos.right == nil {
			return nil
		}
		x.formatText(txn, &pos, length, o)
		return nil
	})
}

func (x *Text) formatText(txn *Transaction, pos *textPos, length int, attrs *jsObject) {
	d := x.t.doc
	x.minimizeAttributeChanges(pos, attrs)
	neg := x.insertAttributes(txn, pos, attrs)
loop:
	for pos.right != nil && (length > 0 || (len(neg.entries()) > 0 && (pos.right.Deleted() || isFormat(pos.right)))) {
		r := pos.right
		if !r.Deleted() {
			if c, ok := r.Content.(*ContentFormat); ok {
				if attr, present := attrs.get(c.Key); present {
					if equalAttrs(attr, c.val()) {
						neg.del(c.Key)
					} else {
						if length == 0 {
							break loop
						}
						if neg == nil {
							neg = &attrMap{}
						}
						neg.set(c.Key, c.val())
					}
					d.deleteItem(txn, r)
				} else {
					pos.attrs.set(c.Key, c.val())
				}
			} else {
				if length < r.Len {
					d.cleanStart(txn, ID{r.ID.Client, r.ID.Clock + uint64(length)})
				}
				length -= r.Len
			}
		}
		pos.forward()
	}
	if length > 0 {
		nl := make([]uint16, length)
		for i := range nl {
			nl[i] = '\n'
		}
		pos.right = x.newItem(txn, pos, &ContentString{s: nl})
		pos.forward()
	}
	x.insertNegatedAttributes(txn, pos, neg)
}

func isFormat(it *Item) bool {
	_, ok := it.Content.(*ContentFormat)
	return ok
}

func cleanupFormattingGap(txn *Transaction, start, curr *Item, startAttrs, currAttrs *attrMap) int {
	d := txn.doc
	end := start
	endFormats := map[string]*ContentFormat{}
	for end != nil && (!end.countable() || end.Deleted()) {
		if c, ok := end.Content.(*ContentFormat); ok && !end.Deleted() {
			endFormats[c.Key] = c
		}
		end = end.Right
	}
	cleanups := 0
	reachedCurr := false
	for start != end {
		if curr == start {
			reachedCurr = true
		}
		if !start.Deleted() {
			if c, ok := start.Content.(*ContentFormat); ok {
				value := c.val()
				startVal, _ := startAttrs.get(c.Key)
				if endFormats[c.Key] != c || strictEq(startVal, value) {
					d.deleteItem(txn, start)
					cleanups++
					cur, _ := currAttrs.get(c.Key)
					if !reachedCurr && strictEq(cur, value) && !strictEq(startVal, value) {
						if startVal == nil {
							currAttrs.del(c.Key)
						} else {
							currAttrs.set(c.Key, startVal)
						}
					}
				}
				if !reachedCurr && !start.Deleted() {
					updateCurrentAttributes(currAttrs, c)
				}
			}
		}
		start = start.Right
	}
	return cleanups
}

func cleanupContextlessFormattingGap(txn *Transaction, it *Item) {
	for it != nil && it.Right != nil && (it.Right.Deleted() || !it.Right.countable()) {
		it = it.Right
	}
	seen := map[string]bool{}
	for it != nil && (it.Deleted() || !it.countable()) {
		if c, ok := it.Content.(*ContentFormat); ok && !it.Deleted() {
			if seen[c.Key] {
				txn.doc.deleteItem(txn, it)
			} else {
				seen[c.Key] = true
			}
		}
		it = it.Left
	}
}

func cleanupTypeFormatting(txn *Transaction, t *Type) int {
	res := 0
	start := t.start
	startAttrs := &attrMap{}
	cur := startAttrs.clone()
	for end := t.start; end != nil; end = end.Right {
		if end.Deleted() {
			continue
		}
		if c, ok := end.Content.(*ContentFormat); ok {
			updateCurrentAttributes(cur, c)
		} else {
			res += cleanupFormattingGap(txn, start, end, startAttrs, cur)
			startAttrs = cur.clone()
			start = end
		}
	}
	return res
}

// cleanupTextAfterTransaction is yjs's cleanupYTextAfterTransaction: after
// a remote change to formatted text, drop redundant formatting markers.
func (d *Doc) cleanupTextAfterTransaction(txn *Transaction) {
	var full []*Type
	inFull := map[*Type]bool{}
	addFull := func(t *Type) {
		if !inFull[t] {
			inFull[t] = true
			full = append(full, t)
		}
	}
	for _, client := range d.clientList {
		after := txn.afterClock(client)
		before := txn.beforeClock(client)
		if after == before {
			continue
		}
		end := before + after
		for s := d.cleanStart(txn, ID{client, before}); s != nil && s.ID.Clock < end; s = d.clients[client].nextOf(s) {
			if c, ok := s.Content.(*ContentFormat); ok && s.kind == kindItem && !s.Deleted() && c != nil {
				addFull(s.Parent)
			}
		}
	}
	_ = d.transact(true, func(t *Transaction) error {
		for _, client := range txn.dsOrder {
			cs := d.clients[client]
			if cs == nil || cs.empty() {
				continue
			}
			state := cs.state()
			for _, r := range txn.dsFor(client) {
				if r.Clock >= state {
					break
				}
				if r.Len == 0 {
					continue
				}
				end := r.Clock + r.Len
				for s := d.cleanStart(txn, ID{client, r.Clock}); s != nil && s.ID.Clock < end; s = cs.nextOf(s) {
					if end < s.end() {
						d.cleanStart(txn, ID{client, end})
					}
					if s.kind != kindItem || s.Parent == nil || !s.Parent.hasFormatting || inFull[s.Parent] {
						continue
					}
					if isFormat(s) {
						addFull(s.Parent)
					} else {
						cleanupContextlessFormattingGap(t, s)
					}
				}
			}
		}
		for _, tp := range full {
			cleanupTypeFormatting(t, tp)
		}
		return nil
	})
}

// DeltaOp is one operation of a text delta (Quill format).
type DeltaOp struct {
	Insert     any            `json:"insert"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// ToDelta returns the text as a delta: runs of text with their formatting
// attributes, embeds as JSON values.
func (x *Text) ToDelta() []DeltaOp {
	var ops []DeltaOp
	cur := &attrMap{}
	var str []uint16
	attrsOf := func() map[string]any {
		if len(cur.e) == 0 {
			return nil
		}
		m := make(map[string]any, len(cur.e))
		for _, e := range cur.e {
			var v any
			if e.val != nil {
				_ = json.Unmarshal([]byte(e.val.raw), &v)
			}
			m[e.key] = v
		}
		return m
	}
	pack := func() {
		if len(str) > 0 {
			ops = append(ops, DeltaOp{Insert: fromUTF16(str), Attributes: attrsOf()})
			str = nil
		}
	}
	for it := x.t.start; it != nil; it = it.Right {
		if it.Deleted() {
			continue
		}
		switch c := it.Content.(type) {
		case *ContentString:
			str = append(str, c.s...)
		case *ContentEmbed:
			pack()
			var v any
			_ = json.Unmarshal([]byte(c.JSON), &v)
			ops = append(ops, DeltaOp{Insert: v, Attributes: attrsOf()})
		case *ContentType:
			pack()
			ops = append(ops, DeltaOp{Insert: map[string]any{"type": c.Type.Kind.String()}, Attributes: attrsOf()})
		case *ContentFormat:
			pack()
			updateCurrentAttributes(cur, c)
		}
	}
	pack()
	return ops
}
