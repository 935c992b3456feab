package trace

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/yawp/persistence-operator/internal/yjs"
)

// Digests computed with yjs 13.6.33 replaying the same sequential traces
// (gc off, client 1, one yjs transaction per trace transaction, positions
// converted from code points to UTF-16): sha256 over every update the
// document emitted (each prefixed with its length as uint32 LE), and
// sha256 of Y.encodeStateAsUpdate at the end.
var yjsTraceDigests = map[string]struct{ updates, state string }{
	"sveltecomponent.json.gz": {"056da634395f57fe398baa6c6cfdf3042610982e938c575828e6860f8bbc9ab3", "08ae17a080d664c1be4cd88e0364011a5e53db4ba1826acb394642e134457a0e"},
	"rustcode.json.gz":        {"eb0d56c912815c286e872e7eda1dfd7957f2b980b2202bfd4a5fbf9f3fb0ae93", "7b9a1b308ebb6463018cf89486ca006348efaf2b671ce3d6fb6651a2ad6003d8"},
	"automerge-paper.json.gz": {"1134c0030d04aaf1ffb8459160fed756050e051aaccdcfcd6e06e8581f0df11f", "6428190db7206269694f6f5dfe8c30f07904e260954e33cd880329cb81e91e7e"},
}

// TestTraceUpdatesMatchYjs checks that replaying the sequential traces
// emits, transaction by transaction, exactly the updates yjs emits, and
// ends in the same full state.
func TestTraceUpdatesMatchYjs(t *testing.T) {
	for name, want := range yjsTraceDigests {
		t.Run(name, func(t *testing.T) {
			if testing.Short() && name == "automerge-paper.json.gz" {
				t.Skip("long trace skipped with -short")
			}
			tr, err := Load(tracePath(name))
			if err != nil {
				t.Fatal(err)
			}
			doc := yjs.NewDoc(yjs.Options{ClientID: 1})
			h := sha256.New()
			n := 0
			doc.OnUpdate(func(u []byte) {
				var l [4]byte
				binary.LittleEndian.PutUint32(l[:], uint32(len(u)))
				h.Write(l[:])
				h.Write(u)
				n++
			})
			e := &editor{text: doc.GetText("text"), astral: hasAstral(tr.StartContent)}
			if tr.StartContent != "" {
				if err := e.text.Insert(0, tr.StartContent, nil); err != nil {
					t.Fatal(err)
				}
			}
			for i, tx := range tr.Txns {
				if err := e.applyTxn(doc, tx); err != nil {
					t.Fatalf("txn %d: %v", i, err)
				}
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != want.updates {
				t.Errorf("updates digest %s (%d updates), yjs %s", got, n, want.updates)
			}
			st := sha256.Sum256(doc.EncodeStateAsUpdate(nil))
			if got := hex.EncodeToString(st[:]); got != want.state {
				t.Errorf("state digest %s, yjs %s", got, want.state)
			}
		})
	}
}
