package controllers

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// staleOnce serves one rollout as it was before an edit on the first read
// only, and the API server's version after: a manager (an old leader)
// that read the rollout, was held up (a GC pause, a slow apply of the
// gateway) while a person edited it and the new leader acted on the edit,
// and then went on. Its later reads are live.
type staleOnce struct {
	client.Reader
	mu   sync.Mutex
	held *persistencev1alpha1.PersistenceRollout
}

func (c *staleOnce) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.mu.Lock()
	held := c.held
	if ro, ok := obj.(*persistencev1alpha1.PersistenceRollout); ok && held != nil && key == client.ObjectKeyFromObject(held) {
		c.held = nil
		c.mu.Unlock()
		held.DeepCopyInto(ro)
		return nil
	}
	c.mu.Unlock()
	return c.Reader.Get(ctx, key, obj, opts...)
}

// afterMark is a data plane that runs then right after each of the
// controller's MarkCohortsInSpec: a syncer's save of a school seen for the
// first time, landing before the next reconcile can correct the mark.
type afterMark struct {
	dataplane.Store
	then func()
}

func (s afterMark) MarkCohortsInSpec(ctx context.Context, rollout string, spec dataplane.SpecRef, inSpec []string, at time.Time) ([]string, []string, error) {
	removed, restored, err := s.Store.MarkCohortsInSpec(ctx, rollout, spec, inSpec, at)
	if err == nil && s.then != nil {
		s.then()
	}
	return removed, restored, err
}

type afterMarkSource struct {
	stores *dataplane.Cache
	then   func()
}

func (s afterMarkSource) Get(ctx context.Context, dsn string) (dataplane.Store, error) {
	st, err := s.stores.Get(ctx, dsn)
	if err != nil {
		return nil, err
	}
	return afterMark{Store: st, then: s.then}, nil
}

// A cohort rolled back and removed from the spec, as the CRD tells people
// to drop one, takes no school seen for the first time from then on. An
// old leader that read the rollout before the removal and reconciles after
// the new leader acted on it must not put the cohort back in the data
// plane's spec on the strength of its old read: a school first seen then
// joins the dropped cohort for good (memberships are never moved), where
// the spec puts it nowhere, and no later cohort selecting its bucket can
// take it. README: "Every decision is made on the rollout as the API
// server has it, read again before the data plane is written".
func TestOldLeaderDoesNotPutARemovedCohortBackInSpec(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.bucketRollout("oldmark"))).To(Succeed())
	f.walkToVerify("oldmark", "pilot")
	f.update("oldmark", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Spec.Cohorts[0].Intent = persistencev1alpha1.IntentRollback
	})
	f.waitStage("oldmark", "pilot", persistencev1alpha1.StageLegacy)
	before := f.get("oldmark") // the old leader's read: pilot still listed

	f.update("oldmark", func(ro *persistencev1alpha1.PersistenceRollout) { ro.Spec.Cohorts = ro.Spec.Cohorts[1:] })
	f.seesSpec("oldmark", "rest")

	fresh := schoolInBuckets("fresh", 0, 50)
	var placed dataplane.SaveStage
	saved := false
	stores := &dataplane.Cache{Now: fakeClock.Now}
	defer stores.Close()
	old := &PersistenceRolloutReconciler{
		Client:    k8s,
		APIReader: &staleOnce{Reader: k8s, held: before},
		Clock:     fakeClock,
		Stores: afterMarkSource{stores: stores, then: func() {
			if !saved {
				saved = true
				placed = f.firstSave("oldmark", fresh)
			}
		}},
	}
	_, _ = old.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(before)})

	if !saved {
		placed = f.firstSave("oldmark", fresh)
	}
	f.g.Expect(placed.Cohort).To(Equal(""), "a school seen for the first time joined cohort %q, which the spec no longer has", placed.Cohort)
	f.g.Expect(f.cohortOf(fresh)).To(Equal(""))
}

// beforeSetStage is a data plane that runs then before each SetStage: the
// manager holding the decision is held up (a GC pause, a stalled
// connection) between its last read of the rollout and its write.
type beforeSetStage struct {
	dataplane.Store
	then func()
}

func (s beforeSetStage) SetStage(ctx context.Context, ch dataplane.StageChange) (dataplane.CohortState, error) {
	if s.then != nil {
		s.then()
	}
	return s.Store.SetStage(ctx, ch)
}

type beforeSetStageSource struct {
	stores *dataplane.Cache
	then   func()
}

func (s beforeSetStageSource) Get(ctx context.Context, dsn string) (dataplane.Store, error) {
	st, err := s.stores.Get(ctx, dsn)
	if err != nil {
		return nil, err
	}
	return beforeSetStage{Store: st, then: s.then}, nil
}

// An old leader decides to flip a soaked cohort to local-first, re-reads
// the rollout (unchanged) and is held up before its write. Meanwhile a
// person sets intent Hold and the new leader, seeing it, holds the cohort
// (it writes nothing, so the cohort's epoch does not move). The old
// leader's flip then goes through: the epoch compare-and-set cannot tell,
// and nothing in PostgreSQL records which spec generation the new leader
// acted on. Students of the cohort are switched to local-first against an
// explicit Hold. The data plane now records the newest generation of the
// spec a manager acted on (SpecSeen), and refuses writes decided on an
// older one.
func TestOldLeaderDoesNotFlipAfterHoldSeenByNewLeader(t *testing.T) {
	f := newFixture(t)
	stage := f.oldLeaderFlipsAfter("oldflip", func() {
		f.update("oldflip", func(ro *persistencev1alpha1.PersistenceRollout) {
			ro.Spec.Cohorts[0].Intent = persistencev1alpha1.IntentHold
		})
		f.g.Eventually(func() string { return f.get("oldflip").Status.WaitingFor }).Should(Equal("intent Hold on cohort pilot to become Proceed (yawpctl rollout proceed)"))
	})
	f.g.Expect(stage).To(Equal(string(persistencev1alpha1.StageVerify)),
		"flipped to local-first although intent Hold was set and acted on before the write")
}

// oldLeaderFlipsAfter walks rollout name's cohort pilot to Verify and its
// soak, then runs one reconcile of an old leader whose clock is past the
// soak (the new leader's is not yet, so only the old one decides to
// flip). Once the old leader has decided and before it writes, meanwhile
// runs: what a person and the new leader do while it is held up. It
// returns the cohort's stage after the old leader's reconcile.
func (f *fixture) oldLeaderFlipsAfter(name string, meanwhile func()) string {
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout(name, "pilot"))).To(Succeed())
	f.walkToVerify(name, "pilot")
	f.g.Eventually(func() string { return f.get(name).Status.WaitingFor }).Should(HavePrefix("soak until "))
	// The soak is timed by the data plane's clock: the old leader reads
	// one past the soak (a manager's own clock does not end it).
	past := clocktesting.NewFakeClock(fakeClock.Now().Add(time.Minute + time.Second))
	stores := &dataplane.Cache{Now: past.Now}
	defer stores.Close()
	held := false
	old := &PersistenceRolloutReconciler{
		Client:    k8s,
		APIReader: k8s,
		Clock:     past,
		Stores: beforeSetStageSource{stores: stores, then: func() {
			if !held {
				held = true
				meanwhile()
			}
		}},
	}
	_, _ = old.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: f.ns, Name: name}})
	f.g.Expect(held).To(BeTrue(), "the old leader did not decide to flip")
	return f.stageNow(name, "pilot")
}
