package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// otherClusterManages plays another cluster's operator that manages
// rollout name in this fixture's database (its object's UID uid), with
// cohort pilot at DualWrite.
func (f *fixture) otherClusterManages(name, uid string) {
	f.t.Helper()
	ctx := context.Background()
	key := f.ns + "/" + name
	f.g.Expect(f.store.RegisterRollout(ctx, key, uid, 2)).To(Succeed())
	f.g.Expect(f.store.RecordRolloutObject(ctx, key, uid)).To(Succeed())
	st, err := f.store.FreezeCohort(ctx, dataplane.CohortKey{Rollout: key, Cohort: "pilot"}, 0,
		dataplane.Selector{Tenants: []string{"pilot-school"}}, fakeClock.Now())
	f.g.Expect(err).NotTo(HaveOccurred())
	_, err = f.store.SetStage(ctx, dataplane.StageChange{Key: dataplane.CohortKey{Rollout: key, Cohort: "pilot"},
		ExpectEpoch: st.Epoch, Stage: dataplane.StageDualWrite, Attempt: 1, At: fakeClock.Now()})
	f.g.Expect(err).NotTo(HaveOccurred())
}

func (f *fixture) hasGateway(name string) bool {
	err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name + "-gateway"}, &appsv1.StatefulSet{})
	f.g.Expect(client.IgnoreNotFound(err)).To(Succeed())
	return !apierrors.IsNotFound(err)
}

// TestARolloutAnotherClusterManagesIsLeftAlone: a staging cluster's
// operator given production's database Secret, with a rollout of the same
// namespace and name. Before, it registered production's rollout as its
// own: it acted on its own spec (here, a cohort that does not exist in
// production's spec, and intent Rollback on pilot), took the database's
// record of the serving object, so production's syncers refused their
// shards when restarted, and its deletion with RollbackToLegacy rolled
// production's cohorts back. Now it is refused (RolloutClaimed, saying
// which object manages the rollout and how to take it over if that one is
// gone), gets no gateway, writes nothing to the database, and its deletion
// rolls nothing back.
func TestARolloutAnotherClusterManagesIsLeftAlone(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.otherClusterManages("shared", "production-uid")
	before := controlRows(ctx, f.pool)

	ro := f.rollout("shared", "pilot", "staging-only")
	ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRollbackToLegacy
	ro.Spec.Cohorts[0].Intent = persistencev1alpha1.IntentRollback
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	f.g.Eventually(func() string { return f.ready("shared") }).Should(HavePrefix(
		"False/RolloutClaimed: rollout " + f.ns + "/shared in this database is managed by another PersistenceRollout object (uid production-uid, since "))
	msg := f.ready("shared")
	f.g.Expect(msg).To(HaveSuffix("take the rollout over: kubectl annotate -n " + f.ns + " persistencerollout shared persistence.yawp.dev/take-over-from=production-uid"))
	f.g.Consistently(func() string { return controlRows(ctx, f.pool) }, "2s").Should(Equal(before), "the refused object wrote to the database")
	f.g.Expect(f.hasGateway("shared")).To(BeFalse(), "the refused object got a gateway")
	_, served, err := dataplane.RegisteredAs(ctx, f.pool, f.ns+"/shared")
	f.g.Expect(err).NotTo(HaveOccurred())
	f.g.Expect(served).To(Equal("production-uid"), "the syncers are told to serve another object")
	f.g.Expect(f.get("shared").Status.WaitingFor).To(HavePrefix("the object that manages this rollout in its database to let it go"))
	f.g.Expect(f.events("shared")).To(ContainElement(HavePrefix("RolloutClaimed: rollout " + f.ns + "/shared in this database is managed by another")))

	f.g.Expect(k8s.Delete(ctx, f.get("shared"))).To(Succeed())
	f.g.Eventually(func() bool { return f.gone("shared") }).Should(BeTrue())
	f.g.Expect(controlRows(ctx, f.pool)).To(Equal(before), "the refused object's deletion changed the database")
	f.g.Expect(f.events("shared")).To(ContainElement(HavePrefix("NotManaging: nothing rolled back or recorded: rollout " + f.ns + "/shared in its database is managed by another object (uid production-uid")))
	c, _, err := f.store.RolloutClaim(ctx, f.ns+"/shared")
	f.g.Expect(err).NotTo(HaveOccurred())
	f.g.Expect(c.UID).To(Equal("production-uid"))
	f.g.Expect(c.Released).To(BeFalse())
}

// TestARolloutWhoseManagerIsGoneIsTakenOverOnRequest: the cluster whose
// object managed the rollout is lost (its deletion never reached the
// database). The object created in the new cluster is refused until a
// person annotates it with the lost object's UID; it then manages the
// rollout from where the database has it (pilot at DualWrite), its
// gateway is created and named to the syncers, and an Event says so.
func TestARolloutWhoseManagerIsGoneIsTakenOverOnRequest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.otherClusterManages("moved", "lost-uid")
	f.g.Expect(k8s.Create(ctx, f.rollout("moved", "pilot"))).To(Succeed())
	f.g.Eventually(func() string { return f.ready("moved") }).Should(HavePrefix("False/RolloutClaimed: "))

	// A wrong UID takes nothing over.
	f.update("moved", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Annotations = map[string]string{AnnotationTakeOverFrom: "someone-else"}
	})
	f.g.Consistently(func() string { return f.ready("moved") }, "1s").Should(HavePrefix("False/RolloutClaimed: "))

	f.update("moved", func(ro *persistencev1alpha1.PersistenceRollout) {
		ro.Annotations = map[string]string{AnnotationTakeOverFrom: "lost-uid"}
	})
	uid := string(f.get("moved").UID)
	f.g.Eventually(func() bool { return f.hasGateway("moved") }).Should(BeTrue())
	f.g.Eventually(func() string { _, db := f.syncersTold("moved"); return db }).Should(Equal(uid))
	f.g.Eventually(func() persistencev1alpha1.Stage { return f.cohortStatus("moved", "pilot").Stage }).Should(Equal(persistencev1alpha1.StageDualWrite))
	f.g.Expect(f.ready("moved")).NotTo(ContainSubstring("RolloutClaimed"))
	f.g.Expect(f.events("moved")).To(ContainElement(
		"TookOver: took rollout " + f.ns + "/moved over from object lost-uid, as annotation persistence.yawp.dev/take-over-from says: that object manages it no more"))
	c, _, err := f.store.RolloutClaim(ctx, f.ns+"/moved")
	f.g.Expect(err).NotTo(HaveOccurred())
	f.g.Expect(c.UID).To(Equal(uid))

	// The lost cluster comes back: its operator is refused now.
	err = f.store.RegisterRollout(ctx, f.ns+"/moved", "lost-uid", 2)
	f.g.Expect(err).To(MatchError(dataplane.ErrRolloutClaimed))
}

// TestARolloutDeletedWithRetainIsTakenOverByItsSuccessor: a Retain
// deletion records that its object lets the rollout go, so the next object
// of the name manages it at once, with no annotation; the object it
// replaced could not take it back.
func TestARolloutDeletedWithRetainIsTakenOverByItsSuccessor(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.g.Expect(k8s.Create(ctx, f.rollout("handover", "pilot"))).To(Succeed())
	f.waitStage("handover", "pilot", persistencev1alpha1.StageDualWrite)
	oldUID := string(f.get("handover").UID)
	f.g.Expect(k8s.Delete(ctx, f.get("handover"))).To(Succeed())
	f.g.Eventually(func() bool { return f.gone("handover") }).Should(BeTrue())
	c, _, err := f.store.RolloutClaim(ctx, f.ns+"/handover")
	f.g.Expect(err).NotTo(HaveOccurred())
	f.g.Expect(c.UID).To(Equal(oldUID))
	f.g.Expect(c.Released).To(BeTrue(), "the Retain deletion did not let the rollout go")

	f.g.Expect(k8s.Create(ctx, f.rollout("handover", "pilot"))).To(Succeed())
	newUID := string(f.get("handover").UID)
	f.g.Eventually(func() string { _, db := f.syncersTold("handover"); return db }, 10*time.Second).Should(Equal(newUID))
	f.g.Expect(f.ready("handover")).NotTo(ContainSubstring("RolloutClaimed"))
	f.g.Expect(f.store.RegisterRollout(ctx, f.ns+"/handover", oldUID, 2)).To(MatchError(dataplane.ErrRolloutClaimed))
}
