package merge

import (
	"strings"
	"testing"
)

func TestThree(t *testing.T) {
	for _, tc := range []struct {
		name, base, ours, theirs, want string
		conflict                       bool
	}{
		{"same", "abc", "abX", "abX", "abX", false},
		{"only ours", "abc", "abX", "abc", "abX", false},
		{"only theirs", "abc", "abc", "Xbc", "Xbc", false},
		{"disjoint", "hello world", "Hello world", "hello world!", "Hello world!", false},
		{"disjoint reversed", "hello world", "hello world!", "Hello world", "Hello world!", false},
		{"insert same point", "a b", "a X b", "a Y b", "a X Y b", false},
		{"overlap", "hello world", "hello there", "hello earth", "hello there", true},
		{"utf8", "héllo wörld", "hállo wörld", "héllo wörld!", "hállo wörld!", false},
		{"delete vs edit", "one two three", "one three", "one TWO three", "one three", true},
		// One side edits both ends, the other the middle: no conflict.
		{"both ends vs middle",
			"The cat sat on the mat. It was warm. The end.",
			"A cat sat on the mat. It was warm. The end!",
			"The cat sat on the mat. It was very warm. The end.",
			"A cat sat on the mat. It was very warm. The end!", false},
		{"paragraphs", "p1\n\np2\n\np3\n", "p1 edited\n\np2\n\np3\n", "p1\n\np2\n\np3 edited\n", "p1 edited\n\np2\n\np3 edited\n", false},
	} {
		got := Three(tc.base, tc.ours, tc.theirs)
		if got.Text != tc.want || got.Conflict != tc.conflict {
			t.Errorf("%s: Three(%q,%q,%q) = %+v, want %q conflict=%v", tc.name, tc.base, tc.ours, tc.theirs, got, tc.want, tc.conflict)
		}
	}
}

func TestThreeLargeFallsBack(t *testing.T) {
	base := strings.Repeat("word ", 20000)
	ours := "X" + base
	theirs := strings.Repeat("other ", 20000)
	got := Three(base, ours, theirs)
	if got.Conflict || got.Text != "X"+theirs {
		t.Errorf("large rewrite: conflict=%v", got.Conflict)
	}
	got = Three(base, ours, base+"Y")
	if got.Conflict || got.Text != ours+"Y" {
		t.Errorf("large disjoint: %v", got.Conflict)
	}
}

func FuzzThree(f *testing.F) {
	f.Add("a b c", "a B c", "a b C")
	f.Fuzz(func(t *testing.T, base, ours, theirs string) {
		r := Three(base, ours, theirs)
		if r.Conflict && r.Text != ours {
			t.Fatal("a conflict must keep ours")
		}
		if ours == base && r.Text != theirs || theirs == base && r.Text != ours {
			t.Fatal("a one-sided change must be taken")
		}
	})
}

func TestCommonWords(t *testing.T) {
	for _, c := range []struct {
		a, b           string
		common, na, nb int
	}{
		{"My essay about big rivers.", "My essay about rivers.", 4, 5, 4},
		{"Rivers flow! Lakes rest!", "Rivers flow. Lakes rest.", 4, 4, 4},
		{"the dog", "The fox and the dog", 2, 2, 5},
		{"", "words here", 0, 0, 2},
		{"... !!!", "?", 0, 0, 0},
	} {
		common, na, nb, ok := CommonWords(c.a, c.b)
		if !ok || common != c.common || na != c.na || nb != c.nb {
			t.Errorf("CommonWords(%q, %q) = %d, %d, %d, %v; want %d, %d, %d", c.a, c.b, common, na, nb, ok, c.common, c.na, c.nb)
		}
	}
}

// TestThreeEditsBesideAnEqualTokenAreNotAConflict: an insertion or a
// deletion next to a token equal to its own first or last can be aligned
// on either side of it. The diff put the teacher's " Well done." as ". Well
// done" before the base's full stop, beside the student's "ten" made
// "TEN": a conflict, and her fix was only preserved, though the two edited
// different places (found by review through the REST API, where the same
// save merged cleanly without the teacher's unrelated "Counting. " at the
// top). The cases "insertion after the last word's full stop", "the same,
// sides swapped" and "insertion ending with the token before the other's
// change" were conflicts before; the others merged before and must still.
func TestThreeEditsBesideAnEqualTokenAreNotAConflict(t *testing.T) {
	for _, tc := range []struct{ name, base, ours, theirs, want string }{
		{"insertion after the last word's full stop",
			"One two nine ten.", "Counting. One two nine ten. Well done.", "One two nine TEN.",
			"Counting. One two nine TEN. Well done."},
		{"the same, sides swapped",
			"One two nine ten.", "One two nine TEN.", "Counting. One two nine ten. Well done.",
			"Counting. One two nine TEN. Well done."},
		{"insertion ending with the token before the other's change",
			"A. B c", "A. New. B c", "A. b c",
			"A. New. b c"},
		{"insertion before the first word",
			"Alpha beta gamma.", "Alpha beta gamma. Alpha and omega.", "ALPHA beta gamma.",
			"ALPHA beta gamma. Alpha and omega."},
		{"insertion at the front repeating the first word",
			"Alpha beta.", "Intro. Alpha beta.", "Alpha BETA.",
			"Intro. Alpha BETA."},
		{"deletion beside an equal token",
			"a b. c. d", "X a b. d", "a b. c. D",
			"X a b. D"},
	} {
		got := Three(tc.base, tc.ours, tc.theirs)
		if got.Conflict || got.Text != tc.want {
			t.Errorf("%s: Three(%q, %q, %q) = %+v, want %q", tc.name, tc.base, tc.ours, tc.theirs, got, tc.want)
		}
	}
}
