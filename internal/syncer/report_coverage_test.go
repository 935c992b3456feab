package syncer

import (
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestAReportCountsEachCheckedDocumentOnce: the controller flips a cohort
// only once, on every shard, verified + mismatched covers the documents
// (I3). A document found mismatched under the epoch stays in Mismatched
// (repaired or not); once its repair makes it match, the pass verifies it
// too. Counted in both, it covered for a document the pass never checked:
// here 5 documents, 4 checked (one of them the repaired one), and the
// report said 4 verified and 1 mismatched.
func TestAReportCountsEachCheckedDocumentOnce(t *testing.T) {
	cs := dataplane.CohortStage{Cohort: "pilot", Stage: dataplane.StageVerify, Epoch: 7}
	now := time.Now()
	for _, tc := range []struct {
		name    string
		pass    CohortVerification
		div     dataplane.DivergenceCounts
		docs    int64
		covered bool
	}{
		{"the repaired document matches again, one document unchecked",
			CohortVerification{Epoch: 7, Documents: 4, Verified: 4}, dataplane.DivergenceCounts{Found: 1}, 5, false},
		{"the repaired document matches again, every document checked",
			CohortVerification{Epoch: 7, Documents: 5, Verified: 5}, dataplane.DivergenceCounts{Found: 1}, 5, true},
		{"the repaired document not checked again yet",
			CohortVerification{Epoch: 7, Documents: 5, Verified: 4, Repaired: 1}, dataplane.DivergenceCounts{Found: 1}, 5, true},
		{"a repaired document not checked again, another unchecked",
			CohortVerification{Epoch: 7, Documents: 5, Verified: 3, Repaired: 1, NoYjs: 1}, dataplane.DivergenceCounts{Found: 1}, 5, false},
		{"a mismatch the repair could not fix",
			CohortVerification{Epoch: 7, Documents: 5, Verified: 4, Mismatched: 1}, dataplane.DivergenceCounts{}, 5, true},
		{"no mismatch, one document created since the pass",
			CohortVerification{Epoch: 7, Documents: 5, Verified: 5}, dataplane.DivergenceCounts{}, 6, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &integrity{cohort: map[string]CohortVerification{"pilot": tc.pass}}
			rep := in.cohortReport(cs, dataplane.CohortCounts{Documents: tc.docs, WithYjs: tc.docs}, tc.div, now)
			if covered := rep.Verified+rep.Mismatched >= rep.Documents; covered != tc.covered {
				t.Errorf("report %d documents, %d verified, %d mismatched: covered %v, want %v", rep.Documents, rep.Verified, rep.Mismatched, covered, tc.covered)
			}
			if rep.Mismatched < tc.div.Found {
				t.Errorf("mismatched %d, found %d under the epoch", rep.Mismatched, tc.div.Found)
			}
		})
	}
}
