package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestAFailingReconcileIsRetriedWithinThePollInterval: controller-runtime's
// default backoff doubles up to 16 minutes, so a recurring error (a
// cohort's action the data plane keeps refusing, a database down for a
// while) left the rollout unlooked-at for minutes: no gate judged, and
// soaks restarted for the controller's own silence. The backoff now stops
// at the poll interval.
func TestAFailingReconcileIsRetriedWithinThePollInterval(t *testing.T) {
	poll := 5 * time.Second
	rl := failureBackoff(poll)
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "demo"}}
	first := rl.When(req)
	if first <= 0 || first > time.Second {
		t.Fatalf("first retry after %v; want a prompt one", first)
	}
	var last time.Duration
	for range 40 {
		last = rl.When(req)
	}
	if last != poll {
		t.Fatalf("after 40 failures the retry waits %v; want the poll interval %v", last, poll)
	}
	rl.Forget(req)
	if d := rl.When(req); d > time.Second {
		t.Fatalf("after a success the next failure waits %v", d)
	}
}
