package merge

import (
	"math/rand/v2"
	"slices"
	"testing"
	"unicode/utf16"
)

// TestDiffUTF16: applying the hunks to a gives b, for random texts of
// words, spaces, punctuation, emoji (surrogate pairs) and lone
// surrogates; hunks are in order, apart, and never split a pair. Two
// changes far apart are two hunks, with the text between them untouched.
func TestDiffUTF16(t *testing.T) {
	a := utf16.Encode([]rune("The first sentence. The color is red. The last sentence."))
	b := utf16.Encode([]rune("The opening sentence. The color is red. The final sentence."))
	h, ok := DiffUTF16(a, b)
	if !ok || len(h) != 2 {
		t.Fatalf("two words changed far apart: %v %v, want two hunks", h, ok)
	}
	pieces := [][]uint16{
		{'a'}, {'b', 'c'}, {' '}, {'.'}, {0xe9}, {0xd83d, 0xde00}, {0xd83d}, {0xde00}, {'\n'}, {0x4e2d, 0x6587},
		utf16.Encode([]rune("word")), utf16.Encode([]rune("other")),
	}
	r := rand.New(rand.NewPCG(7, 8))
	text := func(n int) []uint16 {
		var s []uint16
		for range n {
			s = append(s, pieces[r.IntN(len(pieces))]...)
		}
		return s
	}
	for range 3000 {
		a := text(r.IntN(40))
		b := slices.Clone(a)
		for range r.IntN(4) {
			i := r.IntN(len(b) + 1)
			j := i + r.IntN(len(b)-i+1)
			b = slices.Concat(b[:i], text(r.IntN(4)), b[j:])
		}
		if r.IntN(5) == 0 {
			b = text(r.IntN(40))
		}
		hs, ok := DiffUTF16(a, b)
		if !ok {
			t.Fatalf("small texts over budget: %x %x", a, b)
		}
		var out []uint16
		at := 0
		for k, h := range hs {
			if h.From < at || h.To < h.From || (k > 0 && h.From == at) {
				t.Fatalf("%x -> %x: hunks out of order or touching: %v", a, b, hs)
			}
			for _, p := range []int{h.From, h.To} {
				if p > 0 && p < len(a) && a[p-1] >= 0xd800 && a[p-1] < 0xdc00 && a[p] >= 0xdc00 && a[p] <= 0xdfff {
					t.Fatalf("%x -> %x: hunk %v splits a surrogate pair", a, b, h)
				}
			}
			out = append(append(out, a[at:h.From]...), b[h.BFrom:h.BTo]...)
			at = h.To
		}
		out = append(out, a[at:]...)
		if !slices.Equal(out, b) {
			t.Fatalf("%x -> %x: hunks %v give %x", a, b, hs, out)
		}
	}
}
