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

// TestAManagerClockBehindWatchesTheSoakByTheDataPlaneClock: the manager's
// node clock runs 3 minutes behind PostgreSQL's (maxReportAge 2m). What it
// records of a soak, when it saw fresh reports (SoakSeen) and when the
// soak starts again after a silence (RestartSoak), is compared with the
// data plane's times (soak starts, report stamps) and must be by the data
// plane's clock too. Stamped by the manager's, both writes would be lost
// to greatest(): a restart 3 minutes in the data plane's past would leave
// the soak counting a silence, and a watch 3 minutes behind would read as
// a silence past maxReportAge at every later look, whose restart
// greatest() drops again: the cohort held at Verify for good. No other test tells
// these clocks apart: the suite's manager and data plane share one.
func TestAManagerClockBehindWatchesTheSoakByTheDataPlaneClock(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ro := f.rollout("slowmanager", "pilot")
	ro.Spec.Gates.MaxReportAge.Duration = 2 * time.Minute
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	f.walkToVerify("slowmanager", "pilot")
	f.g.Eventually(func() string { return f.get("slowmanager").Status.WaitingFor }).Should(HavePrefix("soak until "))
	cohort := func() dataplane.CohortState {
		states, err := f.store.Cohorts(ctx, f.ns+"/slowmanager")
		f.g.Expect(err).NotTo(HaveOccurred())
		return states["pilot"]
	}
	reconcileBehind := func(dataPlane time.Time) {
		stores := &dataplane.Cache{Now: func() time.Time { return dataPlane }}
		defer stores.Close()
		behind := &PersistenceRolloutReconciler{
			Client:    k8s,
			APIReader: k8s,
			Clock:     clocktesting.NewFakeClock(dataPlane.Add(-3 * time.Minute)),
			Stores:    stores,
		}
		_, _ = behind.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: f.ns, Name: "slowmanager"}})
	}

	// 30 s on, the reports (stamped at the fake clock's time) are fresh:
	// the manager saw them at the data plane's time.
	seen := fakeClock.Now().Add(30 * time.Second)
	reconcileBehind(seen)
	f.g.Expect(cohort().SoakSeenAt).To(BeTemporally("~", seen, time.Millisecond),
		"the soak watch was stamped by the manager's clock, not the data plane's")

	// 3 minutes on, they are stale: the soak starts again then.
	silent := fakeClock.Now().Add(3 * time.Minute)
	reconcileBehind(silent)
	f.g.Expect(cohort().SoakStartedAt).To(BeTemporally("~", silent, time.Millisecond),
		"the soak restarted by the manager's clock, not the data plane's")
}
