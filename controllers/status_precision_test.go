package controllers

import (
	"encoding/json"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestAStatusEqualsItselfAsStored: the data plane's times have
// microseconds (a stage's start, a soak's end, a report's, the history's),
// the API server keeps whole seconds. A status derived again from the same
// data plane equals the one the API server stored; before, they differed
// at every poll and `make dev` showed the rollout's status written every
// second or two, forever (kubectl get -w printing the same row).
func TestAStatusEqualsItselfAsStored(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 8, 27, 123456000, time.UTC)
	mt := metav1.NewTime(at)
	derived := persistencev1alpha1.PersistenceRolloutStatus{
		Stage: persistencev1alpha1.StageComplete,
		Cohorts: []persistencev1alpha1.CohortStatus{{Name: "pilot", Stage: persistencev1alpha1.StageComplete,
			Since: &mt, SoakEndsAt: &mt, ReportedAt: &mt}},
		History: []persistencev1alpha1.AttemptRecord{{Cohort: "pilot", Attempt: 1, Stage: persistencev1alpha1.StageComplete, Time: mt}},
	}
	b, err := json.Marshal(derived)
	if err != nil {
		t.Fatal(err)
	}
	var stored persistencev1alpha1.PersistenceRolloutStatus
	if err := json.Unmarshal(b, &stored); err != nil {
		t.Fatal(err)
	}
	if !statusEqual(stored, withSteadyReportTimes(derived, stored)) {
		t.Fatalf("the status derived again from the same data plane differs from the one stored: written at every poll")
	}
	later := derived.DeepCopy()
	later.Cohorts[0].Stage = persistencev1alpha1.StageLegacyRetired
	if statusEqual(stored, withSteadyReportTimes(*later, stored)) {
		t.Fatalf("a changed stage compares equal")
	}
}
