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
		typ := &Type{}
		var want []uint16
		var last *Item
		for range r.IntN(12) {
			s := make([]uint16, r.IntN(6))
			for i := range s {
				s[i] = units[r.IntN(len(units))]
			}
			it := &Item{Content: &ContentString{s: s}, Len: len(s), kind: kindItem, info: flagCountable}
			switch r.IntN(6) {
			case 0:
				it.info |= flagDeleted
			case 1:
				it.Content, it.Len = &ContentEmbed{JSON: "{}"}, 1
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
		}
		got := typeString(typ, nil)
		if w := string(appendUTF8(nil, want)); got != w {
			t.Fatalf("round %d: %q, want %q", round, got, w)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("round %d: invalid UTF-8 %q", round, got)
		}
	}
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
func BenchmarkTextString(b *testing.B) {
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
	b.SetBytes(int64(len(x.String())))
	b.ReportAllocs()
	for b.Loop() {
		_ = x.String()
	}
}
