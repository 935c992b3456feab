package yjs

import "testing"

// TestMissingCountsPendingAsHeld: operations held in pending structs
// reached the document; Missing reports only the clocks it still lacks.
func TestMissingCountsPendingAsHeld(t *testing.T) {
	src := NewDoc(Options{ClientID: 5})
	var ups [][]byte
	src.OnUpdate(func(u []byte) { ups = append(ups, u) })
	x := src.GetText("t")
	for _, s := range []string{"a", "b", "c"} {
		if err := x.Insert(x.Len(), s, nil); err != nil {
			t.Fatal(err)
		}
	}
	d := NewDoc(Options{ClientID: 6})
	check := func(want map[uint64]Range) {
		t.Helper()
		got := d.Missing(StateVector{5: 3})
		if len(got) != len(want) || got[5] != want[5] {
			t.Fatalf("Missing = %v, want %v", got, want)
		}
	}
	check(map[uint64]Range{5: {0, 3}})
	for i, want := range []map[uint64]Range{{5: {0, 2}}, {5: {0, 1}}, {}} {
		if err := d.ApplyUpdate(ups[2-i]); err != nil {
			t.Fatal(err)
		}
		check(want)
	}
	if d.GetText("t").String() != "abc" {
		t.Fatalf("text %q", d.GetText("t").String())
	}
}
