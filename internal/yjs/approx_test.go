package yjs_test

import (
	"math/rand"
	"runtime"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestApproxBytesTracksTheHeap: a syncer's cache of documents is bounded
// by ApproxBytes, so the estimate must follow what documents really hold:
// text typed in one go (few structs); text split into a struct per
// character (deleting every other one), built locally or decoded from an
// update; a document written over 1,000 sessions (a client each); an
// essay typed key by key by four students; and a paste deleted again (the
// syncer keeps deleted content: its documents do not collect garbage).
// The last three were far under: 21x, 0.8x and 685x (review).
func TestApproxBytesTracksTheHeap(t *testing.T) {
	check := func(what string, build func() *yjs.Doc) {
		t.Helper()
		before := heapAlloc()
		d := build()
		held := int64(heapAlloc()) - int64(before)
		est := d.ApproxBytes()
		t.Logf("%s: %d structs, text %d: heap +%d B, estimate %d B (%.2f)", what, d.StructCount(), d.GetText("content").Len(), held, est, float64(est)/float64(held))
		if float64(est) < 0.6*float64(held) || float64(est) > 1.6*float64(held) {
			t.Errorf("%s: estimate %d B for a document holding %d B", what, est, held)
		}
		runtime.KeepAlive(d)
	}
	const n = 50_000
	split := func() *yjs.Doc {
		d := yjs.NewDoc(yjs.Options{ClientID: 7})
		x := d.GetText("content")
		if err := x.Insert(0, strings.Repeat("ab", n), nil); err != nil {
			t.Fatal(err)
		}
		for i := n - 1; i >= 0; i-- {
			if err := x.Delete(2*i+1, 1); err != nil {
				t.Fatal(err)
			}
		}
		_ = x.String()
		return d
	}
	check("split locally", split)
	up := split().EncodeStateAsUpdate(nil)
	check("split, decoded", func() *yjs.Doc {
		d := yjs.NewDoc(yjs.Options{ClientID: 8})
		if err := d.ApplyUpdate(up); err != nil {
			t.Fatal(err)
		}
		_ = d.GetText("content").String()
		return d
	})
	check("1000 sessions, a word each", func() *yjs.Doc {
		d := yjs.NewDoc(yjs.Options{ClientID: 1})
		for i := range 1000 {
			c := yjs.NewDoc(yjs.Options{ClientID: uint64(1000 + i)})
			var u []byte
			c.OnUpdate(func(b []byte) { u = b })
			if err := c.ApplyUpdate(d.EncodeStateAsUpdate(nil)); err != nil {
				t.Fatal(err)
			}
			x := c.GetText("content")
			if err := x.Insert(x.Len(), "word ", nil); err != nil {
				t.Fatal(err)
			}
			if err := d.ApplyUpdate(u); err != nil {
				t.Fatal(err)
			}
		}
		return d
	})
	check("essay by four typists", func() *yjs.Doc {
		r := rand.New(rand.NewSource(1))
		docs := make([]*yjs.Doc, 4)
		for i := range docs {
			docs[i] = yjs.NewDoc(yjs.Options{ClientID: uint64(10 + i)})
		}
		words := strings.Fields("a student writes about the water cycle and her friends add a sentence here and there")
		for n := 0; n < 9000; {
			c := docs[r.Intn(len(docs))]
			x := c.GetText("content")
			pos := r.Intn(x.Len() + 1)
			w := words[r.Intn(len(words))] + " "
			for i := range len(w) {
				if err := x.Insert(pos+i, w[i:i+1], nil); err != nil {
					t.Fatal(err)
				}
			}
			n += len(w)
			if r.Intn(10) == 0 && x.Len() > 20 {
				if err := x.Delete(pos, 3); err != nil {
					t.Fatal(err)
				}
			}
			u := c.EncodeStateAsUpdate(nil)
			for _, o := range docs {
				if o != c {
					if err := o.ApplyUpdate(u); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		return docs[0]
	})
	check("a megabyte pasted, then deleted", func() *yjs.Doc {
		d := yjs.NewDoc(yjs.Options{ClientID: 7})
		x := d.GetText("content")
		if err := x.Insert(0, "a short note. ", nil); err != nil {
			t.Fatal(err)
		}
		if err := x.Insert(x.Len(), strings.Repeat("pasted by mistake ", 1<<20/18), nil); err != nil {
			t.Fatal(err)
		}
		if err := x.Delete(14, x.Len()-14); err != nil {
			t.Fatal(err)
		}
		_ = x.String()
		return d
	})
	check("typed", func() *yjs.Doc {
		d := yjs.NewDoc(yjs.Options{ClientID: 7})
		x := d.GetText("content")
		for i := range 4 * n {
			if err := x.Insert(i, "x", nil); err != nil {
				t.Fatal(err)
			}
		}
		_ = x.String()
		return d
	})
}
