package rolloutctl

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// rolloutWith is a rollout "demo" with one cohort, pilot, asking for
// specAttempt, whose status is st.
func rolloutWith(specAttempt int32, st persistencev1alpha1.CohortStatus) *persistencev1alpha1.PersistenceRollout {
	st.Name = "pilot"
	return &persistencev1alpha1.PersistenceRollout{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "ns"},
		Spec: persistencev1alpha1.PersistenceRolloutSpec{Cohorts: []persistencev1alpha1.CohortSpec{
			{Name: "pilot", Tenants: []string{"s"}, RequireApproval: true, Attempt: specAttempt}}},
		Status: persistencev1alpha1.PersistenceRolloutStatus{Cohorts: []persistencev1alpha1.CohortStatus{st}},
	}
}

// TestApproveOnlyAnAttemptThatCanFlip: `yawpctl rollout approve` used to
// approve whatever attempt status showed. For an attempt that ended (rolled
// back or halted) or already flipped there is nothing to approve, and an
// approval never carries over to a later attempt: exit status 0 and
// "approved the flip of attempt 1" misled the person, whose retried attempt
// then waited for an approval they thought they gave. After a retry, the
// attempt that will run is the one approved.
func TestApproveOnlyAnAttemptThatCanFlip(t *testing.T) {
	for _, tc := range []struct {
		name        string
		specAttempt int32
		st          persistencev1alpha1.CohortStatus
		wantErr     string
	}{
		{"rolled back", 1, persistencev1alpha1.CohortStatus{Stage: persistencev1alpha1.StageLegacy, Attempt: 1, Outcome: persistencev1alpha1.OutcomeRolledBack},
			"attempt 1 of cohort pilot ended (RolledBack): there is no flip to approve; retry it first (yawpctl rollout retry demo pilot), then approve the new attempt"},
		{"halted", 1, persistencev1alpha1.CohortStatus{Stage: persistencev1alpha1.StageVerify, Attempt: 1, Outcome: persistencev1alpha1.OutcomeHalted},
			"attempt 1 of cohort pilot ended (Halted)"},
		{"flipped", 1, persistencev1alpha1.CohortStatus{Stage: persistencev1alpha1.StageComplete, Attempt: 1, Outcome: persistencev1alpha1.OutcomeCompleted},
			"attempt 1 of cohort pilot flipped already (it is at Complete): there is nothing to approve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := rolloutWith(tc.specAttempt, tc.st)
			msg, err := Approve("pilot")(ro)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("approve: %q, %v; want the error %q (spec now attempt %d, approvedAttempt %d)",
					msg, err, tc.wantErr, ro.Spec.Cohorts[0].Attempt, ro.Spec.Cohorts[0].ApprovedAttempt)
			}
			if ro.Spec.Cohorts[0].ApprovedAttempt != 0 {
				t.Errorf("refused, yet approvedAttempt is %d", ro.Spec.Cohorts[0].ApprovedAttempt)
			}
		})
	}
	for _, tc := range []struct {
		name        string
		specAttempt int32
		st          persistencev1alpha1.CohortStatus
		want        string
		approved    int32
	}{
		{"retried, the new attempt not started yet", 2, persistencev1alpha1.CohortStatus{Stage: persistencev1alpha1.StageLegacy, Attempt: 1, Outcome: persistencev1alpha1.OutcomeRolledBack},
			"approved the flip of attempt 2 of cohort pilot (it has not started yet)", 2},
		{"soaking", 1, persistencev1alpha1.CohortStatus{Stage: persistencev1alpha1.StageVerify, Attempt: 1},
			"approved the flip of attempt 1 of cohort pilot", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := rolloutWith(tc.specAttempt, tc.st)
			msg, err := Approve("pilot")(ro)
			if err != nil || msg != tc.want {
				t.Fatalf("approve: %q, %v; want %q", msg, err, tc.want)
			}
			if c := ro.Spec.Cohorts[0]; c.ApprovedAttempt != tc.approved || c.Attempt != tc.specAttempt {
				t.Errorf("spec: attempt %d, approvedAttempt %d; want attempt %d approved", c.Attempt, c.ApprovedAttempt, tc.approved)
			}
		})
	}
}
