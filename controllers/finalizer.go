package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// Deleting a rollout never silently changes which store is authoritative for
// anyone. What happens is the rollout's deletionPolicy, carried out before
// the finalizer is removed:
//
//   - Retain (the default): every cohort keeps its stage and epoch in
//     PostgreSQL, and the gateway StatefulSet and Services lose their owner
//     reference, so they keep serving. A rollout re-created with the same
//     name adopts both.
//   - RollbackToLegacy: every cohort is rolled back to Legacy under a new
//     epoch (legacy was written all along, so nothing is lost), the
//     controller waits until every live shard has observed it, forgets the
//     rollout's control rows, and lets the gateway be garbage-collected.
//     Refused, and the deletion held, while a cohort has retired legacy
//     writes: switch the policy to Retain to delete anyway.
func (r *PersistenceRolloutReconciler) finalize(ctx context.Context, ro, original *persistencev1alpha1.PersistenceRollout) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	if !controllerutil.ContainsFinalizer(ro, Finalizer) {
		return ctrl.Result{}, nil
	}
	now := r.Clock.Now()
	if ro.Spec.DeletionPolicy == persistencev1alpha1.DeletionRollbackToLegacy {
		waiting, err := r.rollbackAll(ctx, ro, now)
		if err != nil || waiting != "" {
			msg := "deletion waits for " + waiting
			if err != nil {
				msg = "deletion blocked: " + err.Error()
			}
			setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionFalse, persistencev1alpha1.ReasonDeleting, msg, now)
			ro.Status.WaitingFor = msg
			if perr := r.patchStatus(ctx, original, ro); perr != nil {
				return ctrl.Result{}, perr
			}
			return ctrl.Result{RequeueAfter: r.poll()}, nil
		}
	} else {
		if err := r.orphanGateway(ctx, ro); err != nil {
			return ctrl.Result{}, err
		}
		if r.Recorder != nil {
			r.Recorder.Eventf(ro, nil, corev1.EventTypeNormal, "Retained", "Delete",
				"rollout deleted with deletionPolicy Retain: every cohort keeps its stage in PostgreSQL and the gateway keeps serving")
		}
		log.Info("retained stages and orphaned the gateway on deletion")
	}
	forgetCohortMetrics(ro)
	controllerutil.RemoveFinalizer(ro, Finalizer)
	if err := r.Update(ctx, ro); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("remove finalizer: %w", err)
	}
	return ctrl.Result{}, nil
}

// orphanGateway removes the rollout's owner reference from the gateway
// objects that exist, so that garbage collection leaves them running. It
// never creates one: an object already gone (deleted by hand, or by the
// deletion of its namespace, where nothing new may be created) stays gone,
// and the rollout's deletion goes on.
func (r *PersistenceRolloutReconciler) orphanGateway(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout) error {
	objs := []client.Object{&appsv1.StatefulSet{}}
	names := []string{gatewayName(ro)}
	for _, svc := range gatewayServices(ro, false) {
		objs, names = append(objs, &corev1.Service{}), append(names, *svc.Name)
	}
	for i, obj := range objs {
		if err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: names[i]}, obj); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("orphan %s: %w", names[i], err)
		}
		refs := obj.GetOwnerReferences()
		kept := slices.DeleteFunc(slices.Clone(refs), func(o metav1.OwnerReference) bool { return o.UID == ro.UID })
		if len(kept) == len(refs) {
			continue
		}
		patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
		obj.SetOwnerReferences(kept)
		if err := r.Patch(ctx, obj, patch); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("orphan %s: %w", names[i], err)
		}
	}
	return nil
}

// rollbackAll rolls every cohort back to Legacy. It returns what it still
// waits for ("" when done).
func (r *PersistenceRolloutReconciler) rollbackAll(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, now time.Time) (string, error) {
	dsn, err := r.databaseURL(ctx, ro)
	if err != nil {
		return "", err
	}
	store, err := r.Stores.Get(ctx, dsn)
	if err != nil {
		return "", err
	}
	key := rolloutKey(ro)
	states, err := store.Cohorts(ctx, key)
	if err != nil {
		return "", err
	}
	var maxEpoch int64
	for name, st := range states {
		if st.Stage == dataplane.StageLegacyRetired {
			return "", fmt.Errorf("cohort %s retired legacy writes, so rolling it back would lose work; set deletionPolicy: Retain to delete the rollout", name)
		}
		if st.Stage != dataplane.StageLegacy {
			st2, err := store.SetStage(ctx, dataplane.StageChange{Key: dataplane.CohortKey{Rollout: key, Cohort: name},
				ExpectEpoch: st.Epoch, Stage: dataplane.StageLegacy, Attempt: st.Attempt,
				Outcome: dataplane.OutcomeRolledBack, Reason: "RolloutDeleted",
				Message: fmt.Sprintf("rolled cohort %s back from %s to Legacy because the rollout is deleted", name, st.Stage), At: now})
			if err != nil {
				return "", err
			}
			if r.Recorder != nil {
				r.Recorder.Eventf(ro, nil, corev1.EventTypeNormal, "RolloutDeleted", "StageChange",
					"rolled cohort %s back from %s to Legacy because the rollout is deleted (epoch %d)", name, st.Stage, st2.Epoch)
			}
			st = st2
		}
		maxEpoch = max(maxEpoch, st.Epoch)
	}
	reports, err := store.ShardReports(ctx, key)
	if err != nil {
		return "", err
	}
	// Live shards must observe the rollback before their gateway goes; a
	// shard that no longer reports reads the stage in its next save anyway.
	live, behind := 0, 0
	for _, rep := range reports {
		if rep.Shard >= int(ro.Spec.Gateway.Shards) || now.Sub(rep.ReportedAt) > ro.Spec.Gates.MaxReportAge.Duration {
			continue
		}
		live++
		if rep.ObservedEpoch < maxEpoch {
			behind++
		}
	}
	if behind > 0 {
		return fmt.Sprintf("%d/%d live shards to observe epoch %d", behind, live, maxEpoch), nil
	}
	if err := store.ForgetRollout(ctx, key); err != nil {
		return "", err
	}
	return "", nil
}
