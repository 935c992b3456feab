package merge

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// BenchmarkThreeDivergent merges a stale save of a 500 KiB essay whose
// sides each differ from the base by about a thousand words spread over
// the text (near the token diff's budget, where its memory peaks): what
// one such save costs the group commit it runs in, in time and bytes.
func BenchmarkThreeDivergent(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the river village teacher history experiment argument evidence chapter character summary energy planet island")
	base := make([]string, 0, 80000)
	for n := 0; n < 500<<10; {
		w := words[r.IntN(len(words))]
		base = append(base, w)
		n += len(w) + 1
	}
	edit := func(seed uint64) string {
		r := rand.New(rand.NewPCG(seed, 3))
		out := append([]string(nil), base...)
		for range 450 {
			out[r.IntN(len(out))] = "changed"
		}
		return strings.Join(out, " ")
	}
	bs, ours, theirs := strings.Join(base, " "), edit(5), edit(6)
	b.SetBytes(int64(len(bs)))
	b.ReportAllocs()
	for b.Loop() {
		Three(bs, ours, theirs)
	}
}
