package yjs

import (
	"math/rand"
	"slices"
	"testing"
)

// TestContentStringSharing drives the in-place paths of ContentString
// (split halves sharing one array, appends into spare capacity, prepends
// into room in front) with random operations on a row of pieces, as items
// are split, joined, typed into and deleted from, and checks after every
// step that no piece's text changed behind its back.
func TestContentStringSharing(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	units := func(n int) []uint16 {
		u := make([]uint16, n)
		for i := range u {
			u[i] = uint16('a' + rng.Intn(26))
		}
		return u
	}
	for round := 0; round < 200; round++ {
		pieces := []*ContentString{{s: units(1 + rng.Intn(8))}}
		model := [][]uint16{slices.Clone(pieces[0].s)}
		for step := 0; step < 300; step++ {
			i := rng.Intn(len(pieces))
			c := pieces[i]
			switch op := rng.Intn(6); {
			case op == 0 && len(c.s) > 1: // split
				off := 1 + rng.Intn(len(c.s)-1)
				r := c.splice(off).(*ContentString)
				pieces = slices.Insert(pieces, i+1, r)
				model = slices.Insert(model, i+1, slices.Clone(model[i][off:]))
				model[i] = model[i][:off:off]
			case op == 1 && i+1 < len(pieces): // merge the right neighbour in
				c.mergeWith(pieces[i+1])
				model[i] = append(model[i], model[i+1]...)
				pieces = slices.Delete(pieces, i+1, i+2)
				model = slices.Delete(model, i+1, i+2)
			case op == 2: // type at the end
				u := units(1 + rng.Intn(5))
				if rng.Intn(2) == 0 {
					c.appendUnits(u)
				} else {
					copy(c.grow(len(u)), u)
				}
				model[i] = append(model[i], u...)
			case op == 3 && i+1 < len(pieces) && len(c.s) > 1: // backspace join
				off := 1 + rng.Intn(len(c.s)-1)
				pieces[i+1].prepend(c.cutTail(off))
				model[i+1] = append(slices.Clone(model[i][off:]), model[i+1]...)
				model[i] = model[i][:off:off]
			case op == 4 && i+1 < len(pieces) && len(pieces[i+1].s) > 1: // forward delete join
				n := 1 + rng.Intn(len(pieces[i+1].s)-1)
				c.extend(pieces[i+1].cutHead(n), false)
				model[i] = append(model[i], model[i+1][:n]...)
				model[i+1] = model[i+1][n:]
			case op == 5: // a fresh piece
				u := units(1 + rng.Intn(4))
				pieces = slices.Insert(pieces, i+1, &ContentString{s: u})
				model = slices.Insert(model, i+1, slices.Clone(u))
			}
			for j := range pieces {
				if !slices.Equal(pieces[j].s, model[j]) {
					t.Fatalf("round %d step %d: piece %d is %q, want %q", round, step, j, string(utf16ToRunes(pieces[j].s)), string(utf16ToRunes(model[j])))
				}
			}
		}
	}
}

func utf16ToRunes(u []uint16) []rune {
	r := make([]rune, len(u))
	for i, x := range u {
		r[i] = rune(x)
	}
	return r
}
