package merge

import "testing"

// TestInsertionsAtOnePoint: two different insertions at one point are both
// kept, but one that holds the other on word boundaries is the text of
// both (the saver's text grew since an earlier save of it reached the
// document, or the same save came again): the shared text appears once.
// Two words are not run into one.
func TestInsertionsAtOnePoint(t *testing.T) {
	for _, c := range []struct{ base, ours, theirs, want string }{
		// The current text holds the save's first autosave; the save holds more.
		{"Intro.\n", "Intro.\nThe river is long.\n", "Intro.\nThe river is long.\nIt floods.\n", "Intro.\nThe river is long.\nIt floods.\n"},
		// The same save again: the current text holds it after another's.
		{"My essay.", "My essay. Teacher note. Rivers flow.", "My essay. Rivers flow.", "My essay. Teacher note. Rivers flow."},
		{"", "Hello", "Hello world", "Hello world"},
		// Independent insertions: both, ours first.
		{"A.", "A. B.", "A. C.", "A. B. C."},
		// Not held on a word boundary: "cat" is not the word in "concatenate".
		{"x ", "x concatenate", "x cat", "x concatenate cat"},
		{"", "Hello", "World", "Hello World"},
		{"", "Hello ", "World", "Hello World"},
		{"(", "(a", "(b", "(a b"},
		{"x", "x.", "x!", "x.!"}, // not words: nothing between them
	} {
		r := Three(c.base, c.ours, c.theirs)
		if r.Conflict || r.Text != c.want {
			t.Errorf("Three(%q, %q, %q) = %q (conflict %v), want %q", c.base, c.ours, c.theirs, r.Text, r.Conflict, c.want)
		}
	}
}

// TestShortInsertionOfAnotherUserIsKept: a short insertion (a full stop,
// a number) found inside a longer one at the same point is someone's own
// edit, not the same text: both are kept. Found by the review of this
// session's diff.
func TestShortInsertionOfAnotherUserIsKept(t *testing.T) {
	for _, c := range []struct{ base, ours, theirs, want string }{
		{"We went home", "We went home.", "We went home Then we left.", "We went home. Then we left."},
		{"Total:", "Total: 5", "Total: 10 apples, 5 pears", "Total: 5 10 apples, 5 pears"},
	} {
		if r := Three(c.base, c.ours, c.theirs); r.Text != c.want && !r.Conflict {
			t.Errorf("Three(%q, %q, %q) = %q, merged without conflict: the current text's insertion is gone (want %q or a conflict)", c.base, c.ours, c.theirs, r.Text, c.want)
		}
	}
}
