package store

import (
	"bytes"
	"testing"
)

// TestAReadOfAnIDGivenToAnotherSchoolIsThatSchoolsRow: school t's document d
// (LocalFirst: the Yjs side is authoritative) is given by the legacy
// application to school t2. Before any group has repaired it, t2 reads
// it: the answer must be t2's row, not t's Yjs text.
func TestAReadOfAnIDGivenToAnotherSchoolIsThatSchoolsRow(t *testing.T) {
	bothWaysOfGiving(t, func(t *testing.T, inPlace bool) {
		e := setup(t)
		e.aliceEssay()
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
