// Package merge three-way merges texts: a stale-base save's text (theirs)
// against the current text (ours) and the base both started from.
//
// Each side's change against base is reduced to one replaced span (common
// prefix and suffix removed, on whole runes). Spans that do not overlap are
// both applied; two insertions at the same point are both kept, ours first.
// Overlapping spans are a conflict: the caller keeps ours and preserves
// theirs, so nothing is ever dropped. The package does no I/O.
package merge

import "unicode/utf8"

// Result of a three-way merge.
type Result struct {
	Text     string
	Conflict bool
}

type hunk struct {
	start, end int // byte span in base
	repl       string
}

func diff(base, x string) hunk {
	p := 0
	for p < len(base) && p < len(x) && base[p] == x[p] {
		p++
	}
	for p > 0 && p < len(base) && !utf8.RuneStart(base[p]) {
		p--
	}
	s := 0
	for s < len(base)-p && s < len(x)-p && base[len(base)-1-s] == x[len(x)-1-s] {
		s++
	}
	for s > 0 && !utf8.RuneStart(base[len(base)-s]) {
		s--
	}
	return hunk{p, len(base) - s, x[p : len(x)-s]}
}

// Three merges ours and theirs, both derived from base.
func Three(base, ours, theirs string) Result {
	switch {
	case ours == theirs, theirs == base:
		return Result{Text: ours}
	case ours == base:
		return Result{Text: theirs}
	}
	a, b := diff(base, ours), diff(base, theirs)
	first, second := a, b
	if b.start < a.start || (b.start == a.start && b.end < a.end && a.start != a.end) {
		first, second = b, a
	}
	if first.end > second.start {
		return Result{Text: ours, Conflict: true}
	}
	// Both pure deletions/replacements that touch at a point are fine;
	// identical spans with different text conflict.
	if first.start == second.start && first.end == second.end && first.start != first.end {
		return Result{Text: ours, Conflict: true}
	}
	if first.start == second.start && first.end == second.end && first.start == first.end {
		// Two insertions at one point: ours first.
		return Result{Text: base[:a.start] + a.repl + b.repl + base[a.end:]}
	}
	return Result{Text: base[:first.start] + first.repl + base[first.end:second.start] + second.repl + base[second.end:]}
}
