package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// TestASyncerClockBehindDoesNotHoldTheCohort: both shards' node clocks
// run 2 minutes behind the manager's, and they report as they should.
// maxReportAge is 1m. The reports are seconds old, and the cohort must
// move on them (to LocalFirst, through a soak that counts only time
// with fresh reports). It was held at Backfill for good before: a report's age was the
// manager's clock minus the syncer's timestamp, 2 minutes.
func TestASyncerClockBehindDoesNotHoldTheCohort(t *testing.T) {
	f := newFixture(t)
	ro := f.rollout("slowsyncer", "pilot")
	ro.Spec.Gates.MaxReportAge.Duration = time.Minute
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	behind := func() {
		f.report("slowsyncer", 0, shardReport{backfill: true, skew: -2 * time.Minute})
		f.report("slowsyncer", 1, shardReport{backfill: true, skew: -2 * time.Minute})
	}
	f.waitStage("slowsyncer", "pilot", persistencev1alpha1.StageDualWrite)
	behind()
	f.waitStage("slowsyncer", "pilot", persistencev1alpha1.StageBackfill)
	behind()
	f.waitStage("slowsyncer", "pilot", persistencev1alpha1.StageVerify)
	// The soak: fresh reports every 25 s (a silence of maxReportAge
	// restarts it).
	for range 3 {
		behind()
		time.Sleep(300 * time.Millisecond)
		fakeClock.Step(25 * time.Second)
	}
	behind()
	f.waitStage("slowsyncer", "pilot", persistencev1alpha1.StageLocalFirst)
}

// TestAManagerClockAheadDoesNotShortenTheSoak: a manager whose node clock
// runs 61 s ahead takes over (a new leader) one second into a 1m soak
// that the old leader started. The soak has not passed, and it must not
// flip the cohort. It flipped before: the soak's start was the old
// leader's clock and its elapsed time the new leader's.
func TestAManagerClockAheadDoesNotShortenTheSoak(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("fastmanager", "pilot"))).To(Succeed())
	f.walkToVerify("fastmanager", "pilot")
	f.g.Eventually(func() string { return f.get("fastmanager").Status.WaitingFor }).Should(HavePrefix("soak until "))
	stores := &dataplane.Cache{Now: fakeClock.Now}
	defer stores.Close()
	ahead := &PersistenceRolloutReconciler{
		Client:    k8s,
		APIReader: k8s,
		Clock:     clocktesting.NewFakeClock(fakeClock.Now().Add(time.Minute + time.Second)),
		Stores:    stores,
	}
	_, _ = ahead.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: f.ns, Name: "fastmanager"}})
	f.g.Expect(f.stageOf("fastmanager", "pilot")()).To(Equal(string(persistencev1alpha1.StageVerify)),
		"a manager with a fast clock ended a soak that had not passed")
	f.soak("fastmanager", time.Minute)
	f.waitStage("fastmanager", "pilot", persistencev1alpha1.StageLocalFirst)
}
