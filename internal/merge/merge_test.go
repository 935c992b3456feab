package merge

import "testing"

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
		{"insert same point", "ab", "aXb", "aYb", "aXYb", false},
		{"overlap", "hello world", "hello there", "hello earth", "hello there", true},
		{"utf8", "héllo", "hállo", "héllo!", "hállo!", false},
		{"delete vs edit", "one two three", "one three", "one TWO three", "one three", true},
	} {
		got := Three(tc.base, tc.ours, tc.theirs)
		if got.Text != tc.want || got.Conflict != tc.conflict {
			t.Errorf("%s: Three(%q,%q,%q) = %+v, want %q conflict=%v", tc.name, tc.base, tc.ours, tc.theirs, got, tc.want, tc.conflict)
		}
	}
}
