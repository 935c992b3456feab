package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
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
//     writes, before any cohort is rolled back: switch the policy to
//     Retain to delete anyway, every cohort where it was. Refused the same
//     way (reason DatabaseRefused, a Warning Event) while the database
//     Secret names a database that is not the rollout's, or one restored
//     from an older backup (checkDatabase): nothing is written there, and
//     the rollout is not let go with its cohorts where they were in its
//     own database. While the deletion waits, status shows it
//     (applyRollbackStatus).
//
// RollbackToLegacy needs the database Secret. Without it (deleted first,
// or its key gone) the deletion is held, with a Warning Event and the Ready
// condition saying what is missing, until the Secret is back or the policy
// is switched to Retain: skipping the rollback could leave students on a
// store the person deleting the rollout meant to leave. The one exception
// is a namespace being deleted, which deletes the Secret too: nothing may be
// created in it again, so the Secret can never come back and holding the
// rollout would hang the namespace in Terminating for good. There the
// finalizer gives up: it changes nothing in PostgreSQL (every cohort keeps
// its stage and the rollout's control rows stay, as with Retain, for a
// rollout of the same namespace and name to adopt), says so in the log, the
// manager's metrics and a Warning Event (which the namespace may refuse),
// naming the stages last seen, and lets the rollout go.
// A data plane that cannot be reached is not given up on: that passes.
func (r *PersistenceRolloutReconciler) finalize(ctx context.Context, ro, original *persistencev1alpha1.PersistenceRollout) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	if !controllerutil.ContainsFinalizer(ro, Finalizer) {
		return ctrl.Result{}, nil
	}
	now := r.Clock.Now()
	if ro.Spec.DeletionPolicy == persistencev1alpha1.DeletionRollbackToLegacy {
		// Bounded as a reconcile's data-plane work is: a database that
		// stopped answering holds the deletion, saying so, not the worker.
		dctx, cancel := context.WithTimeout(ctx, r.dataPlaneTimeout())
		rb, err := r.rollbackAll(dctx, ro, now)
		err = r.dataPlaneTimedOut(ctx, dctx, err)
		cancel()
		waiting := rb.waiting
		var nm notManaging
		if errors.As(err, &nm) {
			// Another object manages the rollout in its database: this
			// one's deletion is not its to roll back.
			log.Info("deleted without rolling back: another object manages the rollout in its database", "manager", nm.UID)
			if r.Recorder != nil {
				r.Recorder.Eventf(ro, nil, corev1.EventTypeNormal, reasonNotManaging, "Delete", "%s", nm.Error())
			}
			waiting, err = "", nil
		}
		if errors.Is(err, errNoDSN) {
			terminating, nsErr := r.namespaceTerminating(ctx, ro.Namespace)
			if nsErr != nil {
				return ctrl.Result{}, nsErr
			}
			if !terminating {
				return r.holdForDatabaseSecret(ctx, ro, original, err, now)
			}
			if c := meta.FindStatusCondition(ro.Status.Conditions, persistencev1alpha1.ConditionReady); c != nil &&
				c.Reason == persistencev1alpha1.ReasonRolledBackForDeletion {
				// The rollback is done in PostgreSQL; the namespace's
				// deletion took the Secret while the shards were being
				// waited for. Nothing was abandoned.
				log.Info("the namespace is being deleted: every cohort was rolled back to Legacy; not waiting for the shards to observe it")
			} else {
				r.abandonRollback(ctx, ro, err)
			}
			waiting, err = "", nil
		}
		if err != nil || waiting != "" {
			msg := "deletion waits for " + waiting
			reason := persistencev1alpha1.ReasonRolledBackForDeletion // rollbackAll waits only once every cohort is at Legacy
			var forgot databaseForgot
			switch {
			case errors.As(err, &forgot):
				msg, reason = "deletion blocked: "+forgot.forDeletion(), persistencev1alpha1.ReasonDatabaseRefused
			case errors.Is(err, errDatabaseRestored):
				msg, reason = "deletion blocked: "+err.Error(), persistencev1alpha1.ReasonDatabaseRefused
			case err != nil:
				msg, reason = "deletion blocked: "+err.Error(), persistencev1alpha1.ReasonDeleting
			}
			if reason == persistencev1alpha1.ReasonDatabaseRefused && r.Recorder != nil {
				// Once, as the deletion starts waiting on it: the
				// condition says it for as long as it lasts.
				if c := meta.FindStatusCondition(ro.Status.Conditions, persistencev1alpha1.ConditionReady); c == nil || c.Reason != reason {
					r.Recorder.Eventf(ro, nil, corev1.EventTypeWarning, reason, "Delete", "%s", msg)
				}
			}
			// What the deletion did is what people watch for: every
			// cohort at Legacy as it gets there, in the columns and
			// conditions, not the rollout as it was before.
			applyRollbackStatus(ro, rb, err == nil, now)
			setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg, now)
			ro.Status.WaitingFor = msg
			if perr := r.patchStatus(ctx, original, ro); perr != nil {
				return ctrl.Result{}, perr
			}
			return ctrl.Result{RequeueAfter: r.poll()}, nil
		}
	} else {
		// A manager held up with a decision made before the deletion (an
		// old leader) must not move a cohort once the rollout is gone:
		// nobody would be left to judge its gates or roll it back. Best
		// effort, and briefly: Retain needs no database (its Secret may be
		// gone, the server down), and must not wait for one.
		err := r.recordDeletion(ctx, ro)
		var nm notManaging
		switch {
		case errors.As(err, &nm):
			log.Info("deleted without recording anything: another object manages the rollout in its database", "manager", nm.UID)
			if r.Recorder != nil {
				r.Recorder.Eventf(ro, nil, corev1.EventTypeNormal, reasonNotManaging, "Delete", "%s", nm.Error())
			}
		case err != nil:
			log.Info("deletion not recorded in the data plane; Retain goes on", "err", err.Error())
		}
		if err := r.orphanGateway(ctx, ro); err != nil {
			return ctrl.Result{}, err
		}
		if r.Recorder != nil && nm.UID == "" {
			r.Recorder.Eventf(ro, nil, corev1.EventTypeNormal, "Retained", "Delete",
				"rollout deleted with deletionPolicy Retain: every cohort keeps its stage in PostgreSQL and the gateway keeps serving")
		}
		log.Info("retained stages and orphaned the gateway on deletion")
	}
	forgetCohortMetrics(ro)
	patch := client.MergeFromWithOptions(ro.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(ro, Finalizer)
	if err := r.Patch(ctx, ro, patch); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("remove finalizer: %w", err)
	}
	return ctrl.Result{}, nil
}

// recordDeletion records the deleted object's generation (the deletion
// made it a new one) as acted on, within a few seconds.
func (r *PersistenceRolloutReconciler) recordDeletion(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	store, err := r.dataPlane(ctx, ro)
	if err != nil {
		return err
	}
	// Nothing of a rollout another object manages, nor in another
	// database than the rollout's (its Secret swapped).
	if err := managing(ctx, ro, store); err != nil {
		return err
	}
	if err := sameDatabase(ctx, ro, store); err != nil {
		return err
	}
	if err := store.SpecSeen(ctx, rolloutKey(ro), string(ro.UID), ro.Generation); err != nil && !errors.Is(err, dataplane.ErrStaleSpec) {
		return err
	}
	// The next object of this name takes the rollout over at once.
	return store.ReleaseRollout(ctx, rolloutKey(ro), string(ro.UID))
}

// reasonNotManaging is the Event of the deletion (either policy) of an
// object that did not manage its rollout in the database.
const reasonNotManaging = "NotManaging"

// notManaging is the finding that another object manages the rollout in
// its database (its claim, dataplane.Store.RolloutClaim).
type notManaging struct {
	rollout string
	dataplane.Claim
}

func (e notManaging) Error() string {
	return fmt.Sprintf("nothing rolled back or recorded: rollout %s in its database is managed by another object (uid %s, since %s)",
		e.rollout, e.UID, e.Since.UTC().Format(time.RFC3339))
}

// managing is notManaging when another object's claim on the rollout is
// recorded (one released counts too: this object never took it over), nil
// when the claim is this object's or none is recorded.
func managing(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, store dataplane.Store) error {
	c, found, err := store.RolloutClaim(ctx, rolloutKey(ro))
	if err != nil {
		return err
	}
	if found && ro.UID != "" && c.UID != string(ro.UID) {
		return notManaging{rollout: rolloutKey(ro), Claim: c}
	}
	return nil
}

// namespaceTerminating reports whether the namespace is being deleted (or
// is gone).
func (r *PersistenceRolloutReconciler) namespaceTerminating(ctx context.Context, name string) (bool, error) {
	var ns corev1.Namespace
	if err := r.Get(ctx, types.NamespacedName{Name: name}, &ns); err != nil {
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("namespace %s: %w", name, err)
	}
	return !ns.DeletionTimestamp.IsZero() || ns.Status.Phase == corev1.NamespaceTerminating, nil
}

// holdForDatabaseSecret keeps a RollbackToLegacy deletion waiting for its
// database Secret, and says so: in the Ready condition and waitingFor, and
// in a Warning Event when it starts waiting.
func (r *PersistenceRolloutReconciler) holdForDatabaseSecret(ctx context.Context, ro, original *persistencev1alpha1.PersistenceRollout, cause error, now time.Time) (ctrl.Result, error) {
	ref := ro.Spec.Database.SecretRef
	msg := fmt.Sprintf("deletion waits to roll every cohort back to Legacy: %v; restore it, or set deletionPolicy: Retain to delete the rollout without rolling back", cause)
	if c := meta.FindStatusCondition(ro.Status.Conditions, persistencev1alpha1.ConditionReady); (c == nil || c.Reason != persistencev1alpha1.ReasonDatabaseSecretMissing) && r.Recorder != nil {
		r.Recorder.Eventf(ro, nil, corev1.EventTypeWarning, persistencev1alpha1.ReasonDatabaseSecretMissing, "Delete", "%s", msg)
	}
	setCondition(ro, persistencev1alpha1.ConditionReady, metav1.ConditionFalse, persistencev1alpha1.ReasonDatabaseSecretMissing, msg, now)
	ro.Status.WaitingFor = fmt.Sprintf("the database Secret %s to roll every cohort back to Legacy", ref.Name)
	// The deletion is the generation acted on: it is held, and says so.
	ro.Status.ObservedGeneration = ro.Generation
	if err := r.patchStatus(ctx, original, ro); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.poll()}, nil
}

// abandonRollback records that a RollbackToLegacy deletion in a namespace
// being deleted could not roll back: PostgreSQL is left as it is.
func (r *PersistenceRolloutReconciler) abandonRollback(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, cause error) {
	var seen []string
	for _, c := range ro.Status.Cohorts {
		if c.Stage != "" {
			seen = append(seen, fmt.Sprintf("%s at %s (epoch %d)", c.Name, c.Stage, c.Epoch))
		}
	}
	last := "none started"
	if len(seen) > 0 {
		last = strings.Join(seen, ", ")
	}
	msg := fmt.Sprintf("namespace %s is being deleted and with it the database connection (%v): the cohorts were not rolled back to Legacy "+
		"and keep their stages in PostgreSQL, as with deletionPolicy Retain (last seen: %s)", ro.Namespace, cause, last)
	logf.FromContext(ctx).Error(cause, "RollbackToLegacy abandoned: the namespace is being deleted and the database Secret is gone; stages stay in PostgreSQL",
		"cohorts", last)
	rollbacksAbandoned.WithLabelValues(ro.Namespace, ro.Name).Inc()
	// Best effort: a terminating namespace refuses new Events.
	if r.Recorder != nil {
		r.Recorder.Eventf(ro, nil, corev1.EventTypeWarning, "RollbackAbandoned", "Delete", "%s", msg)
	}
}

// orphanGateway removes the rollout's owner reference from the gateway
// objects that exist, so that garbage collection leaves them running. It
// never creates one: an object already gone (deleted by hand, or by the
// deletion of its namespace, where nothing new may be created) stays gone,
// and the rollout's deletion goes on.
func (r *PersistenceRolloutReconciler) orphanGateway(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout) error {
	objs := []client.Object{&appsv1.StatefulSet{}, &policyv1.PodDisruptionBudget{}}
	names := []string{gatewayName(ro), gatewayName(ro)}
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

// reasonRolloutDeleted is the reason, in the audit trail and Events, of a
// cohort's rollback by a RollbackToLegacy deletion.
const reasonRolloutDeleted = "RolloutDeleted"

// rollback is how far a RollbackToLegacy deletion got: what it waits for
// ("" when done) and what it saw on the way, for status.
type rollback struct {
	waiting string
	// states are the rollout's cohorts as PostgreSQL has them, each rolled
	// back cohort at Legacy as soon as it is (nil: none read yet).
	states  map[string]dataplane.CohortState
	history []dataplane.StageRecord
	// live shards report fresh; observed[e] counts those of them that
	// observed epoch e or later, for each cohort's epoch e.
	live, shards int
	observed     map[int64]int
	maxEpoch     int64
}

// rollbackAll rolls every cohort back to Legacy. It returns what it still
// waits for ("" when done) and what it saw, also when it fails part way:
// the cohorts it rolled back are at Legacy, and status says so.
func (r *PersistenceRolloutReconciler) rollbackAll(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, now time.Time) (rollback, error) {
	rb := rollback{shards: int(ro.Spec.Gateway.Shards)}
	store, err := r.dataPlane(ctx, ro)
	if err != nil {
		return rb, err
	}
	// Nothing of a rollout another object manages (checked first:
	// checkDatabase may write).
	if err := managing(ctx, ro, store); err != nil {
		return rb, err
	}
	// Not in a database that is not the one the rollout ran on (its
	// Secret swapped: another environment's, an empty server), nor one
	// that went back in time: rolling back there, and forgetting the
	// rollout, would change a database that is not this rollout's and let
	// the rollout go with its cohorts where they were in its own. Nothing
	// is written before this.
	if err := r.checkDatabase(ctx, ro, store); err != nil {
		return rb, err
	}
	key := rolloutKey(ro)
	// Recorded first, so that a manager held up with a decision made
	// before the deletion (an old leader) cannot move a cohort after the
	// rollback below has passed it.
	if err := store.SpecSeen(ctx, key, string(ro.UID), ro.Generation); err != nil && !errors.Is(err, dataplane.ErrStaleSpec) {
		return rb, err
	}
	states, err := store.Cohorts(ctx, key)
	if err != nil {
		return rb, err
	}
	// Again on what is rolled back (restored since checkDatabase read it).
	if err := restoredDatabase(ro, states); err != nil {
		if _, ok := restoreAcknowledged(ro, err); !ok {
			return rb, err
		}
	}
	rb.states = states
	// Refused before any cohort is rolled back, not at the retired one
	// (in the map's random order): a refused deletion changes nothing, so
	// the Retain it asks for keeps every cohort where it was.
	names := slices.Sorted(maps.Keys(states))
	for _, name := range names {
		if states[name].Stage == dataplane.StageLegacyRetired {
			return rb, fmt.Errorf("cohort %s retired legacy writes, so rolling it back would lose work; set deletionPolicy: Retain to delete the rollout", name)
		}
	}
	for _, name := range names {
		st := states[name]
		if st.Stage != dataplane.StageLegacy {
			st2, err := store.SetStage(ctx, dataplane.StageChange{Key: dataplane.CohortKey{Rollout: key, Cohort: name},
				ExpectEpoch: st.Epoch, Stage: dataplane.StageLegacy, Attempt: st.Attempt,
				Outcome: dataplane.OutcomeRolledBack, Reason: reasonRolloutDeleted,
				Message: fmt.Sprintf("rolled cohort %s back from %s to Legacy because the rollout is deleted", name, st.Stage), At: now})
			if err != nil {
				return rb, err
			}
			if r.Recorder != nil {
				r.Recorder.Eventf(ro, nil, corev1.EventTypeNormal, reasonRolloutDeleted, "StageChange",
					"rolled cohort %s back from %s to Legacy because the rollout is deleted (epoch %d)", name, st.Stage, st2.Epoch)
			}
			st = st2
			states[name] = st
		}
		rb.maxEpoch = max(rb.maxEpoch, st.Epoch)
	}
	// Best effort, for status only: the audit trail names the rollbacks.
	if history, err := store.History(ctx, key, persistencev1alpha1.MaxHistory); err == nil {
		rb.history = history
	}
	reports, err := store.ShardReports(ctx, key)
	if err != nil {
		return rb, err
	}
	// Reports are aged by the clock that stamped them.
	dbNow, err := store.Now(ctx)
	if err != nil {
		return rb, err
	}
	// Live shards must observe the rollback before their gateway goes; a
	// shard that no longer reports reads the stage in its next save anyway.
	rb.observed = map[int64]int{}
	for _, st := range states {
		rb.observed[st.Epoch] = 0
	}
	for _, rep := range reports {
		if rep.Shard >= rb.shards || dbNow.Sub(rep.ReportedAt) > ro.Spec.Gates.MaxReportAge.Duration {
			continue
		}
		rb.live++
		for epoch := range rb.observed {
			if rep.ObservedEpoch >= epoch {
				rb.observed[epoch]++
			}
		}
	}
	if behind := rb.live - rb.observed[rb.maxEpoch]; behind > 0 && len(states) > 0 {
		rb.waiting = fmt.Sprintf("%d/%d live shards to observe epoch %d", behind, rb.live, rb.maxEpoch)
		return rb, nil
	}
	if err := store.ForgetRollout(ctx, key, string(ro.UID)); err != nil {
		return rb, err
	}
	return rb, nil
}
