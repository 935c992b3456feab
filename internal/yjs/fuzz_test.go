package yjs

import (
	"bytes"
	"testing"
)

// Fuzz targets for every decoder. Malformed input must produce an error,
// never a panic, and memory stays bounded by the input. Seeds live in
// testdata/fuzz/<Target>/ (generated from real yjs updates) plus f.Add.

func fuzzSeeds(f *testing.F) {
	d := NewDoc(Options{ClientID: 5})
	var ups [][]byte
	d.OnUpdate(func(u []byte) { ups = append(ups, u) })
	x := d.GetText("t")
	_ = x.Insert(0, "hello world", nil)
	_ = x.Format(0, 5, []Attr{{"bold", true}})
	_ = x.Delete(2, 3)
	_ = x.InsertEmbed(1, map[string]any{"image": "a.png"}, nil)
	for _, u := range ups {
		f.Add(u)
	}
	f.Add(d.EncodeStateAsUpdate(nil))
	f.Add([]byte{0, 0})
	f.Add([]byte{1, 1, 1, 0, 0})
}

func FuzzDecodeUpdate(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := DecodeUpdate(b)
		if err != nil {
			return
		}
		_ = u
		doc := NewDoc(Options{ClientID: 1})
		if err := doc.ApplyUpdate(b); err != nil {
			return
		}
		_ = doc.GetText("t").String()
		st := doc.EncodeStateAsUpdate(nil)
		doc2 := NewDoc(Options{ClientID: 2})
		if err := doc2.ApplyUpdate(st); err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		_ = doc.ClockRanges()
		_, _ = doc.TextAt("t", doc.Snapshot())
	})
}

func FuzzApplyUpdate(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		// Apply onto a document with content and formatting, with GC on and
		// off, twice (idempotence must hold for accepted updates).
		for _, gc := range []bool{false, true} {
			doc := NewDoc(Options{ClientID: 9, GC: gc})
			x := doc.GetText("t")
			_ = x.Insert(0, "abc", nil)
			_ = x.Format(0, 2, []Attr{{"i", true}})
			if err := doc.ApplyUpdate(b); err != nil {
				return
			}
			s1 := doc.EncodeStateAsUpdate(nil)
			if err := doc.ApplyUpdate(b); err != nil {
				t.Fatalf("second apply failed: %v", err)
			}
			_ = x.Insert(0, "z", nil)
			_ = x.Delete(0, x.Len())
			_ = s1
		}
	})
}

func FuzzDecodeStateVector(f *testing.F) {
	f.Add(EncodeStateVector(StateVector{1: 5, 99: 1 << 40}))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		sv, err := DecodeStateVector(b)
		if err != nil {
			return
		}
		sv2, err := DecodeStateVector(EncodeStateVector(sv))
		if err != nil || len(sv2) != len(sv) {
			t.Fatalf("state vector does not round-trip: %v", err)
		}
	})
}

func FuzzDecodeDeleteSet(f *testing.F) {
	f.Add(EncodeDeleteSet(DeleteSet{3: {{0, 2}, {5, 1}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := DecodeDeleteSet(b)
		if err != nil {
			return
		}
		if _, err := DecodeDeleteSet(EncodeDeleteSet(ds)); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzDecodeAny(f *testing.F) {
	f.Add([]byte{118, 1, 1, 'a', 117, 2, 125, 5, 119, 1, 'x'})
	f.Add([]byte{123, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeAny(b)
	})
}

func FuzzMergeUpdates(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 2 {
			return
		}
		cut := int(b[0]) % len(b)
		a, c := b[1:1+cut/2], b[1+cut/2:]
		if m, err := MergeUpdates(a, c); err == nil {
			if _, err := DecodeUpdate(m); err != nil {
				t.Fatalf("merged update does not decode: %v", err)
			}
		}
		_, _ = MergeUpdates(b, b)
		if sv, err := EncodeStateVectorFromUpdate(b); err == nil {
			if d, err := DiffUpdate(b, sv); err == nil {
				if _, err := DecodeUpdate(d); err != nil {
					t.Fatalf("diff does not decode: %v", err)
				}
			}
		}
		_, _ = DiffUpdate(a, c)
		if !bytes.Equal(a, a) {
			t.Fatal()
		}
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add(EncodeSnapshot(Snapshot{StateVector{1: 3}, DeleteSet{1: {{0, 1}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeSnapshot(b)
	})
}
