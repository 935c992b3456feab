package rolloutctl

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

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

// TestRetrySaysWhatTheNewAttemptWaitsFor: a retry of a held cohort, or in
// a paused rollout, used to say only "asked for attempt 2", and the
// attempt did not start. It still asks (a person may line it up), and says
// what it waits for and how to release it.
func TestRetrySaysWhatTheNewAttemptWaitsFor(t *testing.T) {
	rolledBack := persistencev1alpha1.CohortStatus{Stage: persistencev1alpha1.StageLegacy, Attempt: 1, Outcome: persistencev1alpha1.OutcomeRolledBack}
	for _, tc := range []struct {
		name   string
		intent persistencev1alpha1.CohortIntent
		paused bool
		want   string
	}{
		{"proceeding", persistencev1alpha1.IntentProceed, false, "asked for attempt 2 of cohort pilot"},
		{"rolled back by intent", persistencev1alpha1.IntentRollback, false, "asked for attempt 2 of cohort pilot"},
		{"held", persistencev1alpha1.IntentHold, false,
			"asked for attempt 2 of cohort pilot; the cohort is held (intent Hold), so it starts once released: yawpctl rollout proceed demo pilot"},
		{"paused", persistencev1alpha1.IntentProceed, true,
			"asked for attempt 2 of cohort pilot; the rollout is paused, so it starts once resumed: yawpctl rollout resume demo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := rolloutWith(1, rolledBack)
			ro.Spec.Cohorts[0].Intent, ro.Spec.Paused = tc.intent, tc.paused
			msg, err := Retry("pilot")(ro)
			if err != nil || msg != tc.want {
				t.Fatalf("retry: %q, %v; want %q", msg, err, tc.want)
			}
			if c := ro.Spec.Cohorts[0]; c.Attempt != 2 || c.Intent == persistencev1alpha1.IntentRollback {
				t.Errorf("spec: attempt %d, intent %s; want attempt 2, not Rollback", c.Attempt, c.Intent)
			}
		})
	}
}

// TestRetryOfAnAttemptUnderWaySaysSo: `yawpctl rollout retry` of a cohort
// whose attempt is still moving answered "cohort rest is at DualWrite
// (attempt 2, outcome \"\")": an attempt has no outcome until it ends,
// and the empty quotes told the person nothing.
func TestRetryOfAnAttemptUnderWaySaysSo(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   persistencev1alpha1.CohortStatus
		want string
	}{
		{"under way", persistencev1alpha1.CohortStatus{Stage: persistencev1alpha1.StageDualWrite, Attempt: 2},
			"cohort pilot is at DualWrite (attempt 2 still under way): only a rolled-back or halted attempt can be retried"},
		{"completed", persistencev1alpha1.CohortStatus{Stage: persistencev1alpha1.StageComplete, Attempt: 1, Outcome: persistencev1alpha1.OutcomeCompleted},
			"cohort pilot is at Complete (attempt 1 Completed): only a rolled-back or halted attempt can be retried"},
		{"not started", persistencev1alpha1.CohortStatus{},
			"cohort pilot is not started (no attempt yet): only a rolled-back or halted attempt can be retried"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := rolloutWith(tc.st.Attempt, tc.st)
			if _, err := Retry("pilot")(ro); err == nil || err.Error() != tc.want {
				t.Fatalf("retry: %v; want the error %q", err, tc.want)
			}
		})
	}
}

// TestStatusSaysWhenSchoolsOutsideMayStillJoin: mid-rollout, the schools
// in no cohort are mostly those of cohorts still to start, and status must
// not tell the platform team they stay on the write-through path; once
// every cohort has started, it must.
func TestStatusSaysWhenSchoolsOutsideMayStillJoin(t *testing.T) {
	ro := rolloutWith(1, persistencev1alpha1.CohortStatus{Stage: persistencev1alpha1.StageVerify})
	ro.Spec.Cohorts = append(ro.Spec.Cohorts, persistencev1alpha1.CohortSpec{Name: "rest", Buckets: &persistencev1alpha1.BucketRange{From: 0, To: 100}})
	ro.Status.Cohorts = append(ro.Status.Cohorts, persistencev1alpha1.CohortStatus{Name: "rest"})
	ro.Status.SchoolsOutsideCohorts, ro.Status.SchoolsOutsideCohortsSample = 4, []string{"school-3", "school-4"}
	var b strings.Builder
	if err := PrintStatus(&b, ro, time.Now()); err != nil {
		t.Fatal(err)
	}
	if want := "Schools in no cohort yet: 4 (school-3, school-4 and 2 more); 1 cohort not yet started may take them, the others stay on the write-through path\n"; !strings.Contains(b.String(), want) {
		t.Errorf("mid-rollout status:\n%s\nwant the line %q", b.String(), want)
	}
	ro.Status.Cohorts[1].Stage = persistencev1alpha1.StageLegacy
	b.Reset()
	if err := PrintStatus(&b, ro, time.Now()); err != nil {
		t.Fatal(err)
	}
	if want := "Schools in no cohort (they stay on the write-through path): 4 (school-3, school-4 and 2 more)\n"; !strings.Contains(b.String(), want) {
		t.Errorf("status once every cohort started:\n%s\nwant the line %q", b.String(), want)
	}
}

// TestARolloutNotFoundNamesTheNamespaceLookedIn: `yawpctl rollout status
// demo` looks in the kubeconfig's namespace unless told; its error gave
// the resource's name only, and a person with the wrong default namespace
// could not tell why a rollout they could see in kubectl was "not found".
func TestARolloutNotFoundNamesTheNamespaceLookedIn(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := persistencev1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(rolloutWith(1, persistencev1alpha1.CohortStatus{})).Build()
	key := client.ObjectKey{Namespace: "default", Name: "demo"}
	var ro persistencev1alpha1.PersistenceRollout
	err := Get(t.Context(), c, key, &ro)
	want := `no PersistenceRollout "demo" in namespace "default" (-n NAMESPACE looks in another)`
	if err == nil || err.Error() != want {
		t.Fatalf("status of a rollout in another namespace: %v, want %s", err, want)
	}
	if _, err := Apply(t.Context(), c, key, Retry("pilot")); err == nil || err.Error() != want {
		t.Fatalf("retry of a rollout in another namespace: %v, want %s", err, want)
	}
	if err := Get(t.Context(), c, client.ObjectKey{Namespace: "ns", Name: "demo"}, &ro); err != nil || ro.Name != "demo" {
		t.Fatalf("the rollout in its own namespace: %v", err)
	}
}

// TestAnEditIsAPatchOfWhatItChanged: the patch names the fields the edit
// changed and nothing else, with the resourceVersion it was decided on
// first, and an edit that changes nothing writes nothing.
func TestAnEditIsAPatchOfWhatItChanged(t *testing.T) {
	before := rolloutWith(1, persistencev1alpha1.CohortStatus{Stage: persistencev1alpha1.StageVerify, Attempt: 1})
	before.ResourceVersion = "42"
	before.Spec.Cohorts = append(before.Spec.Cohorts, persistencev1alpha1.CohortSpec{Name: "rest", Tenants: []string{"a"}, Intent: persistencev1alpha1.IntentHold})
	after := before.DeepCopy()
	if _, err := Approve("pilot")(after); err != nil {
		t.Fatal(err)
	}
	after.Spec.Cohorts[1].Intent = ""
	after.Spec.Cohorts[1].Tenants[0] = "x"
	patch, err := specPatch(before, after)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"replace","path":"/metadata/resourceVersion","value":"42"},` +
		`{"op":"add","path":"/spec/cohorts/0/approvedAttempt","value":1},` +
		`{"op":"remove","path":"/spec/cohorts/1/intent"},` +
		`{"op":"replace","path":"/spec/cohorts/1/tenants/0","value":"x"}]`
	if string(patch) != want {
		t.Errorf("patch\n%s\nwant\n%s", patch, want)
	}
	if patch, err := specPatch(before, before.DeepCopy()); err != nil || patch != nil {
		t.Errorf("an unchanged spec gave the patch %s, %v; want none", patch, err)
	}
}
