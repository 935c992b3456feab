package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestARefusedObjectAcknowledgingARestoreWritesNothing: this cluster's
// object managed rollout "lost" (pilot up to Backfill), then another
// cluster's object took it over on a person's word (take-over-from), so
// this one is refused (RolloutClaimed). The database is then restored from
// a backup taken at DualWrite. The refused object must go on saying
// RolloutClaimed, and must write nothing, even once someone follows the
// message it shows and annotates it with accept-restored-database: the
// rollout is the other object's. Before, the database was checked before
// the claim: it said DataPlaneError with the restore's advice, and once
// annotated restamped the other object's cohorts.
func TestARefusedObjectAcknowledgingARestoreWritesNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := f.ns + "/lost"
	f.g.Expect(k8s.Create(ctx, f.rollout("lost", "pilot"))).To(Succeed())
	dual := f.waitStage("lost", "pilot", persistencev1alpha1.StageDualWrite)
	f.healthyShards("lost")
	backfill := f.waitStage("lost", "pilot", persistencev1alpha1.StageBackfill).Epoch

	f.g.Expect(f.store.TakeOverRollout(ctx, key, string(f.get("lost").UID), "production-uid")).To(Succeed())
	f.g.Eventually(func() string { return f.ready("lost") }).Should(HavePrefix("False/RolloutClaimed: "))

	f.restoreTo("lost", "pilot", persistencev1alpha1.StageDualWrite, dual.Epoch)
	before := controlRows(ctx, f.pool)
	time.Sleep(2 * time.Second)
	if got := f.ready("lost"); !strings.HasPrefix(got, "False/RolloutClaimed: ") {
		t.Errorf("refused object's Ready after the restore: %q, want RolloutClaimed", got)
	}

	f.update("lost", func(ro *persistencev1alpha1.PersistenceRollout) {
		if ro.Annotations == nil {
			ro.Annotations = map[string]string{}
		}
		ro.Annotations[AnnotationAcceptRestoredDatabase] = itoa(backfill)
	})
	f.g.Consistently(func() string { return controlRows(ctx, f.pool) }, "3s").Should(Equal(before),
		"the refused object wrote to the database of a rollout another object manages")
}

// TestARefusedObjectDeletedWithRetainSaysItManagedNothing: the docs say a
// refused object's deletion "rolls nothing back and records nothing (an
// Event NotManaging says so), whatever its deletionPolicy". With Retain
// (the default) no NotManaging Event was emitted; the only Event said
// "every cohort keeps its stage in PostgreSQL and the gateway keeps
// serving", of a rollout and gateway the object never had.
func TestARefusedObjectDeletedWithRetainSaysItManagedNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.otherClusterManages("shared", "production-uid")
	f.g.Expect(k8s.Create(ctx, f.rollout("shared", "pilot"))).To(Succeed())
	f.g.Eventually(func() string { return f.ready("shared") }).Should(HavePrefix("False/RolloutClaimed: "))
	f.g.Expect(k8s.Delete(ctx, f.get("shared"))).To(Succeed())
	f.g.Eventually(func() bool { return f.gone("shared") }).Should(BeTrue())
	f.g.Eventually(func() []string { return f.events("shared") }, "3s").Should(ContainElement(HavePrefix("NotManaging: ")),
		"events of the refused object's Retain deletion")
}

// TestARefusedObjectsRollbackDeletionIsNotHeldByTheOtherObjectsDatabase:
// as in TestARefusedObjectAcknowledgingARestoreWritesNothing, this
// object lost the rollout to another cluster's, and the database was then
// restored. Deleting it with RollbackToLegacy must roll nothing back and
// let it go (NotManaging): the rollout is not its own. It was held
// instead, "deletion blocked" (DatabaseRefused), asking for an
// acknowledgement that would have made it restamp the other object's
// cohorts: the claim is checked before the database now.
func TestARefusedObjectsRollbackDeletionIsNotHeldByTheOtherObjectsDatabase(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := f.ns + "/lost"
	ro := f.rollout("lost", "pilot")
	ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRollbackToLegacy
	f.g.Expect(k8s.Create(ctx, ro)).To(Succeed())
	dual := f.waitStage("lost", "pilot", persistencev1alpha1.StageDualWrite)
	f.healthyShards("lost")
	f.waitStage("lost", "pilot", persistencev1alpha1.StageBackfill)
	f.g.Expect(f.store.TakeOverRollout(ctx, key, string(f.get("lost").UID), "production-uid")).To(Succeed())
	f.g.Eventually(func() string { return f.ready("lost") }).Should(HavePrefix("False/RolloutClaimed: "))
	f.restoreTo("lost", "pilot", persistencev1alpha1.StageDualWrite, dual.Epoch)

	f.g.Expect(k8s.Delete(ctx, f.get("lost"))).To(Succeed())
	deadline := time.Now().Add(10 * time.Second)
	for !f.gone("lost") {
		if time.Now().After(deadline) {
			ready := f.ready("lost")
			// Let the fixture's cleanup delete it.
			f.update("lost", func(ro *persistencev1alpha1.PersistenceRollout) {
				ro.Spec.DeletionPolicy = persistencev1alpha1.DeletionRetain
			})
			t.Fatalf("the refused object's RollbackToLegacy deletion is held: Ready %s", ready)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
