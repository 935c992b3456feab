package store

import (
	"fmt"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/yjs"
)

// TestLegacySaveAroundEmbed: a rich-text Yjs client (y-quill, say) puts
// an image into the text "abcd"; a write-through client, which reads the
// text without it, then saves an edit. The edit lands where the text says
// (the legacy row and the Yjs text agree, I3), the image stays, also
// when the edit deletes the text on both sides of it, and both hold
// after a restart.
func TestLegacySaveAroundEmbed(t *testing.T) {
	for _, stage := range []string{dataplane.StageDualWrite, dataplane.StageLocalFirst} {
		for _, c := range []struct{ save, want string }{
			{"abcdE", "ab[img]cdE"},
			{"Eabcd", "Eab[img]cd"},
			{"abXcd", "abX[img]cd"},
			{"aXbcd", "aXb[img]cd"},
			{"abd", "ab[img]d"},
			{"ad", "a[img]d"},
			{"", "[img]"},
			{"wxyz", "wxyz[img]"}, // all text replaced: it goes before the image
		} {
			t.Run(fmt.Sprintf("%s/%q", stage, c.save), func(t *testing.T) {
				e := setup(t)
				ctx := t.Context()
				e.cohort("c", stage, "t")
				e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "u", Content: "abcd"})
				res := e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})})
				client := yjs.NewDoc(yjs.Options{ClientID: 77})
				if err := client.ApplyUpdate(res.Update); err != nil {
					t.Fatal(err)
				}
				var u []byte
				client.OnUpdate(func(b []byte) { u = b })
				if err := client.GetText(contract.YjsTextName).InsertEmbed(2, map[string]any{"image": "cat.png"}, nil); err != nil {
					t.Fatal(err)
				}
				e.submit(Request{Kind: KindYjs, Doc: "d", Tenant: "t", User: "u", Update: u})
				d, err := e.eng.Read(ctx, "t", "d")
				if err != nil || d.Content != "abcd" {
					t.Fatalf("after the image: %+v, %v", d, err)
				}
				e.submit(Request{Kind: KindSave, Doc: "d", Tenant: "t", User: "w", Content: c.save, BaseRevision: d.Revision})
				e.restart()
				var row string
				if err := e.pool.QueryRow(ctx, `SELECT content FROM documents WHERE doc_id = 'd'`).Scan(&row); err != nil {
					t.Fatal(err)
				}
				if row != c.save {
					t.Errorf("legacy row %q, want %q", row, c.save)
				}
				// What a Yjs client syncing now sees.
				res = e.submit(Request{Kind: KindSync1, Doc: "d", Tenant: "t", User: "u", StateVector: yjs.EncodeStateVector(yjs.StateVector{})})
				fresh := yjs.NewDoc(yjs.Options{ClientID: 78})
				if err := fresh.ApplyUpdate(res.Update); err != nil {
					t.Fatal(err)
				}
				var got strings.Builder
				for _, op := range fresh.GetText(contract.YjsTextName).ToDelta() {
					if s, ok := op.Insert.(string); ok {
						got.WriteString(s)
					} else {
						got.WriteString("[img]")
					}
				}
				if got.String() != c.want {
					t.Errorf("Yjs text %q, want %q", got.String(), c.want)
				}
				if vr, err := e.eng.VerifyDocs(ctx, []string{"d"}); err != nil || len(vr) != 1 || vr[0].Verdict != VerifyMatch {
					t.Errorf("verification: %+v, %v", vr, err)
				}
			})
		}
	}
}
