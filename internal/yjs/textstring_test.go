package yjs

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// TestTextStringAcrossItems: the text read item by item is the text of
// all visible items' UTF-16 joined and converted at once, whatever the
// split: ASCII runs, multi-byte characters, surrogate pairs split over two
// items or over a deleted item between them, lone surrogates, embeds.
func TestTextStringAcrossItems(t *testing.T) {
	units := []uint16{'a', 'b', ' ', 0xe9, 0x4e2d, 0xd83d, 0xde00, 0xd83d, 0xde80, 0xdc00, 0xd800, 'z'}
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 3000 {
		typ, _, want := randomItemList(r, units, 12, 6, false)
		got := typeString(typ)
		if w := string(appendUTF8(nil, want)); got != w {
			t.Fatalf("round %d: %q, want %q", round, got, w)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("round %d: invalid UTF-8 %q", round, got)
		}
	}
}

// randomItemList links fewer than maxItems random items, each of fewer
// than maxLen units drawn from units, into a type: mostly visible strings,
// some deleted, some embeds and, with formats, some formatting items. want
// is the units of the visible strings, in order.
func randomItemList(r *rand.Rand, units []uint16, maxItems, maxLen int, formats bool) (typ *Type, items []*Item, want []uint16) {
	typ = &Type{}
	kinds := 6
	if formats {
		kinds = 7
	}
	var last *Item
	for range r.IntN(maxItems) {
		s := make([]uint16, r.IntN(maxLen))
		for i := range s {
			s[i] = units[r.IntN(len(units))]
		}
		it := &Item{Content: &ContentString{s: s}, Len: len(s), kind: kindItem, info: flagCountable}
		switch k := r.IntN(kinds); {
		case k == 0:
			it.info |= flagDeleted
		case k == 1:
			it.Content, it.Len = &ContentEmbed{JSON: "{}"}, 1
		case formats && k == 2:
			it.Content, it.Len, it.info = &ContentFormat{Key: "b", Value: "true"}, 1, 0
		default:
			want = append(want, s...)
			typ.length += len(s)
		}
		if last == nil {
			typ.start = it
		} else {
			last.Right, it.Left = it, last
		}
		last = it
		items = append(items, it)
	}
	return typ, items, want
}

// TestAppendUTF8 checks the converter against the standard library's
// reading of the same UTF-16 (lone surrogates become U+FFFD).
func TestAppendUTF8(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := range 10000 {
		s := make([]uint16, r.IntN(40))
		for i := 0; i < len(s); i++ {
			switch r.IntN(4) {
			case 0, 1:
				s[i] = uint16(r.IntN(0x80))
				if n%2 == 1 { // runs of ASCII, as prose has: the four-at-a-time path
					for k := r.IntN(12); k > 0 && i+1 < len(s); k-- {
						i++
						s[i] = uint16(r.IntN(0x80))
					}
				}
			case 2:
				s[i] = uint16(0xd800 + r.IntN(0x800))
			default:
				s[i] = uint16(r.IntN(0x10000))
			}
		}
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			c := rune(s[i])
			switch {
			case c >= 0xd800 && c < 0xdc00 && i+1 < len(s) && s[i+1] >= 0xdc00 && s[i+1] < 0xe000:
				b.WriteRune((c-0xd800)<<10 + rune(s[i+1]) - 0xdc00 + 0x10000)
				i++
			case c >= 0xd800 && c < 0xe000:
				b.WriteRune(utf8.RuneError)
			default:
				b.WriteRune(c)
			}
		}
		// Little room to start with: runs must grow it as they go.
		dst := append(make([]byte, 0, 1+r.IntN(6)), 'x')
		if got := string(appendUTF8(dst, s)); got != "x"+b.String() {
			t.Fatalf("%x: %q, want %q", s, got, "x"+b.String())
		}
	}
}

// BenchmarkTextString reads a 9 KB essay as the syncer does after every
// update it applies: typed by one client mostly at its cursor (so items
// merge into runs), sometimes elsewhere, with a few accented characters.
// BenchmarkTextString: the string of a 9 KB essay typed with jumps,
// unchanged since the last call (every leaf's rendering reused); after
// one keystroke (the syncer's case: the leaf typed into is rendered
// again); and walking every item, as before the leaves kept renderings.
func BenchmarkTextString(b *testing.B) {
	x := benchEssay(b)
	b.Run("unchanged", func(b *testing.B) {
		b.SetBytes(int64(len(x.String())))
		b.ReportAllocs()
		for b.Loop() {
			_ = x.String()
		}
	})
	b.Run("one-leaf-changed", func(b *testing.B) {
		// What a keystroke leaves to do: one leaf's rendering is stale
		// (the leaf typed into), the rest are reused. Marked stale by
		// hand, so the essay stays the same from one iteration to the
		// next.
		var leaves []*seqNode
		var collect func(n *seqNode)
		collect = func(n *seqNode) {
			if n.leaf {
				leaves = append(leaves, n)
			}
			for _, k := range n.kids {
				collect(k)
			}
		}
		collect(x.t.seqIndex().root)
		b.ReportMetric(float64(len(leaves)), "leaves")
		b.SetBytes(int64(len(x.String())))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			leaves[i%len(leaves)].text.ok = false
			i++
			_ = x.String()
		}
	})
	b.Run("walk", func(b *testing.B) {
		b.SetBytes(int64(len(x.String())))
		b.ReportAllocs()
		for b.Loop() {
			_ = typeStringWalk(x.t)
		}
	})
}

func benchEssay(b *testing.B) *Text {
	d := NewDoc(Options{ClientID: 1})
	x := d.GetText("t")
	r := rand.New(rand.NewPCG(5, 6))
	cursor := 0
	for x.Len() < 9000 {
		if r.IntN(20) == 0 {
			cursor = r.IntN(x.Len() + 1)
		}
		word := []string{"the ", "essay ", "café ", "students ", "wrote ", "über ", "and "}[r.IntN(7)]
		if err := x.Insert(cursor, word, nil); err != nil {
			b.Fatal(err)
		}
		cursor += len(utf16.Encode([]rune(word)))
	}
	return x
}

// TestTextStringCacheMatchesWalk: a text's string comes from its index
// leaves' cached renderings (textcache.go); after every change, local or
// remote, it must equal walking the items. Three replicas edit texts of
// hundreds to thousands of items (many leaves) with emoji, lone surrogates
// and embeds, typing in runs (merged items) and at random spots, deleting
// ranges and exchanging updates (remote integration splits items, also
// inside surrogate pairs), some with garbage collection.
func TestTextStringCacheMatchesWalk(t *testing.T) {
	pieces := [][]uint16{
		{'a'}, {'b', 'c'}, {' '}, {0xe9}, {0xd83d, 0xde00}, {0xd83d}, {0xde00}, {'x', 0xd83d, 0xde80, 'y'},
		{'h', 'e', 'l', 'l', 'o', ' '}, {0x4e2d, 0x6587},
	}
	for seed := range uint64(12) {
		r := rand.New(rand.NewPCG(seed, 99))
		var docs []*Doc
		for i := range 3 {
			docs = append(docs, NewDoc(Options{ClientID: uint64(10 + i), GC: seed%2 == 0}))
		}
		var inbox [3][][]byte
		for i, d := range docs {
			d.OnUpdate(func(u []byte) {
				for j := range docs {
					if j != i {
						inbox[j] = append(inbox[j], u)
					}
				}
			})
		}
		cursor := [3]int{}
		check := func(step int, d *Doc) {
			t.Helper()
			typ := d.GetText("t").Type()
			if got, want := typeString(typ), typeStringWalk(typ); got != want {
				t.Fatalf("seed %d step %d client %d: cached %q\nwalk %q", seed, step, d.ClientID(), got, want)
			}
		}
		for step := range 1500 {
			i := r.IntN(3)
			d, x := docs[i], docs[i].GetText("t")
			switch op := r.IntN(20); {
			case op < 2 && len(inbox[i]) > 0:
				// Deliver some of the inbox, in order.
				n := 1 + r.IntN(len(inbox[i]))
				for _, u := range inbox[i][:n] {
					if err := d.ApplyUpdate(u); err != nil {
						t.Fatal(err)
					}
				}
				inbox[i] = inbox[i][n:]
			case op < 4 && x.Len() > 0:
				at := r.IntN(x.Len())
				if err := x.Delete(at, 1+r.IntN(min(8, x.Len()-at))); err != nil {
					t.Fatal(err)
				}
				cursor[i] = at
			case op < 5:
				if err := x.InsertEmbed(r.IntN(x.Len()+1), map[string]any{"image": "p.png"}, nil); err != nil {
					t.Fatal(err)
				}
			case op < 8:
				cursor[i] = r.IntN(x.Len() + 1) // a jump
				fallthrough
			default:
				// Typing at the cursor: runs merge into one item.
				at := min(cursor[i], x.Len())
				p := pieces[r.IntN(len(pieces))]
				if err := x.InsertUTF16(at, p); err != nil {
					t.Fatal(err)
				}
				cursor[i] = at + len(p)
			}
			check(step, d)
		}
		for i, d := range docs {
			for _, u := range inbox[i] {
				if err := d.ApplyUpdate(u); err != nil {
					t.Fatal(err)
				}
			}
			check(-1, d)
		}
		// No check that the replicas converge: splitting inside a
		// surrogate pair turns its half into U+FFFD on the replica that
		// splits (as yjs does), so with such edits they need not.
		leaves := 0
		var count func(n *seqNode)
		count = func(n *seqNode) {
			if n.leaf {
				leaves++
			}
			for _, k := range n.kids {
				count(k)
			}
		}
		count(docs[0].GetText("t").Type().seqIndex().root)
		if leaves < 4 {
			t.Fatalf("seed %d: only %d leaves; the test means to cross leaf boundaries", seed, leaves)
		}
	}
}

// TestTextJoinAcrossTinyLeaves: item lists cut into leaves of one to three
// items, so every arrangement of surrogates, embeds, formats, deleted and
// empty items lands on a leaf boundary: the leaves' renderings joined equal
// the walk. (From the review of the leaf renderings.)
func TestTextJoinAcrossTinyLeaves(t *testing.T) {
	units := []uint16{'a', 0xe9, 0xd83d, 0xde00, 0xdc00, 0xd800, 0xdbff, 0xdfff}
	r := rand.New(rand.NewPCG(11, 12))
	for round := range 100000 {
		typ, items, _ := randomItemList(r, units, 10, 4, true)
		x := &seqIndex{root: &seqNode{leaf: true}}
		leaf := x.root
		lim := 1 + r.IntN(3)
		for _, it := range items {
			if len(leaf.items) >= lim {
				nl := &seqNode{leaf: true}
				x.insertSibling(leaf, nl)
				leaf = nl
				lim = 1 + r.IntN(3)
			}
			leaf.items = append(leaf.items, it)
			it.leaf = leaf
			x.adjustNode(leaf, visLen(it))
		}
		typ.index = x
		if got, want := typeString(typ), typeStringWalk(typ); got != want {
			t.Fatalf("round %d: %q, want %q", round, got, want)
		}
	}
}

// TestTextRenderingsDoNotHoldDeletedText: pasted and deleted text leaves
// tombstones and their leaves; the leaves' renderings shrink with it.
func TestTextRenderingsDoNotHoldDeletedText(t *testing.T) {
	d := NewDoc(Options{ClientID: 1, GC: true})
	x := d.GetText("t")
	chunk := strings.Repeat("abcdefghij", 1<<12)
	for range 32 {
		if err := x.Insert(0, chunk, nil); err != nil {
			t.Fatal(err)
		}
		_ = x.String()
	}
	if err := x.Delete(0, x.Len()); err != nil {
		t.Fatal(err)
	}
	if s := x.String(); s != "" {
		t.Fatalf("after deleting everything: %d bytes", len(s))
	}
	held := 0
	var walk func(n *seqNode)
	walk = func(n *seqNode) {
		if n.leaf {
			held += cap(n.text.b)
		}
		for _, k := range n.kids {
			walk(k)
		}
	}
	walk(x.t.seqIndex().root)
	if held > 64<<10 {
		t.Fatalf("an empty text's leaves hold %d bytes of renderings", held)
	}
}
