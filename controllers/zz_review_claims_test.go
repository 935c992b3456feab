package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
)

// TestZZARefusedObjectAcknowledgingARestoreWritesNothing: this cluster's
// object managed rollout "lost" (pilot up to Backfill), then another
// cluster's object took it over on a person's word (take-over-from), so
// this one is refused (RolloutClaimed). The database is then restored from
// a backup taken at DualWrite. The refused object must go on saying
// RolloutClaimed, and must write nothing, even once someone follows the
// message it shows and annotates it with accept-restored-database: the
// rollout is the other object's.
func TestZZARefusedObjectAcknowledgingARestoreWritesNothing(t *testing.T) {
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
