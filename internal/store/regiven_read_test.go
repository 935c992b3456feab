package store

import (
	"bytes"
	"testing"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestAReadOfAnIDGivenToAnotherSchoolIsThatSchoolsRow: school t's document d
// (LocalFirst: the Yjs side is authoritative) is given by the legacy
// application to school t2. Before any group has repaired it, t2 reads
// it: the answer must be t2's row, not t's Yjs text.
func TestAReadOfAnIDGivenToAnotherSchoolIsThatSchoolsRow(t *testing.T) {
	for _, inPlace := range []bool{false, true} {
		name := map[bool]string{false: "deleted and inserted", true: "tenant updated in place"}[inPlace]
		t.Run(name, func(t *testing.T) {
			e := setup(t)
			e.cohort("c", dataplane.StageLocalFirst, "t", "t2")
			e.submit(Request{Kind: KindCreate, Doc: "d", Tenant: "t", User: "alice", Content: "Alice's essay."})
			e.regive(inPlace)
			d, err := e.eng.Read(t.Context(), "t2", "d")
			if err != nil {
				t.Fatal(err)
			}
			if d.Content != "Bob's text." {
				t.Errorf("school t2 reads %q, want its row's %q", d.Content, "Bob's text.")
			}
			if d.LegacyContent != nil {
				t.Errorf("school t2 is told its row differs: %q", *d.LegacyContent)
			}
			// The state vector t2 is handed is not school t's document's.
			if _, sv, _, err := e.eng.YjsSince(t.Context(), "d", nil); err == nil && bytes.Equal(sv, d.StateVector) && d.Generation < 2 {
				t.Errorf("school t2 is handed school t's Yjs generation %d", d.Generation)
			}
		})
	}
}
