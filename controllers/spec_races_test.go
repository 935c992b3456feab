package controllers

import (
	"context"
	"time"

	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// holdRollout makes the controller's cached reads of a rollout return its
// current version until release is called (an informer that has not yet
// delivered the next edit).
func (f *fixture) holdRollout(name string) (release func()) {
	key := client.ObjectKey{Namespace: f.ns, Name: name}
	heldRollouts.Store(key, f.get(name))
	released := false
	release = func() {
		if !released {
			heldRollouts.Delete(key)
			released = true
		}
	}
	f.t.Cleanup(release)
	return release
}

func (f *fixture) stageNow(name, cohort string) string {
	states, err := f.store.Cohorts(context.Background(), f.ns+"/"+name)
	if err != nil {
		return err.Error()
	}
	return states[cohort].Stage
}

// A person sets intent Rollback on a Complete cohort waiting (for the
// barrier) to stop legacy writes. A reconcile that read the rollout before
// the edit must not take the point of no return: afterwards the rollback the
// spec asks for is refused for good.
func TestStaleSpecDoesNotRetireLegacyAfterRollbackIntent(t *testing.T) {
	f := newFixture(t)
	ro := f.rollout("retire", "pilot")
	ro.Spec.Cohorts[0].StopLegacyWrites = true
	f.g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	f.walkToVerify("retire", "pilot")
	f.soak("retire", time.Minute)
	f.waitStage("retire", "pilot", persistencev1alpha1.StageLocalFirst)
	f.soak("retire", 30*time.Second)
	f.waitStage("retire", "pilot", persistencev1alpha1.StageComplete)
	// Complete; no shard has observed its epoch yet, so legacy writes go on.
	f.g.Eventually(func() string { return f.get("retire").Status.WaitingFor }).Should(ContainSubstring("before legacy writes stop"))

	release := f.holdRollout("retire") // the informer lags behind the next edit
	f.update("retire", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Spec.Cohorts[0].Intent = persistencev1alpha1.IntentRollback
	})
	f.healthyShards("retire") // the barrier passes
	f.g.Consistently(func() string { return f.stageNow("retire", "pilot") }, "1500ms").
		ShouldNot(Equal(string(persistencev1alpha1.StageLegacyRetired)), "legacy writes stopped on a spec that asks for a rollback")
	release()
	f.waitStage("retire", "pilot", persistencev1alpha1.StageLegacy)
}

// The rollout is paused mid-soak; a reconcile on the spec before the pause
// must not flip the cohort to local-first.
func TestStaleSpecDoesNotFlipAPausedRollout(t *testing.T) {
	f := newFixture(t)
	f.g.Expect(k8s.Create(context.Background(), f.rollout("pauseflip", "pilot"))).To(Succeed())
	f.walkToVerify("pauseflip", "pilot")
	f.g.Eventually(func() string { return f.get("pauseflip").Status.WaitingFor }).Should(HavePrefix("soak until "))

	release := f.holdRollout("pauseflip")
	defer release()
	f.update("pauseflip", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Paused = true })
	f.soak("pauseflip", time.Minute)
	f.g.Consistently(func() string { return f.stageNow("pauseflip", "pilot") }, "1500ms").
		Should(Equal(string(persistencev1alpha1.StageVerify)), "flipped while the spec says paused")
}

// The soak counts only time with fresh reports. The manager cannot reach
// the data plane (it is down, restarting, or partitioned) while the shards
// go silent for far longer than maxReportAge and come back; once the manager
// is back it must not count the silent time as soak.
func TestSoakDoesNotCountASilenceTheManagerDidNotSee(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ro := f.rollout("gap", "pilot")
	ro.Spec.Gates.MaxReportAge = metav1.Duration{Duration: 20 * time.Second}
	ro.Spec.Cohorts[0].Soak = metav1.Duration{Duration: 10 * time.Minute}
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	f.walkToVerify("gap", "pilot")
	f.g.Eventually(func() string { return f.get("gap").Status.WaitingFor }).Should(HavePrefix("soak until "))

	// The manager loses the data plane.
	setDSN := func(dsn string) { f.editDatabaseSecret(func(d map[string][]byte) { d["dsn"] = []byte(dsn) }) }
	setDSN("")
	f.g.Eventually(func() string { return f.ready("gap") }).Should(ContainSubstring("DataPlaneError"))

	// Meanwhile the shards are silent for an hour (a crash loop, a bad
	// syncer release), then report again, healthy.
	fakeClock.Step(time.Hour)
	f.healthyShards("gap")

	setDSN(f.dsn)
	f.g.Eventually(func() string { return f.ready("gap") }).ShouldNot(ContainSubstring("DataPlaneError"))
	f.g.Consistently(func() string { return f.stageNow("gap", "pilot") }, "1500ms").
		Should(Equal(string(persistencev1alpha1.StageVerify)), "flipped on a soak of which the last hour had no fresh report")
}

// staleRollouts serves one rollout as it was read before (an old leader
// that read it before a deletion and resumed after); everything else live.
type staleRollouts struct {
	client.Client
	held *persistencev1alpha1.PersistenceRollout
}

func (c staleRollouts) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if ro, ok := obj.(*persistencev1alpha1.PersistenceRollout); ok && key == client.ObjectKeyFromObject(c.held) {
		c.held.DeepCopyInto(ro)
		return nil
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// A RollbackToLegacy deletion forgets the rollout in PostgreSQL. An old
// leader that read the rollout before the deletion and reconciles after it
// must not register it again (nor freeze its cohorts): the database would
// then serve a rollout that no longer exists, and refuse the next one.
func TestOldLeaderDoesNotResurrectAForgottenRollout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ro := f.rollout("gone", "pilot")
	ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRollbackToLegacy
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	f.waitStage("gone", "pilot", persistencev1alpha1.StageDualWrite)
	f.g.Eventually(func() []string { return f.get("gone").Finalizers }).ShouldNot(BeEmpty())
	before := f.get("gone")

	f.g.Expect(k8s.Delete(ctx, before)).To(Succeed())
	// No shard reports yet, so none is waited for.
	f.g.Eventually(func() bool {
		return f.gone("gone")
	}).Should(BeTrue())
	states, err := f.store.Cohorts(ctx, f.ns+"/gone")
	f.g.Expect(err).NotTo(HaveOccurred())
	f.g.Expect(states).To(BeEmpty())

	stores := &dataplane.Cache{Now: fakeClock.Now}
	defer stores.Close()
	old := &PersistenceRolloutReconciler{Client: staleRollouts{Client: k8s, held: before}, Clock: fakeClock, Stores: stores}
	_, _ = old.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(before)})

	// The next rollout on this database must not be refused.
	f.g.Expect(k8s.Create(ctx, f.rollout("next", "b"))).To(Succeed())
	f.g.Consistently(func() string { return f.ready("next") }, "1s").ShouldNot(ContainSubstring("serves another rollout"))
	states, err = f.store.Cohorts(ctx, f.ns+"/gone")
	f.g.Expect(err).NotTo(HaveOccurred())
	f.g.Expect(states).To(BeEmpty(), "the deleted rollout's cohorts are back in PostgreSQL")
}
