package yjs

import (
	"unicode/utf16"
	"unicode/utf8"
)

// A text's string is asked for after every update the syncer applies (the
// legacy row holds it, every revision hashes it), and rendering it item by
// item is bound by chasing pointers: one to three cache misses per item,
// over every item of the text, deleted ones included. The items already sit
// in the leaves of the sequence index (index.go), 64 at most to a leaf, and
// every change to a leaf's items or their visible length goes through it.
// So each leaf keeps its own rendering, and a text is the leaves' renderings
// joined: an update re-renders the leaf or two it touched and copies the
// rest.
//
// Reading the string therefore writes (it may build the index and renders
// stale leaves): like every other use of a Doc, it needs the caller's
// exclusive lock. The store, the sync hub and the local-first client each
// hold one around it.
//
// The joined result must be byte for byte what walking the items gives
// (typeStringWalk), surrogate pairs split across items and leaves included:
// a leaf keeps aside a low surrogate its text starts with (lead) and a high
// surrogate it ends with (tail), and the join pairs them across leaves as
// the walk pairs them across items.

// textLeaf is a leaf's rendering.
type textLeaf struct {
	ok bool
	// has: the leaf holds visible text at all (a leaf without it passes a
	// pending high surrogate on, as the walk does over embeds).
	has bool
	// lead is the first unit of the leaf's first visible string if it is
	// a low surrogate (then not in b); tail is a high surrogate ending the
	// leaf's text (not in b either).
	lead, tail uint16
	// sum and n are the leaf's visible length and item count when
	// rendered: a rendering whose leaf differs in either is stale even if
	// a change forgot to clear ok.
	sum, n int
	b      []byte
}

// valid reports whether n's rendering may be used.
func (n *seqNode) textValid() bool {
	return n.text.ok && n.text.sum == n.sum && n.text.n == len(n.items)
}

// renderText renders leaf n's items, as typeStringWalk renders them.
func (n *seqNode) renderText() {
	t := &n.text
	*t = textLeaf{b: t.b[:0], sum: n.sum, n: len(n.items), ok: true}
	var high uint16
	for _, it := range n.items {
		c, ok := it.Content.(*ContentString)
		if !ok || !it.countable() || it.Deleted() || len(c.s) == 0 {
			continue
		}
		s := c.s
		if !t.has {
			t.has = true
			if isLowSurrogate(s[0]) {
				t.lead, s = s[0], s[1:]
			}
		} else if high != 0 {
			if len(s) > 0 && isLowSurrogate(s[0]) {
				t.b = utf8.AppendRune(t.b, utf16.DecodeRune(rune(high), rune(s[0])))
				s = s[1:]
			} else {
				t.b = utf8.AppendRune(t.b, utf8.RuneError)
			}
			high = 0
		}
		if k := len(s); k > 0 && isHighSurrogate(s[k-1]) {
			high, s = s[k-1], s[:k-1]
		}
		t.b = appendUTF8(t.b, s)
	}
	t.tail = high
	// Keep no buffer much larger than the rendering: a leaf whose text was
	// deleted (its tombstones stay) would otherwise hold its largest
	// rendering for good.
	if c := cap(t.b); c > 256 && c > 4*len(t.b) {
		if len(t.b) == 0 {
			t.b = nil
		} else {
			t.b = append([]byte(nil), t.b...)
		}
	}
}

// appendText appends the text of the sequence, rendering the leaves whose
// rendering is stale.
func (x *seqIndex) appendText(b []byte) []byte {
	var high uint16
	var walk func(n *seqNode)
	walk = func(n *seqNode) {
		if !n.leaf {
			for _, k := range n.kids {
				walk(k)
			}
			return
		}
		if !n.textValid() {
			n.renderText()
		}
		t := &n.text
		if !t.has {
			return
		}
		switch {
		case high != 0 && t.lead != 0:
			b = utf8.AppendRune(b, utf16.DecodeRune(rune(high), rune(t.lead)))
		case high != 0:
			b = utf8.AppendRune(b, utf8.RuneError)
		case t.lead != 0:
			b = utf8.AppendRune(b, utf8.RuneError) // a low surrogate alone
		}
		b = append(b, t.b...)
		high = t.tail
	}
	walk(x.root)
	if high != 0 {
		b = utf8.AppendRune(b, utf8.RuneError)
	}
	return b
}
