package yjs

import "testing"

func TestBasicRoundTrip(t *testing.T) {
	a := NewDoc(Options{ClientID: 1})
	var ups [][]byte
	a.OnUpdate(func(u []byte) { ups = append(ups, append([]byte(nil), u...)) })
	x := a.GetText("t")
	if err := x.Insert(0, "hello", nil); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{x.Insert(5, " world", nil), x.Insert(0, ">> ", nil), x.Delete(3, 2), x.Insert(4, "😀", nil)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Log(x.String(), x.Len(), len(ups))
	b := NewDoc(Options{ClientID: 2})
	for i := len(ups) - 1; i >= 0; i-- {
		if err := b.ApplyUpdate(ups[i]); err != nil {
			t.Fatal(err)
		}
	}
	if b.GetText("t").String() != x.String() {
		t.Fatalf("%q vs %q pending=%v", b.GetText("t").String(), x.String(), b.PendingError())
	}
	s1 := a.EncodeStateAsUpdate(nil)
	c := NewDoc(Options{ClientID: 3})
	if err := c.ApplyUpdate(s1); err != nil {
		t.Fatal(err)
	}
	if c.GetText("t").String() != x.String() {
		t.Fatal("c")
	}
	t.Logf("%x", s1)
}
