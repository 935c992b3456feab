package rolloutctl

import (
	"bytes"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestStatusShowsWhenShardsLastReported: the runbook for
// YawpSyncerShardReportStalled looks at `yawpctl rollout status` for when
// shards reported. The REPORTED column shows the age of the oldest shard
// report counted (status.cohorts[].reportedAt); before, nothing said it,
// and a cohort whose shards last reported 7 minutes ago read exactly like
// one that reported a second ago.
func TestStatusShowsWhenShardsLastReported(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	reported := now.Add(-7*time.Minute - 13*time.Second)
	ro := &persistencev1alpha1.PersistenceRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default"},
		Spec: persistencev1alpha1.PersistenceRolloutSpec{Cohorts: []persistencev1alpha1.CohortSpec{
			{Name: "pilot", Tenants: []string{"school-1"}}}},
		Status: persistencev1alpha1.PersistenceRolloutStatus{
			CurrentCohort: "pilot", Progress: "1/1", Stage: persistencev1alpha1.StageVerify, Epoch: 3, Shards: "2/2",
			Cohorts: []persistencev1alpha1.CohortStatus{{
				Name: "pilot", Stage: persistencev1alpha1.StageVerify, Epoch: 3, Attempt: 1,
				ShardsObserved: 2, ShardsTotal: 2, Documents: 18, Backfilled: 18, Verified: 18,
				ReportedAt: &metav1.Time{Time: reported},
				Message:    "waiting for fresh reports from 0/2 shards",
			}},
		},
	}
	var out bytes.Buffer
	if err := PrintStatus(&out, ro, now); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.Contains(s, reported.Format(time.RFC3339)) && !strings.Contains(s, "7m13s") {
		t.Errorf("yawpctl rollout status of a cohort whose shards last reported at %s (7m13s ago) does not say when:\n%s",
			reported.Format(time.RFC3339), s)
	}
}
