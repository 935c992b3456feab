package gateway

import (
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestForeignEvidenceDoesNotNameTheOwnersCohort: session 12 hid the seq and
// hashes of the asker's own entries on another school's document, so that
// the document answers "as an ID without a trace would". The entries still
// carry the stage, cohort and epoch of the document's school (entry() takes
// the owner's stage for an existing document): bob, whose school is in no
// cohort, reads school-a's cohort name, its stage and epoch, and so that
// the ID is in use, which an unused ID never shows.
func TestForeignEvidenceDoesNotNameTheOwnersCohort(t *testing.T) {
	f := setup(t)
	ctx := t.Context()
	st, err := f.dp.FreezeCohort(ctx, dataplane.CohortKey{Rollout: "default/demo", Cohort: "secret-pilot"}, 0,
		dataplane.Selector{Tenants: []string{"school-a"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.dp.SetStage(ctx, dataplane.StageChange{Key: dataplane.CohortKey{Rollout: "default/demo", Cohort: "secret-pilot"},
		ExpectEpoch: st.Epoch, Stage: dataplane.StageDualWrite, Attempt: 1, Reason: "test", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	alice := token(t, "school-a", "alice", time.Hour, false)
	bob := token(t, "school-b", "bob", time.Hour, false)
	f.create(alice, "essay-1", "secret")
	f.do("PUT", "/v1/documents/essay-1", bob, map[string]any{"content": "mine"})
	theirs := f.do("GET", "/v1/documents/essay-1/evidence", bob, nil)
	tl, _ := theirs.body["timeline"].([]any)
	for _, x := range tl {
		en := x.(map[string]any)
		if en["cohort"] == "secret-pilot" || en["stage"] == dataplane.StageDualWrite {
			t.Errorf("bob's own entry on school-a's document names school-a's cohort %v, stage %v, epoch %v", en["cohort"], en["stage"], en["epoch"])
		}
	}
}
