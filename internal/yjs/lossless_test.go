package yjs

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestLosslessAllContentTypes builds a yjs document using every content
// type (text with formats and embeds, maps with any values, binary,
// arrays, nested types, XML elements/text/hooks, subdocuments), replays
// its updates into our engine and checks that our state encodes to exactly
// yjs's bytes.
func TestLosslessAllContentTypes(t *testing.T) {
	o := startOracle(t)
	for _, gc := range []bool{false, true} {
		var r struct {
			oracleResp
		}
		resp := o.call(map[string]any{"op": "richDoc", "gc": gc})
		r.oracleResp = resp
		// in-order, one by one
		doc := NewDoc(Options{ClientID: 1, GC: gc})
		for _, u := range unb64s(t, resp.Updates) {
			if err := doc.ApplyUpdate(u); err != nil {
				t.Fatal(err)
			}
		}
		want := unb64(t, resp.State)
		if got := doc.EncodeStateAsUpdate(nil); !bytes.Equal(got, want) {
			t.Fatalf("gc=%v: state differs\n ours %s\n yjs  %s", gc, hexShort(got), hexShort(want))
		}
		if got := doc.GetText("t").String(); got != resp.Text {
			t.Fatalf("text %q, want %q", got, resp.Text)
		}
		// from the full state into an empty document, and reversed updates
		doc2 := NewDoc(Options{ClientID: 2, GC: gc})
		if err := doc2.ApplyUpdate(want); err != nil {
			t.Fatal(err)
		}
		if got := doc2.EncodeStateAsUpdate(nil); !bytes.Equal(got, want) {
			t.Fatalf("gc=%v: state via full update differs", gc)
		}
		doc3 := NewDoc(Options{ClientID: 3, GC: gc})
		ups := unb64s(t, resp.Updates)
		for i := len(ups) - 1; i >= 0; i-- {
			if err := doc3.ApplyUpdate(ups[i]); err != nil {
				t.Fatal(err)
			}
		}
		if doc3.HasPending() {
			t.Fatalf("pending after all updates: %v", doc3.PendingError())
		}
		if got := doc3.EncodeStateAsUpdate(nil); !bytes.Equal(got, want) {
			t.Fatalf("gc=%v: state via reversed updates differs", gc)
		}
		// merge of all updates equals yjs's merge
		m, err := MergeUpdates(ups...)
		if err != nil {
			t.Fatal(err)
		}
		var us []string
		for _, u := range ups {
			us = append(us, b64(u))
		}
		if tm := unb64(t, o.call(map[string]any{"op": "merge", "updates": us}).Update); !bytes.Equal(m, tm) {
			t.Fatal("merge of rich updates differs")
		}
		if os.Getenv("YJS_WRITE_CORPUS") != "" && !gc {
			writeCorpus(t, append(ups, want, m))
		}
	}
}

// writeCorpus stores real updates as fuzz seeds (run with
// YJS_WRITE_CORPUS=1 to refresh testdata/fuzz).
func writeCorpus(t *testing.T, ups [][]byte) {
	for _, target := range []string{"FuzzDecodeUpdate", "FuzzApplyUpdate", "FuzzMergeUpdates"} {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, u := range ups {
			q, _ := json.Marshal(string(u))
			_ = q
			content := "go test fuzz v1\n[]byte(" + goQuote(u) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, "yjs-rich-"+itoa(i)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func goQuote(b []byte) string {
	var sb bytes.Buffer
	sb.WriteByte('"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			sb.WriteByte(c)
		default:
			sb.WriteString(`\x`)
			sb.WriteByte("0123456789abcdef"[c>>4])
			sb.WriteByte("0123456789abcdef"[c&15])
		}
	}
	sb.WriteByte('"')
	return sb.String()
}
