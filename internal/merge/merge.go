// Package merge three-way merges texts: a stale-base save's text (theirs)
// against the current text (ours) and the base both started from.
//
// It is diff3 over word tokens (runs of letters and digits, runs of
// whitespace, single other characters): each side is diffed against base
// (Myers), regions where both sides agree with base are kept, a region only
// one side changed takes that side's change, two insertions at the same
// point are both kept (ours first; one that holds the other is both, see
// bothInserted), and a region both sides changed differently is a
// conflict. On a conflict the caller keeps ours and
// preserves theirs, so nothing is ever dropped. Inputs too different for
// the token diff's budget fall back to one replaced span per side. The
// package does no I/O.
package merge

import (
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Result of a three-way merge.
type Result struct {
	Text     string
	Conflict bool
}

// Three merges ours and theirs, both derived from base.
func Three(base, ours, theirs string) Result {
	switch {
	case ours == theirs, theirs == base:
		return Result{Text: ours}
	case ours == base:
		return Result{Text: theirs}
	}
	ids := map[string]int{}
	sb, so, st := strs(base), strs(ours), strs(theirs)
	tb, to, tt := tokens(sb, ids), tokens(so, ids), tokens(st, ids)
	ma, okA := match(tb, to)
	mb, okB := match(tb, tt)
	if !okA || !okB {
		return spans(base, ours, theirs)
	}
	r := merge3(sb, so, st, tb, to, tt, ma, mb)
	if !r.Conflict {
		return r
	}
	// A diff is one alignment of many: an insertion or deletion next to
	// a token equal to its own first (or last) can be placed on either
	// side of it. The diff's choice can put one side's insertion against
	// the other side's change ("ten." to "ten. Well done." aligned as
	// ". Well done" before the base's full stop, beside "ten" changed to
	// "TEN"), a conflict of edits to different places. Each side's edits
	// slid as far right, or left, as they go are tried too; the first
	// alignment that merges without a conflict is taken.
	alts := [][]int{ma, slideRight(ma, tb, to), slideLeft(ma, tb, to)}
	blts := [][]int{mb, slideRight(mb, tb, tt), slideLeft(mb, tb, tt)}
	for x, a := range alts {
		for y, b := range blts {
			if x == 0 && y == 0 {
				continue
			}
			if r2 := merge3(sb, so, st, tb, to, tt, a, b); !r2.Conflict {
				return r2
			}
		}
	}
	return r
}

// merge3 is diff3 of the token lists tb (base), to (ours) and tt (theirs),
// their strings sb, so, st, with ma and mb matching base's tokens to
// ours' and theirs'.
func merge3(sb, so, st []string, tb, to, tt []int, ma, mb []int) Result {
	ours := join(so)
	var out strings.Builder
	conflict := false
	i, j, k := 0, 0, 0
	nb := len(tb)
	emit := func(bi, bj, oi, oj, ti, tj int) {
		b, o, t := join(sb[bi:bj]), join(so[oi:oj]), join(st[ti:tj])
		switch {
		case o == b:
			out.WriteString(t)
		case t == b, o == t:
			out.WriteString(o)
		case bi == bj:
			out.WriteString(bothInserted(o, t))
		default:
			conflict = true
		}
	}
	for {
		l := 0
		for i+l < nb && ma[i+l] == j+l && mb[i+l] == k+l {
			l++
		}
		if l > 0 {
			out.WriteString(join(sb[i : i+l]))
			i, j, k = i+l, j+l, k+l
			continue
		}
		m := i
		for m < nb && (ma[m] < 0 || mb[m] < 0) {
			m++
		}
		if m == nb {
			emit(i, nb, j, len(to), k, len(tt))
			break
		}
		emit(i, m, j, ma[m], k, mb[m])
		i, j, k = m, ma[m], mb[m]
	}
	if conflict {
		return Result{Text: ours, Conflict: true}
	}
	return Result{Text: out.String()}
}

// slideRight is the matching m of base tokens a to b with every pure
// insertion (tokens of b between two base tokens matched next to each
// other) and every pure deletion (base tokens between two matched to b
// tokens next to each other) moved as far right as equal tokens allow:
// insertion X before a matched token e, X's first token e, is the same
// as e followed by X's rest and e. m is not changed.
func slideRight(m, a, b []int) []int {
	out := append([]int(nil), m...)
	// Insertions: a[i] matched to j1, a[i-1] to j0 (or i = 0, j0 = -1).
	for i := range out {
		j1 := out[i]
		if j1 < 0 {
			continue
		}
		j0 := -1
		if i > 0 {
			if out[i-1] < 0 {
				continue
			}
			j0 = out[i-1]
		}
		if j1-j0 > 1 && b[j0+1] == a[i] {
			out[i] = j0 + 1
		}
	}
	// Deletions: a[i0+1 .. i1-1] unmatched, a[i0] matched to j, a[i1] to
	// j+1.
	for i0 := 0; i0 < len(out); i0++ {
		if out[i0] < 0 {
			continue
		}
		i1 := i0 + 1
		for i1 < len(out) && out[i1] < 0 {
			i1++
		}
		if i1 == len(out) || i1 == i0+1 || out[i1] != out[i0]+1 {
			continue
		}
		if a[i0+1] == a[i1] {
			out[i0+1], out[i1] = out[i1], -1
		}
	}
	return out
}

// slideLeft is slideRight's mirror: every pure insertion and deletion
// moved as far left as equal tokens allow.
func slideLeft(m, a, b []int) []int {
	out := append([]int(nil), m...)
	for i := len(out) - 1; i >= 0; i-- {
		j0 := out[i]
		if j0 < 0 {
			continue
		}
		j1 := len(b)
		if i < len(out)-1 {
			if out[i+1] < 0 {
				continue
			}
			j1 = out[i+1]
		}
		if j1-j0 > 1 && b[j1-1] == a[i] {
			out[i] = j1 - 1
		}
	}
	for i1 := len(out) - 1; i1 >= 0; i1-- {
		if out[i1] < 0 {
			continue
		}
		i0 := i1 - 1
		for i0 >= 0 && out[i0] < 0 {
			i0--
		}
		if i0 < 0 || i0 == i1-1 || out[i1] != out[i0]+1 {
			continue
		}
		if a[i1-1] == a[i0] {
			out[i1-1], out[i0] = out[i0], -1
		}
	}
	return out
}

func join(s []string) string { return strings.Join(s, "") }

// bothInserted is the text of two different insertions at one point,
// ours o and theirs t. One that begins or ends with the other whole, on
// word boundaries, where the other holds a word, is the text of both: the
// save's text grew since an earlier save of it reached the document (its
// answer lost, the editor's next autosave still on the old base), or the
// same stale save came again without its idempotency key. Writing both
// would repeat the shared text. Otherwise both are kept, ours first, with
// a space between them where they would run two words into one: a short
// insertion (a full stop, a number) found somewhere inside a longer one
// is someone's own edit, not the same text.
func bothInserted(o, t string) string {
	switch {
	case o == "":
		return t
	case t == "":
		return o
	case len(o) >= len(t) && holds(o, t):
		return o
	case len(t) > len(o) && holds(t, o):
		return t
	}
	last, _ := utf8.DecodeLastRuneInString(o)
	first, _ := utf8.DecodeRuneInString(t)
	if class(last) == 1 && class(first) == 1 {
		return o + " " + t
	}
	return o + t
}

// holds reports whether s begins or ends with sub, which holds a word, on
// a token boundary (a word is not held by a longer word it is part of).
func holds(s, sub string) bool {
	if !hasWord(sub) {
		return false
	}
	return strings.HasPrefix(s, sub) && boundary(s, len(sub)) ||
		strings.HasSuffix(s, sub) && boundary(s, len(s)-len(sub))
}

// hasWord reports whether s holds a letter or a digit.
func hasWord(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return class(r) == 1 })
}

// boundary reports whether byte offset i of s is between two tokens (see
// strs): the ends, or two runes not of one letter-digit or whitespace run.
func boundary(s string, i int) bool {
	if i == 0 || i == len(s) {
		return true
	}
	before, _ := utf8.DecodeLastRuneInString(s[:i])
	after, _ := utf8.DecodeRuneInString(s[i:])
	c := class(before)
	return c == 0 || c != class(after)
}

func class(r rune) int {
	switch {
	case unicode.IsLetter(r) || unicode.IsDigit(r):
		return 1
	case unicode.IsSpace(r):
		return 2
	}
	return 0
}

func strs(s string) []string {
	out := make([]string, 0, len(s)/4+1) // prose: about a word and a space per 6 bytes
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		c := class(r)
		if c != 0 {
			for n < len(s) {
				r2, m := utf8.DecodeRuneInString(s[n:])
				if class(r2) != c {
					break
				}
				n += m
			}
		}
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

// tokens numbers the tokens ts (one number per distinct token in ids).
func tokens(ts []string, ids map[string]int) []int {
	out := make([]int, len(ts))
	for i, t := range ts {
		id, ok := ids[t]
		if !ok {
			id = len(ids)
			ids[t] = id
		}
		out[i] = id
	}
	return out
}

// maxEdits bounds the Myers search (memory grows with its square).
const maxEdits = 2000

// match returns, for each token of a, the index of the token of b it is
// matched to in a longest common subsequence (-1 if none); false when the
// texts differ by more than maxEdits tokens.
func match(a, b []int) ([]int, bool) {
	n, m := len(a), len(b)
	ma := make([]int, n)
	for i := range ma {
		ma[i] = -1
	}
	// Common prefix and suffix are matched directly.
	p := 0
	for p < n && p < m && a[p] == b[p] {
		ma[p] = p
		p++
	}
	s := 0
	for s < n-p && s < m-p && a[n-1-s] == b[m-1-s] {
		ma[n-1-s] = m - 1 - s
		s++
	}
	a2, b2 := a[p:n-s], b[p:m-s]
	N, M := len(a2), len(b2)
	if N == 0 || M == 0 {
		return ma, true
	}
	max := N + M
	if max > maxEdits {
		max = maxEdits
	}
	off := max + 1
	v := make([]int, 2*max+3)
	// trace[d] is v as step d found it, for the backtrack: only the
	// diagonals step d reads (-d-1 .. d+1), as int32 (a token index),
	// not the whole vector: at the full budget that was about 64 MB a
	// call, and a stale save makes two.
	var trace [][]int32
	found := false
	var D int
	for d := 0; d <= max && !found; d++ {
		w := make([]int32, 2*d+3)
		for i := range w {
			w[i] = int32(v[off-d-1+i])
		}
		trace = append(trace, w)
		for kk := -d; kk <= d; kk += 2 {
			var x int
			if kk == -d || (kk != d && v[off+kk-1] < v[off+kk+1]) {
				x = v[off+kk+1]
			} else {
				x = v[off+kk-1] + 1
			}
			y := x - kk
			for x < N && y < M && a2[x] == b2[y] {
				x++
				y++
			}
			v[off+kk] = x
			if x >= N && y >= M {
				found, D = true, d
				break
			}
		}
	}
	if !found {
		return nil, false
	}
	// Backtrack through the saved V arrays.
	x, y := N, M
	for d := D; d > 0; d-- {
		pv := trace[d]
		at := func(k int) int { return int(pv[k+d+1]) } // v[off+k] when step d began
		kk := x - y
		var pk int
		if kk == -d || (kk != d && at(kk-1) < at(kk+1)) {
			pk = kk + 1
		} else {
			pk = kk - 1
		}
		px := at(pk)
		py := px - pk
		for x > px && y > py {
			x--
			y--
			ma[p+x] = p + y
		}
		x, y = px, py
	}
	for x > 0 && y > 0 {
		x--
		y--
		ma[p+x] = p + y
	}
	return ma, true
}

// spans is the fallback: one replaced span per side.
func spans(base, ours, theirs string) Result {
	a, b := diff(base, ours), diff(base, theirs)
	first, second := a, b
	if b.start < a.start || (b.start == a.start && b.end < a.end) {
		first, second = b, a
	}
	switch {
	case first.start == second.start && first.end == second.end && first.start == first.end:
		return Result{Text: base[:a.start] + bothInserted(a.repl, b.repl) + base[a.end:]}
	case first.end > second.start, first.start == second.start && first.end == second.end:
		return Result{Text: ours, Conflict: true}
	}
	return Result{Text: base[:first.start] + first.repl + base[first.end:second.start] + second.repl + base[second.end:]}
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

// CommonWords compares a and b word by word (runs of letters and digits):
// how many words of each a longest common subsequence pairs up, and how
// many words each has. ok is false when they differ too much to tell
// cheaply (the same bound as Three's).
func CommonWords(a, b string) (common, wordsA, wordsB int, ok bool) {
	ids := map[string]int{}
	wa, wb := words(a, ids), words(b, ids)
	ma, ok := match(wa, wb)
	if !ok {
		return 0, len(wa), len(wb), false
	}
	for _, j := range ma {
		if j >= 0 {
			common++
		}
	}
	return common, len(wa), len(wb), true
}

// words is tokens keeping only the words.
func words(s string, ids map[string]int) []int {
	var out []int
	for _, t := range strs(s) {
		if r, _ := utf8.DecodeRuneInString(t); class(r) != 1 {
			continue
		}
		id, ok := ids[t]
		if !ok {
			id = len(ids)
			ids[t] = id
		}
		out = append(out, id)
	}
	return out
}

// Hunk is one replaced span of a two-way diff in UTF-16 units: a[From:To]
// becomes b[BFrom:BTo].
type Hunk struct{ From, To, BFrom, BTo int }

// DiffUTF16 diffs two UTF-16 texts word by word (the tokens of Three) and
// returns the spans that differ, in order; a surrogate pair is never
// split. ok is false when they differ by more than the diff's budget.
func DiffUTF16(a, b []uint16) (hunks []Hunk, ok bool) {
	ids := map[string]int{}
	ta, pa := tokens16(a, ids)
	tb, pb := tokens16(b, ids)
	ma, ok := match(ta, tb)
	if !ok {
		return nil, false
	}
	i, j := 0, 0
	for i < len(ta) || j < len(tb) {
		if i < len(ta) && j < len(tb) && ma[i] == j {
			i, j = i+1, j+1
			continue
		}
		i0, j0 := i, j
		for i < len(ta) && ma[i] < 0 {
			i++
		}
		if i < len(ta) {
			j = ma[i] // b's tokens before the next common one are inserted
		} else {
			j = len(tb)
		}
		hunks = append(hunks, Hunk{From: pa[i0], To: pa[i], BFrom: pb[j0], BTo: pb[j]})
	}
	return hunks, true
}

// tokens16 splits s as strs splits a string, numbering the tokens in ids;
// pos[k] is where token k starts (pos[len] = len(s)).
func tokens16(s []uint16, ids map[string]int) (toks, pos []int) {
	rune16 := func(i int) (rune, int) {
		if i+1 < len(s) && utf16.IsSurrogate(rune(s[i])) && s[i] < 0xdc00 && s[i+1] >= 0xdc00 && s[i+1] <= 0xdfff {
			return utf16.DecodeRune(rune(s[i]), rune(s[i+1])), 2
		}
		return rune(s[i]), 1
	}
	key := make([]byte, 0, 64)
	for i := 0; i < len(s); {
		r, n := rune16(i)
		if c := class(r); c != 0 {
			for i+n < len(s) {
				r2, m := rune16(i + n)
				if class(r2) != c {
					break
				}
				n += m
			}
		}
		key = key[:0]
		for _, u := range s[i : i+n] {
			key = append(key, byte(u), byte(u>>8))
		}
		id, ok := ids[string(key)]
		if !ok {
			id = len(ids)
			ids[string(key)] = id
		}
		toks, pos = append(toks, id), append(pos, i)
		i += n
	}
	return toks, append(pos, len(s))
}
