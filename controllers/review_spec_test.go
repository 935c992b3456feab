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

// An old leader decides to flip a soaked cohort to local-first, re-reads
// the rollout (not deleted yet) and is held up before its write. Meanwhile
// a person deletes the rollout with deletionPolicy Retain, and the new
// leader carries it out: every cohort keeps its stage, the rollout is
// gone. The old leader's flip must not go through afterwards: students
// would be switched to local-first with no rollout left to judge its
// gates or roll it back.
func TestOldLeaderDoesNotFlipAfterRetainDeletion(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("olddel", "pilot"))).To(Succeed())
	f.walkToVerify("olddel", "pilot")
	f.g.Eventually(func() string { return f.get("olddel").Status.WaitingFor }).Should(HavePrefix("soak until "))

	oldClock := clocktesting.NewFakeClock(fakeClock.Now().Add(time.Minute + time.Second))
	stores := &dataplane.Cache{}
	defer stores.Close()
	held := false
	old := &PersistenceRolloutReconciler{
		Client:    k8s,
		APIReader: k8s,
		Clock:     oldClock,
		Stores: beforeSetStageSource{stores: stores, then: func() {
			if held {
				return
			}
			held = true
			ro := f.get("olddel")
			t.Logf("generation before the deletion: %d", ro.Generation)
			f.g.Expect(k8s.Delete(ctx, ro)).To(Succeed())
			f.g.Eventually(func() bool { return f.gone("olddel") }).Should(BeTrue())
		}},
	}
	_, _ = old.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: f.ns, Name: "olddel"}})
	f.g.Expect(held).To(BeTrue(), "the old leader did not decide to flip")
	f.g.Expect(f.stageNow("olddel", "pilot")).To(Equal(string(persistencev1alpha1.StageVerify)),
		"flipped to local-first after the rollout was deleted with Retain")
}

// As above, and the rollout is created again under the same name (a new
// object, which adopts the cohorts Retain kept) with intent Hold on the
// cohort, and the new leader acts on it. The old leader's flip, decided on
// the deleted object, must not go through either.
func TestOldLeaderDoesNotFlipAfterTheRolloutIsCreatedAgain(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("oldre", "pilot"))).To(Succeed())
	f.walkToVerify("oldre", "pilot")
	f.g.Eventually(func() string { return f.get("oldre").Status.WaitingFor }).Should(HavePrefix("soak until "))

	oldClock := clocktesting.NewFakeClock(fakeClock.Now().Add(time.Minute + time.Second))
	stores := &dataplane.Cache{}
	defer stores.Close()
	held := false
	old := &PersistenceRolloutReconciler{
		Client:    k8s,
		APIReader: k8s,
		Clock:     oldClock,
		Stores: beforeSetStageSource{stores: stores, then: func() {
			if held {
				return
			}
			held = true
			f.g.Expect(k8s.Delete(ctx, f.get("oldre"))).To(Succeed())
			f.g.Eventually(func() bool { return f.gone("oldre") }).Should(BeTrue())
			again := f.rollout("oldre", "pilot")
			again.Spec.Cohorts[0].Intent = persistencev1alpha1.IntentHold
			f.g.Expect(k8s.Create(ctx, again)).To(Succeed())
			f.g.Eventually(func() string { return f.get("oldre").Status.WaitingFor }).Should(Equal("intent Hold on cohort pilot"))
		}},
	}
	_, _ = old.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: f.ns, Name: "oldre"}})
	f.g.Expect(held).To(BeTrue(), "the old leader did not decide to flip")
	f.g.Expect(f.stageNow("oldre", "pilot")).To(Equal(string(persistencev1alpha1.StageVerify)),
		"flipped to local-first on the deleted rollout after its successor held the cohort")
}
