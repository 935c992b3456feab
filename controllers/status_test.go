package controllers

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

func TestConditions(t *testing.T) {
	type want struct{ status, reason string }
	rolledBack := state("Legacy", 9)
	rolledBack.Outcome = dataplane.OutcomeRolledBack
	failing := healthy(4)
	failing.mismatched = 2
	tests := []struct {
		name    string
		paused  bool
		attempt int32 // spec.attempt, unless 0
		state   *dataplane.CohortState
		sum     summary
		alive   int
		pods    *gatewayPods // nil: every shard's pod ready
		removed []dataplane.CohortState
		ready   want
		prog    want
		degr    want
		verif   want
		waiting string
	}{
		{name: "complete", state: state("Complete", 6), sum: healthy(6), alive: 2,
			ready: want{"True", "Complete"}, prog: want{"False", "Complete"}, degr: want{"False", "AsExpected"}, verif: want{"True", "GatesPassing"}},
		{name: "soaking, shards alive", state: state("Verify", 4), sum: healthy(4), alive: 2,
			ready: want{"True", "GatewayReady"}, prog: want{"True", "Soaking"}, degr: want{"False", "AsExpected"}, verif: want{"True", "GatesPassing"},
			waiting: "soak until 2026-11-26T09:01:00Z"},
		{name: "soaking, a gateway pod not ready", state: state("Verify", 4), sum: healthy(4), alive: 2,
			pods:  &gatewayPods{ready: 1, waiting: "1 gateway pod to become ready"},
			ready: want{"False", "GatewayNotReady"}, prog: want{"True", "Soaking"}, degr: want{"False", "AsExpected"}, verif: want{"True", "GatesPassing"},
			waiting: "soak until 2026-11-26T09:01:00Z"},
		{name: "a started cohort removed from the spec", state: state("Verify", 4), sum: healthy(4), alive: 2,
			removed: []dataplane.CohortState{{Cohort: "old", Stage: "LocalFirst", Epoch: 3, Members: 2}, {Cohort: "older", Stage: "DualWrite", Epoch: 2, Members: 1}},
			ready:   want{"False", "CohortRemoved"}, prog: want{"True", "Soaking"}, degr: want{"True", "CohortRemoved"}, verif: want{"True", "GatesPassing"},
			waiting: "soak until 2026-11-26T09:01:00Z"},
		{name: "one shard silent", state: state("DualWrite", 2), sum: summary{shards: 2, observed: 1, fresh: 1}, alive: 1,
			ready: want{"False", "GatewayNotReady"}, prog: want{"True", "WaitingForBarrier"}, degr: want{"False", "AsExpected"}, verif: want{"Unknown", "NoReports"},
			waiting: "1/2 shards to observe epoch 2"},
		{name: "gate failing while paused", paused: true, state: state("Verify", 4), sum: failing, alive: 2,
			ready: want{"False", "GateFailed"}, prog: want{"False", "Paused"}, degr: want{"True", "GateFailed"}, verif: want{"False", "GateFailed"},
			waiting: "unpause"},
		{name: "rolled back", state: rolledBack, sum: summary{shards: 2}, alive: 2,
			ready: want{"False", "RolledBack"}, prog: want{"False", "AwaitingNewAttempt"}, degr: want{"True", "RolledBack"}, verif: want{"Unknown", "NoReports"},
			waiting: "attempt 1 was rolled back: set attempt: 2 to try again (yawpctl rollout retry)"},
		// Retried while paused: still rolled back, waiting to be resumed.
		{name: "retried, paused", paused: true, attempt: 2, state: rolledBack, sum: summary{shards: 2}, alive: 2,
			ready: want{"False", "RolledBack"}, prog: want{"False", "Paused"}, degr: want{"True", "RolledBack"}, verif: want{"Unknown", "NoReports"},
			waiting: "unpause before attempt 2 starts (attempt 1 was rolled back)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ro := &persistencev1alpha1.PersistenceRollout{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", Generation: 3}}
			ro.Spec.Gateway.Shards = 2
			ro.Spec.Paused = tc.paused
			ro.Spec.Cohorts = []persistencev1alpha1.CohortSpec{cohortSpec("pilot")}
			if tc.attempt > 0 {
				ro.Spec.Cohorts[0].Attempt = tc.attempt
			}
			ro.Spec.Gates.MaxReportAge = metav1.Duration{Duration: time.Minute}
			obs := observation{alive: tc.alive, removed: tc.removed, cohorts: []cohortInput{{spec: ro.Spec.Cohorts[0], state: tc.state, sum: tc.sum}}}
			now := t0.Add(30 * time.Second)
			out := plan(planInput{now: now, spec: ro.Spec, cohorts: obs.cohorts})
			pods := gatewayPods{ready: 2}
			if tc.pods != nil {
				pods = *tc.pods
			}
			applyStatus(ro, obs, out, pods, now)
			for typ, w := range map[string]want{
				persistencev1alpha1.ConditionReady: tc.ready, persistencev1alpha1.ConditionProgressing: tc.prog,
				persistencev1alpha1.ConditionDegraded: tc.degr, persistencev1alpha1.ConditionVerified: tc.verif,
			} {
				c := meta.FindStatusCondition(ro.Status.Conditions, typ)
				if c == nil {
					t.Fatalf("no %s condition", typ)
				}
				if string(c.Status) != w.status || c.Reason != w.reason {
					t.Errorf("%s = %s/%s (%s), want %s/%s", typ, c.Status, c.Reason, c.Message, w.status, w.reason)
				}
				if c.ObservedGeneration != 3 {
					t.Errorf("%s observedGeneration = %d, want 3", typ, c.ObservedGeneration)
				}
			}
			if ro.Status.WaitingFor != tc.waiting {
				t.Errorf("waitingFor = %q, want %q", ro.Status.WaitingFor, tc.waiting)
			}
			if ro.Status.Progress != "1/1" || ro.Status.CurrentCohort != "pilot" || ro.Status.Shards != itoaInt(tc.alive)+"/2" {
				t.Errorf("progress %q, current %q, shards %q", ro.Status.Progress, ro.Status.CurrentCohort, ro.Status.Shards)
			}
		})
	}
}

func TestObserveGatewayPods(t *testing.T) {
	sts := func(gen int64, st appsv1.StatefulSetStatus) *appsv1.StatefulSet {
		s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "r-gateway", Generation: gen}, Status: st}
		return s
	}
	done := appsv1.StatefulSetStatus{ObservedGeneration: 2, Replicas: 2, ReadyReplicas: 2, UpdatedReplicas: 2, CurrentRevision: "r-1", UpdateRevision: "r-1"}
	doneAt := func(gen int64) appsv1.StatefulSetStatus { s := done; s.ObservedGeneration = gen; return s }
	tests := []struct {
		name    string
		sts     *appsv1.StatefulSet
		ready   int32
		waiting string
	}{
		{"not created", nil, 0, "the gateway StatefulSet to be created"},
		{"rolled out", sts(2, done), 2, ""},
		{"never observed", sts(1, appsv1.StatefulSetStatus{}), 0, "the StatefulSet controller to observe generation 1 of r-gateway"},
		{"new template not observed", sts(3, done), 2, "the StatefulSet controller to observe generation 3 of r-gateway"},
		{"one pod not ready", sts(2, func() appsv1.StatefulSetStatus { s := done; s.ReadyReplicas = 1; return s }()), 1, "1 gateway pod to become ready"},
		{"no pod ready", sts(2, func() appsv1.StatefulSetStatus { s := done; s.ReadyReplicas = 0; return s }()), 0, "2 gateway pods to become ready"},
		{"rolling update", sts(2, func() appsv1.StatefulSetStatus { s := done; s.UpdatedReplicas, s.UpdateRevision = 1, "r-2"; return s }()), 2,
			"the rolling update to revision r-2 (1/2 gateway pods updated)"},
		{"a pod the rolling update replaced not ready yet", sts(2, func() appsv1.StatefulSetStatus {
			s := done
			s.ReadyReplicas, s.UpdatedReplicas, s.UpdateRevision = 1, 1, "r-2"
			return s
		}()), 1, "1 gateway pod to become ready during the rolling update to revision r-2 (1/2 gateway pods updated)"},
		{"updated, revision not yet current", sts(2, func() appsv1.StatefulSetStatus { s := done; s.UpdateRevision = "r-2"; return s }()), 2,
			"the rolling update to revision r-2 (2/2 gateway pods updated)"},
		// A partition someone set: done once the pods at or above it are
		// updated, as kubectl rollout status says; the others stay old.
		{"partitioned, done", partitioned(1, func() appsv1.StatefulSetStatus {
			s := done
			s.UpdatedReplicas, s.UpdateRevision = 1, "r-2"
			return s
		}()), 2, ""},
		{"partitioned, under way", partitioned(1, func() appsv1.StatefulSetStatus {
			s := done
			s.UpdatedReplicas, s.UpdateRevision = 0, "r-2"
			return s
		}()), 2, "the rolling update to revision r-2 (0/1 gateway pods updated)"},
		// OnDelete: pods change when a person deletes them; ready is enough.
		{"on delete", func() *appsv1.StatefulSet {
			s := sts(2, func() appsv1.StatefulSetStatus { s := done; s.UpdatedReplicas, s.UpdateRevision = 0, "r-2"; return s }())
			s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
			return s
		}(), 2, ""},
		// Our write of generation 3, as the apply answers it: the status
		// still complete for generation 2 does not say the template we
		// wrote has rolled out.
		{"our write not yet observed", sts(3, done), 2,
			"the StatefulSet controller to observe generation 3 of r-gateway"},
		{"our write observed", sts(3, doneAt(3)), 2, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := observeGatewayPods(tc.sts, 2)
			if got.ready != tc.ready || got.waiting != tc.waiting {
				t.Errorf("got %d ready, waiting for %q; want %d, %q", got.ready, got.waiting, tc.ready, tc.waiting)
			}
		})
	}
}

func partitioned(partition int32, st appsv1.StatefulSetStatus) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "r-gateway", Generation: 2}, Status: st,
		Spec: appsv1.StatefulSetSpec{UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: &partition}}}}
}

func itoaInt(n int) string { return itoa(int64(n)) }

func TestTransitionTimeKeptUnlessStatusFlips(t *testing.T) {
	ro := &persistencev1alpha1.PersistenceRollout{}
	setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionTrue, "A", "first", t0)
	setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionTrue, "B", "second", t0.Add(time.Hour))
	c := meta.FindStatusCondition(ro.Status.Conditions, persistencev1alpha1.ConditionReady)
	if !c.LastTransitionTime.Time.Equal(t0) || c.Reason != "B" {
		t.Fatalf("same status: transition time %v reason %s; want %v and B", c.LastTransitionTime, c.Reason, t0)
	}
	setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionFalse, "C", "third", t0.Add(2*time.Hour))
	c = meta.FindStatusCondition(ro.Status.Conditions, persistencev1alpha1.ConditionReady)
	if !c.LastTransitionTime.Time.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("flipped status kept the old transition time %v", c.LastTransitionTime)
	}
}
