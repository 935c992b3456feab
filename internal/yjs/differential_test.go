package yjs

import (
	"bytes"
	"fmt"
	"math/rand"
	"testing"
)

// replica is one peer of a differential session: our document and a yjs
// document with the same client id, fed the same operations.
type replica struct {
	name  string
	doc   *Doc
	ups   [][]byte
	inbox []pendingUpdate // updates not yet delivered to this replica
}

type pendingUpdate struct {
	ours, theirs []byte
}

type session struct {
	t        *testing.T
	o        *oracle
	rng      *rand.Rand
	replicas []*replica
	gc       bool
}

func newSession(t *testing.T, o *oracle, seed int64, n int, gc bool) *session {
	s := &session{t: t, o: o, rng: rand.New(rand.NewSource(seed)), gc: gc}
	used := map[uint64]bool{}
	for i := 0; i < n; i++ {
		var client uint64
		for client == 0 || used[client] {
			client = uint64(s.rng.Intn(1000) + 1)
		}
		used[client] = true
		r := &replica{name: fmt.Sprintf("s%d-r%d", seed, i)}
		r.doc = NewDoc(Options{ClientID: client, GC: gc})
		r.doc.GetText("t")
		r.doc.OnUpdate(func(u []byte) { r.ups = append(r.ups, append([]byte(nil), u...)) })
		o.call(map[string]any{"op": "new", "doc": r.name, "client": client, "gc": gc})
		s.replicas = append(s.replicas, r)
	}
	return s
}

func (s *session) drain(r *replica) [][]byte {
	u := r.ups
	r.ups = nil
	return u
}

// emitted compares the updates both engines emitted for one step and
// queues them for the other replicas.
func (s *session) emitted(r *replica, ours [][]byte, theirs []string, what string) {
	t := s.t
	tb := unb64s(t, theirs)
	if len(ours) != len(tb) {
		t.Fatalf("%s %s: we emitted %d updates, yjs %d", r.name, what, len(ours), len(tb))
	}
	for i := range ours {
		if !bytes.Equal(ours[i], tb[i]) {
			t.Fatalf("%s %s: update %d differs\n ours %s\n yjs  %s", r.name, what, i, hexShort(ours[i]), hexShort(tb[i]))
		}
		for _, o := range s.replicas {
			if o != r {
				o.inbox = append(o.inbox, pendingUpdate{ours[i], tb[i]})
			}
		}
	}
}

func (s *session) check(r *replica, what string) {
	t := s.t
	st := s.o.call(map[string]any{"op": "state", "doc": r.name})
	text := r.doc.GetText("t")
	if got := text.String(); got != st.Text {
		t.Fatalf("%s after %s: text differs\n ours %q\n yjs  %q", r.name, what, got, st.Text)
	}
	if text.Len() != st.Len {
		t.Fatalf("%s after %s: length %d, yjs %d", r.name, what, text.Len(), st.Len)
	}
	ours := r.doc.EncodeStateAsUpdate(nil)
	if theirs := unb64(t, st.State); !bytes.Equal(ours, theirs) {
		t.Fatalf("%s after %s: encodeStateAsUpdate differs\n ours %s\n yjs  %s", r.name, what, hexShort(ours), hexShort(theirs))
	}
	if sv := unb64(t, st.SV); !bytes.Equal(r.doc.EncodeStateVector(), sv) {
		t.Fatalf("%s after %s: state vector differs", r.name, what)
	}
	// Update-level functions on the state, against yjs.
	other := s.replicas[s.rng.Intn(len(s.replicas))].doc.EncodeStateVector()
	diff, err := DiffUpdate(ours, other)
	if err != nil {
		t.Fatal(err)
	}
	if theirs := unb64(t, s.o.call(map[string]any{"op": "diff", "update": st.State, "sv": b64(other)}).Update); !bytes.Equal(diff, theirs) {
		t.Fatalf("%s after %s: diffUpdate differs\n ours %s\n yjs  %s", r.name, what, hexShort(diff), hexShort(theirs))
	}
	svu, err := EncodeStateVectorFromUpdate(ours)
	if err != nil {
		t.Fatal(err)
	}
	if theirs := unb64(t, s.o.call(map[string]any{"op": "svFromUpdate", "update": st.State}).SV); !bytes.Equal(svu, theirs) {
		t.Fatalf("%s after %s: encodeStateVectorFromUpdate differs", r.name, what)
	}
	if st.Pending != r.doc.HasPending() {
		t.Fatalf("%s after %s: pending %v, yjs %v", r.name, what, r.doc.HasPending(), st.Pending)
	}
}

var sampleTexts = []string{"a", "b", "hello", " ", "xyz", "\n", "😀", "é", "ab😀c", "123456789", "Ω"}

func (s *session) randomAttrs() []Attr {
	keys := []string{"bold", "italic", "color", "link"}
	n := 1 + s.rng.Intn(2)
	var out []Attr
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		k := keys[s.rng.Intn(len(keys))]
		if seen[k] {
			continue
		}
		seen[k] = true
		var v any
		switch s.rng.Intn(5) {
		case 0:
			v = nil
		case 1:
			v = true
		case 2:
			v = "red"
		case 3:
			v = map[string]any{"href": "x"}
		default:
			v = 3
		}
		out = append(out, Attr{k, v})
	}
	return out
}

func (s *session) localOp(r *replica, formatting bool) {
	t := s.t
	text := r.doc.GetText("t")
	n := text.Len()
	var theirs oracleResp
	var what string
	roll := s.rng.Intn(10)
	switch {
	case roll < 5 || n == 0:
		idx := s.rng.Intn(n + 1)
		str := sampleTexts[s.rng.Intn(len(sampleTexts))]
		var attrs []Attr
		if formatting && s.rng.Intn(3) == 0 {
			attrs = s.randomAttrs()
			if attrs == nil {
				attrs = []Attr{}
			}
		}
		what = fmt.Sprintf("insert(%d,%q,%v)", idx, str, attrs)
		if err := text.Insert(idx, str, attrs); err != nil {
			t.Fatal(err)
		}
		theirs = s.o.call(map[string]any{"op": "insert", "doc": r.name, "index": idx, "text": str, "attrs": attrsJSON(attrs)})
	case roll < 8 || !formatting:
		idx := s.rng.Intn(n)
		l := 1 + s.rng.Intn(min(n-idx, 6))
		what = fmt.Sprintf("delete(%d,%d)", idx, l)
		if err := text.Delete(idx, l); err != nil {
			t.Fatal(err)
		}
		theirs = s.o.call(map[string]any{"op": "delete", "doc": r.name, "index": idx, "len": l})
	case roll < 9:
		idx := s.rng.Intn(n)
		l := 1 + s.rng.Intn(min(n-idx, 8))
		attrs := s.randomAttrs()
		what = fmt.Sprintf("format(%d,%d,%v)", idx, l, attrs)
		if err := text.Format(idx, l, attrs); err != nil {
			t.Fatal(err)
		}
		theirs = s.o.call(map[string]any{"op": "format", "doc": r.name, "index": idx, "len": l, "attrs": attrsJSON(attrs)})
	default:
		idx := s.rng.Intn(n + 1)
		what = fmt.Sprintf("embed(%d)", idx)
		emb := map[string]any{"image": "x.png"}
		if err := text.InsertEmbed(idx, emb, nil); err != nil {
			t.Fatal(err)
		}
		theirs = s.o.call(map[string]any{"op": "insertEmbed", "doc": r.name, "index": idx, "embed": emb, "attrs": nil})
	}
	s.emitted(r, s.drain(r), theirs.Updates, what)
	s.check(r, what)
}

// deliver hands a random selection of r's inbox to it: shuffled, some
// duplicated, some merged into one update first (by both engines).
func (s *session) deliver(r *replica, all bool) {
	t := s.t
	if len(r.inbox) == 0 {
		return
	}
	s.rng.Shuffle(len(r.inbox), func(i, j int) { r.inbox[i], r.inbox[j] = r.inbox[j], r.inbox[i] })
	k := len(r.inbox)
	if !all {
		k = 1 + s.rng.Intn(len(r.inbox))
	}
	batch := append([]pendingUpdate(nil), r.inbox[:k]...)
	r.inbox = r.inbox[k:]
	if s.rng.Intn(4) == 0 {
		batch = append(batch, batch[s.rng.Intn(len(batch))]) // duplicate
	}
	for len(batch) > 0 {
		g := 1
		if len(batch) > 1 && s.rng.Intn(3) == 0 {
			g = 2 + s.rng.Intn(len(batch)-1)
		}
		group := batch[:g]
		batch = batch[g:]
		var ours, theirs []byte
		if g == 1 {
			ours, theirs = group[0].ours, group[0].theirs
		} else {
			var os [][]byte
			var ts []string
			for _, u := range group {
				os = append(os, u.ours)
				ts = append(ts, b64(u.theirs))
			}
			m, err := MergeUpdates(os...)
			if err != nil {
				t.Fatal(err)
			}
			tm := unb64(t, s.o.call(map[string]any{"op": "merge", "updates": ts}).Update)
			if !bytes.Equal(m, tm) {
				t.Fatalf("mergeUpdates differs\n ours %s\n yjs  %s", hexShort(m), hexShort(tm))
			}
			ours, theirs = m, tm
		}
		// Feed yjs's bytes to our engine and ours to yjs.
		if err := r.doc.ApplyUpdate(theirs); err != nil {
			t.Fatalf("%s: apply: %v", r.name, err)
		}
		resp := s.o.call(map[string]any{"op": "apply", "doc": r.name, "update": b64(ours)})
		got := s.drain(r)
		tb := unb64s(t, resp.Updates)
		if len(got) != len(tb) {
			t.Fatalf("%s apply: we emitted %d updates, yjs %d", r.name, len(got), len(tb))
		}
		for i := range got {
			if !bytes.Equal(got[i], tb[i]) {
				t.Fatalf("%s apply: emitted update %d differs\n ours %s\n yjs  %s", r.name, i, hexShort(got[i]), hexShort(tb[i]))
			}
			// the first one is the remote change itself; later ones are
			// local formatting cleanups the others must receive
			if i > 0 {
				for _, o := range s.replicas {
					if o != r {
						o.inbox = append(o.inbox, pendingUpdate{got[i], tb[i]})
					}
				}
			}
		}
		s.check(r, "apply")
	}
}

func (s *session) run(steps int, formatting bool) {
	for i := 0; i < steps; i++ {
		r := s.replicas[s.rng.Intn(len(s.replicas))]
		if s.rng.Intn(3) == 0 {
			s.deliver(r, false)
		} else {
			s.localOp(r, formatting)
		}
	}
	// Converge: deliver everything until no inbox has anything left.
	for round := 0; round < 10; round++ {
		busy := false
		for _, r := range s.replicas {
			if len(r.inbox) > 0 {
				busy = true
				s.deliver(r, true)
			}
		}
		if !busy {
			break
		}
	}
	want := s.replicas[0].doc.GetText("t").String()
	for _, r := range s.replicas {
		if r.doc.HasPending() {
			s.t.Fatalf("%s: still pending after full delivery: %v", r.name, r.doc.PendingError())
		}
		if got := r.doc.GetText("t").String(); got != want {
			s.t.Fatalf("replicas diverged: %s has %q, %s has %q", r.name, got, s.replicas[0].name, want)
		}
	}
}

func TestDifferentialPlainText(t *testing.T) {
	o := startOracle(t)
	for seed := int64(1); seed <= 30; seed++ {
		s := newSession(t, o, seed, 3, false)
		s.run(120, false)
	}
}

func TestDifferentialRichText(t *testing.T) {
	o := startOracle(t)
	for seed := int64(100); seed <= 130; seed++ {
		s := newSession(t, o, seed, 3, false)
		s.run(120, true)
	}
}

func TestDifferentialGC(t *testing.T) {
	o := startOracle(t)
	for seed := int64(200); seed <= 215; seed++ {
		s := newSession(t, o, seed, 4, true)
		s.run(100, true)
	}
}

// typingOp is an editor-like local operation around a per-replica
// cursor: typing runs, backspaces and forward deletes next to what was
// just typed or deleted, and now and then a jump. It drives the local
// typing and deleting fast paths, which random positions rarely reach.
func (s *session) typingOp(r *replica, cursors map[*replica]int) {
	t := s.t
	text := r.doc.GetText("t")
	n := text.Len()
	cur := cursors[r]
	if cur > n || s.rng.Intn(12) == 0 {
		cur = s.rng.Intn(n + 1)
	}
	var theirs oracleResp
	var what string
	roll := s.rng.Intn(10)
	switch {
	case roll < 5 || n == 0:
		str := sampleTexts[s.rng.Intn(len(sampleTexts))]
		what = fmt.Sprintf("insert(%d,%q)", cur, str)
		if err := text.Insert(cur, str, nil); err != nil {
			t.Fatal(err)
		}
		theirs = s.o.call(map[string]any{"op": "insert", "doc": r.name, "index": cur, "text": str, "attrs": nil})
		cur += len(toUTF16(str))
	case roll < 8 && cur > 0:
		l := 1 + s.rng.Intn(min(cur, 3))
		cur -= l
		what = fmt.Sprintf("backspace delete(%d,%d)", cur, l)
		if err := text.Delete(cur, l); err != nil {
			t.Fatal(err)
		}
		theirs = s.o.call(map[string]any{"op": "delete", "doc": r.name, "index": cur, "len": l})
	default:
		if cur == n {
			cur = s.rng.Intn(n)
		}
		l := 1 + s.rng.Intn(min(n-cur, 3))
		what = fmt.Sprintf("forward delete(%d,%d)", cur, l)
		if err := text.Delete(cur, l); err != nil {
			t.Fatal(err)
		}
		theirs = s.o.call(map[string]any{"op": "delete", "doc": r.name, "index": cur, "len": l})
	}
	cursors[r] = cur
	s.emitted(r, s.drain(r), theirs.Updates, what)
	s.check(r, what)
}

func TestDifferentialTyping(t *testing.T) {
	o := startOracle(t)
	for seed := int64(300); seed <= 315; seed++ {
		s := newSession(t, o, seed, 2, seed%4 == 3)
		cursors := map[*replica]int{}
		for i := 0; i < 150; i++ {
			r := s.replicas[s.rng.Intn(len(s.replicas))]
			if s.rng.Intn(8) == 0 {
				s.deliver(r, false)
			} else {
				s.typingOp(r, cursors)
			}
		}
		s.run(0, false)
	}
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}
