// Package controllers holds the PersistenceRollout controller: it runs the
// sync gateway, walks cohorts through their stages in PostgreSQL (through
// internal/dataplane, never with SQL of its own), gates every promotion on the
// shards' integrity reports, and reports what it sees in status, Events and
// metrics.
//
// The files split the work: persistencerollout_controller.go wires and does
// I/O, stages.go decides (pure), status.go derives status and conditions
// (pure), gateway.go builds the owned objects, finalizer.go handles deletion.
package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

// Finalizer keeps a rollout until its deletion policy has been carried out.
const Finalizer = "persistence.yawp.dev/deletion-policy"

// FieldOwner is the server-side apply field manager of the controller.
const FieldOwner = client.FieldOwner("persistence-operator")

// StoreSource opens the data plane behind a DSN. Get must give up on a
// database that does not answer within a bound (dataplane.Cache waits
// OpenWait), so that a reconcile reports it rather than wait for good.
type StoreSource interface {
	Get(ctx context.Context, dsn string) (dataplane.Store, error)
}

// PersistenceRolloutReconciler reconciles PersistenceRollouts.
type PersistenceRolloutReconciler struct {
	client.Client
	// APIReader reads the rollout from the API server, not the informer
	// cache: a decision (a promotion, the point of no return, a rollback)
	// must be made on the spec as it is, not on one a person has since
	// edited (intent Hold or Rollback, paused, gates). Nil: the cache.
	APIReader client.Reader
	// Recorder records Events on rollouts.
	Recorder events.EventRecorder
	// Clock is the manager's time source: of conditions' transition times
	// and of records never compared with the data plane's times (when a
	// cohort left the spec, the audit trail of a deletion). Soaks and
	// report ages are timed by the data plane's clock (dataplane.Store
	// Now), which stamps them: the manager's node clock may be off from
	// the syncers' nodes' by seconds or more.
	Clock clock.PassiveClock
	// Stores opens the data plane named by a rollout's database Secret.
	Stores StoreSource
	// PollInterval is how often shard reports are re-read while a rollout
	// is in progress. Defaults to 5s.
	PollInterval time.Duration
	// OutsideEvery is how often the schools in no cohort are counted
	// again (an anti-join over every school: 60 ms at 100,000 of them);
	// between counts status keeps the last one. Zero: every reconcile.
	OutsideEvery time.Duration
	// MaxConcurrentReconciles is how many rollouts are reconciled at once
	// (one reconcile per rollout at a time, always). More than one, so that
	// a rollout whose database is slow to answer (a reconcile waits up to
	// the Stores' bound for it) does not hold up the others. Defaults to
	// DefaultMaxConcurrentReconciles.
	MaxConcurrentReconciles int
	// DataPlaneTimeout bounds the data-plane work of one reconcile
	// (registering, reading the reports, acting on them); past it the
	// rollout reports DataPlaneError and the reconcile is tried again.
	// Defaults to DefaultDataPlaneTimeout.
	DataPlaneTimeout time.Duration

	outsideMu sync.Mutex
	outside   map[string]outsideCount
}

// outsideCount is a rollout's last count of schools in no cohort.
type outsideCount struct {
	at     time.Time
	n      int64
	sample []string
}

// schoolsOutside counts the schools in no cohort, at most every
// OutsideEvery per rollout (by the wall clock: a count is a cost, not a
// decision).
func (r *PersistenceRolloutReconciler) schoolsOutside(ctx context.Context, key string, store dataplane.Store) (int64, []string, error) {
	r.outsideMu.Lock()
	c, ok := r.outside[key]
	r.outsideMu.Unlock()
	if ok && r.OutsideEvery > 0 && time.Since(c.at) < r.OutsideEvery {
		return c.n, c.sample, nil
	}
	n, sample, err := store.SchoolsOutsideCohorts(ctx, outsideSampleSize)
	if err != nil {
		return 0, nil, err
	}
	r.outsideMu.Lock()
	if r.outside == nil {
		r.outside = map[string]outsideCount{}
	}
	r.outside[key] = outsideCount{at: time.Now(), n: n, sample: sample}
	r.outsideMu.Unlock()
	return n, sample, nil
}

// The controller writes with patches and server-side apply only (never an
// Update or a Delete: a rollout's gateway goes by garbage collection), so
// its role grants no update or delete; the controllers suite runs the
// manager under the generated role.
// +kubebuilder:rbac:groups=persistence.yawp.dev,resources=persistencerollouts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=persistence.yawp.dev,resources=persistencerollouts/status,verbs=patch
// +kubebuilder:rbac:groups=persistence.yawp.dev,resources=persistencerollouts/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// errRequeue asks for a prompt requeue after a data-plane write.
var errRequeue = errors.New("requeue")

// Reconcile moves one rollout one step.
func (r *PersistenceRolloutReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx).WithValues("rollout", req.NamespacedName)
	ctx = logf.IntoContext(ctx, log)

	// 1. Read the rollout.
	var ro persistencev1alpha1.PersistenceRollout
	if err := r.rolloutReader().Get(ctx, req.NamespacedName, &ro); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone, maybe without our finalizer's cleanup (a person removed
			// the finalizer from a deletion that waited): its series must
			// not outlive it, or its last Ready=0 alerts for good.
			ro.Namespace, ro.Name = req.Namespace, req.Name
			forgetCohortMetrics(&ro)
			r.outsideMu.Lock()
			delete(r.outside, rolloutKey(&ro))
			r.outsideMu.Unlock()
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	original := ro.DeepCopy()

	// 2. Deletion carries out the deletion policy.
	if !ro.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &ro, original)
	}
	if controllerutil.AddFinalizer(&ro, Finalizer) {
		// A patch of the finalizers alone: an Update sends the whole
		// object as Go writes it ("10m" becomes "10m0s", a false bool
		// disappears), which made the next `kubectl apply` of the
		// unchanged manifest a change.
		if err := r.Patch(ctx, &ro, client.MergeFromWithOptions(original, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
		original = ro.DeepCopy()
	}

	// 3. The gateway StatefulSet and Services. A refused apply (a spec the
	// API server rejects in a way the CRD cannot foresee) must not stop the
	// rest: the gates and rollbacks below judge the shards' reports, which
	// the pods of the last applied template keep sending. It is recorded in
	// status and the apply is tried again at every poll.
	//
	// Not while the data plane records another shard count (a rollout
	// deleted with Retain and created again with another spec.gateway.
	// shards): documents are placed by a hash modulo the count, so the
	// live gateway would route them by a count they were not placed with,
	// and a rolling scale-up could let two shards write one document.
	// The refusal is reported below (Degraded, DataPlaneError).
	//
	// Nor while the schema is not known to be at this version: the data
	// plane could not be opened, which migrates it (an upgrade whose
	// migration failed, migrations.ErrNotMigrated, or a database that
	// could not be reached to migrate it or to read its version). Pods of
	// this version could not run on a schema that is not at it, and the
	// StatefulSet would replace a serving pod of the earlier version with
	// one that waits for the schema, taking its shard down. Reported the
	// same way, saying the gateway waits; tried again at every poll. A
	// data plane opened before (its schema migrated by this process) that
	// fails later is no question of the schema: the gateway is applied.
	//
	// Nor, above all, while the database refuses the rollout: it serves
	// another rollout (one database serves one rollout), or this object's
	// rollout was forgotten there by its deletion. Its syncers, given the
	// same DSN, would write the other rollout's documents under a shard
	// count and epochs that are not theirs: two gateways writing one
	// database. A refused rollout gets no gateway (none is created, and
	// one it has keeps its last template, not rolled onto the DSN that
	// names the other's database); reported the same way, and tried again
	// at every poll, so it takes the database once it is free. So with a
	// database that has no record of the cohorts status shows started
	// (sameDatabase): the Secret names another database than the
	// rollout's, and the pods are not rolled onto it; and with one whose
	// cohorts are at lower epochs than status shows (restoredDatabase: a
	// restored backup), until the platform team acknowledges it.
	var gw gatewayPods
	var gwErr error
	// The data plane's part of the reconcile (register, read, act) is
	// bounded: a database that opened fine and then stopped answering (the
	// server hung, its TCP connection up) would otherwise hold this
	// rollout's reconcile, and a worker, for good, and its status would go
	// on saying all is well. Status is written on ctx, so the rollout says
	// so (Degraded, DataPlaneError).
	dctx, cancelDP := context.WithTimeout(ctx, r.dataPlaneTimeout())
	defer cancelDP()
	store, checkedDSN, regErr := r.register(dctx, &ro)
	regErr = explainRefusal(r.dataPlaneTimedOut(ctx, dctx, regErr))
	if gatewayHeld(regErr) {
		log.Error(regErr, "gateway left as it is")
		gw = r.cachedGatewayPods(ctx, &ro)
	} else {
		gw, gwErr = r.applyGateway(ctx, &ro, true, checkedDSN)
		if gwErr != nil {
			log.Error(gwErr, "gateway not applied")
			gw = r.cachedGatewayPods(ctx, &ro)
		}
		if gwErr == nil && regErr == nil {
			// Its pods' template names this object: syncers told another
			// (an object of this name deleted with Retain) take no shard
			// from now on, until they are rolled onto it.
			regErr = r.dataPlaneTimedOut(ctx, dctx, store.RecordRolloutObject(dctx, rolloutKey(&ro), string(ro.UID)))
		}
	}

	// 4. Read the data plane.
	now := r.Clock.Now()
	obs, err := observation{}, regErr
	if err == nil {
		obs, err = r.observe(dctx, &ro, store)
		err = r.dataPlaneTimedOut(ctx, dctx, err)
	}
	if errors.Is(err, dataplane.ErrStaleSpec) {
		// Our read of the spec is older than one acted on already: read
		// it again, and report nothing from the old one. Returned as an
		// error, so the retries back off (from 50 ms up to the poll
		// interval) and the log says why: with the live reads the manager
		// makes it passes at once, unless the API server went back in
		// time (etcd restored from a backup), when the spec must be
		// edited past the generation the data plane recorded.
		return ctrl.Result{}, fmt.Errorf("spec generation %d of %s: %w", ro.Generation, req.NamespacedName, err)
	}
	if errors.Is(err, dataplane.ErrRolloutClaimed) {
		var claimed *dataplane.ClaimedError
		if rc := (rolloutClaimed{}); !errors.As(err, &rc) && errors.As(err, &claimed) {
			err = rolloutClaimed{claimed} // taken over while this reconcile was under way
		}
		log.Error(err, "the rollout is another object's in its database")
		if c := meta.FindStatusCondition(ro.Status.Conditions, persistencev1alpha1.ConditionReady); (c == nil || c.Reason != persistencev1alpha1.ReasonRolloutClaimed) && r.Recorder != nil {
			r.Recorder.Eventf(&ro, nil, corev1.EventTypeWarning, persistencev1alpha1.ReasonRolloutClaimed, "Register", "%s", err.Error())
		}
		setRolloutClaimed(&ro, err, now)
		ro.Status.ReadyShards = gw.ready
		return ctrl.Result{RequeueAfter: r.poll()}, r.patchStatus(ctx, original, &ro)
	}
	if err != nil {
		log.Error(err, "data plane unreachable")
		setDataPlaneError(&ro, err, now)
		if gwErr != nil {
			setGatewayApplyError(&ro, gwErr, now)
		}
		ro.Status.ReadyShards = gw.ready
		return ctrl.Result{RequeueAfter: r.poll()}, r.patchStatus(ctx, original, &ro)
	}

	// 5. Decide, 6. act, 7. report. Decisions go by the data plane's
	// clock (dbNow), which stamps reports and soaks; conditions by ours.
	dbNow := obs.now
	out := plan(planInput{now: dbNow, spec: ro.Spec, cohorts: obs.cohorts, removed: obs.removedNames(), poll: r.poll()})
	if len(out.actions) > 0 && r.APIReader != nil {
		// The spec may have been edited while the gateway was applied and
		// the data plane read: decide again on the edit.
		var live persistencev1alpha1.PersistenceRollout
		if err := r.APIReader.Get(ctx, req.NamespacedName, &live); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		// Another UID: deleted and created again under the same name.
		if live.UID != ro.UID || live.Generation != ro.Generation || !live.DeletionTimestamp.IsZero() {
			return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
		}
	}
	wrote, actErr := r.execute(dctx, &ro, obs.store, out.actions, dbNow)
	// What was seen was seen, whatever another cohort's action did: a
	// recurring error there must not restart every soak.
	if seenErr := r.recordSoakSeen(dctx, &ro, obs, dbNow); actErr == nil {
		actErr = seenErr
	}
	actErr = r.dataPlaneTimedOut(ctx, dctx, actErr)
	if wrote {
		// Re-read what was written so status shows the new stages.
		if obs2, err := r.observe(dctx, &ro, store); err == nil {
			obs, dbNow = obs2, obs2.now
			out = plan(planInput{now: dbNow, spec: ro.Spec, cohorts: obs.cohorts, removed: obs.removedNames(), poll: r.poll()})
		}
	}
	applyStatus(&ro, obs, out, gw, now)
	if actErr != nil && !errors.Is(actErr, errRequeue) {
		setDataPlaneError(&ro, actErr, now)
	}
	if gwErr != nil {
		setGatewayApplyError(&ro, gwErr, now)
	}
	if err := r.patchStatus(ctx, original, &ro); err != nil {
		return ctrl.Result{}, err
	}
	if actErr != nil && !errors.Is(actErr, errRequeue) {
		return ctrl.Result{}, actErr
	}
	if gwErr != nil && !wrote {
		// Not returned as an error: its backoff grows to minutes, and the
		// gates must keep being judged at the poll interval meanwhile.
		return ctrl.Result{RequeueAfter: r.poll()}, nil
	}
	return r.next(out, wrote), nil
}

// specRef names the generation of the rollout's spec a decision is made on.
func specRef(ro *persistencev1alpha1.PersistenceRollout) dataplane.SpecRef {
	return dataplane.SpecRef{UID: string(ro.UID), Generation: ro.Generation}
}

func (r *PersistenceRolloutReconciler) rolloutReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// recordSoakSeen records, for every soaking cohort whose every shard
// reported fresh at its epoch, that the controller saw it now.
func (r *PersistenceRolloutReconciler) recordSoakSeen(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, obs observation, now time.Time) error {
	for _, c := range obs.cohorts {
		st := stageOf(c.state)
		if (st != persistencev1alpha1.StageVerify && st != persistencev1alpha1.StageLocalFirst) || !c.sum.allFresh() {
			continue
		}
		if err := obs.store.SoakSeen(ctx, dataplane.CohortKey{Rollout: rolloutKey(ro), Cohort: c.spec.Name}, c.state.Epoch, now); err != nil {
			return err
		}
	}
	return nil
}

// cachedGatewayPods judges the gateway StatefulSet as last cached, when
// our apply was refused: its pods still run the last template applied.
func (r *PersistenceRolloutReconciler) cachedGatewayPods(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout) gatewayPods {
	var sts appsv1.StatefulSet
	if err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: gatewayName(ro)}, &sts); err != nil {
		return observeGatewayPods(nil, ro.Spec.Gateway.Shards)
	}
	return observeGatewayPods(&sts, ro.Spec.Gateway.Shards)
}

func (r *PersistenceRolloutReconciler) poll() time.Duration {
	if r.PollInterval > 0 {
		return r.PollInterval
	}
	return 5 * time.Second
}

// next says when to look again: at once after a write (the next stage may
// already be due), at the end of a soak, and at the poll interval while
// anything is in flight, since shard reports arrive in PostgreSQL, which
// cannot be watched.
func (r *PersistenceRolloutReconciler) next(out planOutput, wrote bool) ctrl.Result {
	if wrote {
		return ctrl.Result{RequeueAfter: time.Millisecond}
	}
	after := r.poll()
	if out.requeue > 0 && out.requeue < after {
		after = out.requeue
	}
	return ctrl.Result{RequeueAfter: after}
}

// observation is what the controller read from the data plane.
type observation struct {
	store dataplane.Store
	// now is the data plane's time, read after the cohorts and reports:
	// soaks and report ages are timed by it.
	now     time.Time
	cohorts []cohortInput
	history []dataplane.StageRecord
	// alive counts shards whose own report (their heartbeat) is fresh.
	alive int
	// removed are cohorts in PostgreSQL that are no longer in the spec, are
	// on their way (left Legacy, not done) and have members, by name.
	removed []dataplane.CohortState
	// outside counts the schools in no cohort; outsideSample names some.
	outside       int64
	outsideSample []string
}

// outsideSampleSize is how many schools outside every cohort status names.
const outsideSampleSize = 5

// removedNames are the names of the removed cohorts, sorted.
func (o observation) removedNames() []string {
	names := make([]string, len(o.removed))
	for i, st := range o.removed {
		names[i] = st.Cohort
	}
	return names
}

// dataPlane opens the data plane named by the rollout's database Secret
// (read from the API server: once per reconcile).
func (r *PersistenceRolloutReconciler) dataPlane(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout) (dataplane.Store, error) {
	store, _, err := r.dataPlaneAt(ctx, ro)
	return store, err
}

// dataPlaneAt is dataPlane, with the DSN it read.
func (r *PersistenceRolloutReconciler) dataPlaneAt(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout) (dataplane.Store, string, error) {
	dsn, err := r.databaseURL(ctx, ro)
	if err != nil {
		return nil, "", err
	}
	store, err := r.Stores.Get(ctx, dsn)
	if err != nil {
		return nil, "", schemaUnconfirmed{err}
	}
	return store, dsn, nil
}

// errSchemaUnconfirmed marks a dataPlane error of opening the data plane,
// which migrates its schema (dataplane.Open): whether the migration failed
// (migrations.ErrNotMigrated) or the database could not be reached at all
// (connection refused, a timeout, a password refused), nothing confirmed
// that the schema is at this version. A Secret that could not be read is
// not one: nothing was asked of the database.
var errSchemaUnconfirmed = errors.New("the schema is not confirmed at this version")

// schemaUnconfirmed is an error that is errSchemaUnconfirmed, with the
// message of its cause.
type schemaUnconfirmed struct{ error }

func (e schemaUnconfirmed) Is(target error) bool { return target == errSchemaUnconfirmed }
func (e schemaUnconfirmed) Unwrap() error        { return e.error }

// register opens the data plane and registers the rollout with its shard
// count (a no-op once registered): dataplane.ErrShardsChanged if another
// count is recorded. A database that is not the one the rollout ran on
// (checkDatabase) is refused before anything is written there. dsn is
// the database Secret's value it checked.
func (r *PersistenceRolloutReconciler) register(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout) (store dataplane.Store, dsn string, err error) {
	store, dsn, err = r.dataPlaneAt(ctx, ro)
	if err != nil {
		return nil, "", err
	}
	// Whose the rollout is comes first: checkDatabase may write (a
	// restored database acknowledged), and only the object that manages
	// the rollout may.
	if err := r.claimOrTakeOver(ctx, ro, store); err != nil {
		return nil, "", err
	}
	if err := r.checkDatabase(ctx, ro, store); err != nil {
		return nil, "", err
	}
	err = store.RegisterRollout(ctx, rolloutKey(ro), string(ro.UID), int(ro.Spec.Gateway.Shards))
	var claimed *dataplane.ClaimedError
	if errors.As(err, &claimed) {
		err = rolloutClaimed{claimed}
	}
	return store, dsn, err
}

// claimOrTakeOver refuses (rolloutClaimed) an object whose rollout another
// object manages in the database and has not let go, unless this one
// carries the take-over annotation naming that object, when it takes the
// rollout over. It writes nothing otherwise; RegisterRollout claims a
// rollout nobody manages.
func (r *PersistenceRolloutReconciler) claimOrTakeOver(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, store dataplane.Store) error {
	key, uid := rolloutKey(ro), string(ro.UID)
	c, found, err := store.RolloutClaim(ctx, key)
	if err != nil || !found || uid == "" || c.UID == uid || c.Released {
		return err
	}
	if ro.Annotations[AnnotationTakeOverFrom] != c.UID {
		return rolloutClaimed{&dataplane.ClaimedError{Rollout: key, UID: c.UID, Since: c.Since}}
	}
	if err := store.TakeOverRollout(ctx, key, c.UID, uid); err != nil {
		var claimed *dataplane.ClaimedError
		if errors.As(err, &claimed) {
			return rolloutClaimed{claimed}
		}
		return err
	}
	logf.FromContext(ctx).Info("took the rollout over from another object, as the take-over annotation says", "from", c.UID)
	if r.Recorder != nil {
		r.Recorder.Eventf(ro, nil, corev1.EventTypeWarning, reasonTookOver, "Register",
			"took rollout %s over from object %s, as annotation %s says: that object manages it no more", key, c.UID, AnnotationTakeOverFrom)
	}
	return nil
}

// explainRefusal adds to a registration's refusal what it means for the
// gateway and what to do.
func explainRefusal(regErr error) error {
	switch {
	case errors.Is(regErr, errSchemaUnconfirmed):
		return fmt.Errorf("%w; the gateway keeps its last template until the schema is confirmed at this version", regErr)
	case errors.Is(regErr, dataplane.ErrDatabaseInUse):
		return fmt.Errorf("%w; this rollout gets no gateway while the database serves another (two gateways would write the same documents): "+
			"point spec.database at a database of its own", regErr)
	case errors.Is(regErr, errDatabaseForgot) || errors.Is(regErr, errDatabaseRestored):
		return fmt.Errorf("%w (the gateway keeps its last template meanwhile)", regErr)
	}
	return regErr
}

// gatewayHeld reports whether a registration's refusal keeps the gateway
// as it is (none created, one there not rolled; see Reconcile, step 3).
func gatewayHeld(regErr error) bool {
	for _, target := range []error{dataplane.ErrShardsChanged, errSchemaUnconfirmed, dataplane.ErrDatabaseInUse,
		dataplane.ErrRolloutForgotten, errDatabaseForgot, errDatabaseRestored, dataplane.ErrRolloutClaimed} {
		if errors.Is(regErr, target) {
			return true
		}
	}
	return false
}

// AnnotationTakeOverFrom, set on a rollout to the UID a RolloutClaimed
// refusal names, says that the object of that UID is gone for good (a
// cluster that was lost, an object deleted while its database could not
// record it): the rollout in the database is taken over by this object,
// as it stands, and the other may change nothing there any more. Inert
// once taken over.
const AnnotationTakeOverFrom = "persistence.yawp.dev/take-over-from"

// reasonTookOver is the Event of a take-over.
const reasonTookOver = "TookOver"

// rolloutClaimed is the refusal of a rollout that another object manages
// in the database, saying what to do.
type rolloutClaimed struct{ *dataplane.ClaimedError }

func (e rolloutClaimed) Unwrap() error { return e.ClaimedError }

func (e rolloutClaimed) Error() string {
	ns, name, _ := strings.Cut(e.Rollout, "/")
	return e.ClaimedError.Error() + ": another cluster's operator has this database, or an object of this name was deleted " +
		"without its deletion reaching the database. This object changes nothing there and gets no gateway. " +
		"If that object is gone for good, take the rollout over: kubectl annotate -n " + ns + " persistencerollout " +
		name + " " + AnnotationTakeOverFrom + "=" + e.UID
}

// errDatabaseForgot marks a database that has no record of the rollout
// although its status shows cohorts started: the database Secret names
// another database than the one the rollout ran on.
var errDatabaseForgot = errors.New("the database has no record of the rollout")

// databaseForgot is an error that is errDatabaseForgot. Its finding is
// what the database lacks; what a person does about it depends on whether
// the rollout is running (Error) or being deleted (forDeletion).
type databaseForgot struct{ finding string }

func (e databaseForgot) Is(target error) bool { return target == errDatabaseForgot }

func (e databaseForgot) Error() string {
	return e.finding + ". Point it at that database again; to start the rollout over on this one, " +
		"delete the rollout with deletionPolicy: Retain and create it again"
}

// forDeletion is the refusal of a RollbackToLegacy deletion: nothing is
// rolled back in a database that is not the rollout's, and the rollout is
// not let go either, since its own database still has its cohorts where
// they were.
func (e databaseForgot) forDeletion() string {
	return e.finding + ", so nothing is rolled back there. Point the Secret at that database again and the deletion " +
		"rolls every cohort back to Legacy; or set deletionPolicy: Retain to delete the rollout, every cohort keeping its stage"
}

// sameDatabase refuses a database that has no cohort of the rollout while
// its status shows one started. A cohort's row is never deleted while its
// rollout exists (ForgetRollout runs at the deletion only), and status
// shows only what was read from it; so the Secret now names another
// database (an empty one, or another environment's), and the rollout would
// start over there from Legacy, with its gateway rolled onto a database
// that does not hold its students' documents. Checked before registering,
// so that the other database is left as it was. A database that has the
// cohorts at lower epochs (a restored backup) is restoredDatabase's.
func sameDatabase(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, store dataplane.Store) error {
	_, err := databaseStates(ctx, ro, store)
	return err
}

// databaseStates reads the rollout's cohorts from store, refusing a
// database with none of them while status shows one started (see
// sameDatabase). nil states: status shows none started, nothing was read.
func databaseStates(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, store dataplane.Store) (map[string]dataplane.CohortState, error) {
	var started *persistencev1alpha1.CohortStatus
	for i, c := range ro.Status.Cohorts {
		if c.Stage != "" && c.Epoch > 0 {
			started = &ro.Status.Cohorts[i]
			break
		}
	}
	if started == nil {
		return nil, nil
	}
	states, err := store.Cohorts(ctx, rolloutKey(ro))
	if err != nil {
		return nil, err
	}
	if len(states) > 0 {
		return states, nil
	}
	return nil, databaseForgot{fmt.Sprintf("the database has no record of cohort %s, which status shows at %s (epoch %d): "+
		"the database Secret %s may name another database than the one this rollout ran on",
		started.Name, started.Stage, started.Epoch, ro.Spec.Database.SecretRef.Name)}
}

// AnnotationAcceptRestoredDatabase, set on a rollout to the epoch a
// refusal of a restored database names, says that the platform team knows
// the database was restored from a backup taken before the rollout's last
// decisions, and wants the rollout to go on from the stages the database
// has. The controller first stamps every cohort under a new epoch above
// the one named (dataplane.Store.RestampPast), so that no epoch a shard
// may have observed is used again; it is then inert, and can be removed.
const AnnotationAcceptRestoredDatabase = "persistence.yawp.dev/accept-restored-database"

// reasonDatabaseRestored is the reason, in the audit trail and Events, of
// the new epochs a restored database's cohorts are stamped under.
const reasonDatabaseRestored = "DatabaseRestored"

// errDatabaseRestored marks a database whose cohorts are at lower epochs
// than status shows: it was restored from an older backup.
var errDatabaseRestored = errors.New("the database is older than the rollout's status")

// databaseRestored is an error that is errDatabaseRestored.
type databaseRestored struct {
	finding string
	// past is the highest epoch status shows: the one to acknowledge.
	past int64
	name string
}

func (e databaseRestored) Is(target error) bool { return target == errDatabaseRestored }

func (e databaseRestored) Error() string {
	return fmt.Sprintf("%s. Nothing is decided on it: its next epochs would be ones the shards may have observed with other stages, "+
		"and fencing takes epochs to only grow. If the Secret names the wrong database, point it at the right one; to go on from "+
		"the stages this database has (work written after its backup is not in it), run `kubectl annotate persistencerollout %s %s=%d`: "+
		"every cohort is stamped under a new epoch above %d, soaks start again, and the rollout goes on", e.finding, e.name, AnnotationAcceptRestoredDatabase, e.past, e.past)
}

// restoredDatabase refuses a database that has a cohort of the rollout at
// a lower epoch than status shows (or none of a cohort status shows
// started, while it has others): epochs only grow, so the database went
// back in time, restored from a backup taken before the rollout's last
// decisions. Going on there would hand out again epochs that the shards
// may have observed, under other stages: a syncer's verification verdicts
// and the barrier are keyed by epoch. states are the database's cohorts
// (nil: none started in status, nothing to compare).
func restoredDatabase(ro *persistencev1alpha1.PersistenceRollout, states map[string]dataplane.CohortState) error {
	if states == nil {
		return nil
	}
	var past int64
	finding := ""
	for _, c := range ro.Status.Cohorts {
		if c.Stage == "" || c.Epoch <= 0 {
			continue
		}
		past = max(past, c.Epoch)
		if finding != "" {
			continue
		}
		st, ok := states[c.Name]
		switch {
		case !ok:
			finding = fmt.Sprintf("the database has no record of cohort %s, which status shows at %s (epoch %d), while it has others of the rollout", c.Name, c.Stage, c.Epoch)
		case st.Epoch < c.Epoch:
			finding = fmt.Sprintf("the database has cohort %s at %s (epoch %d), which status shows at %s (epoch %d)", c.Name, st.Stage, st.Epoch, c.Stage, c.Epoch)
		}
	}
	if finding == "" {
		return nil
	}
	return databaseRestored{finding: finding + ": it was restored from an older backup, or the Secret names another copy of it", past: past, name: ro.Name}
}

// restoreAcknowledged reports whether err is nil, or a restoredDatabase
// refusal the rollout's AnnotationAcceptRestoredDatabase acknowledges,
// and then the epoch it names.
func restoreAcknowledged(ro *persistencev1alpha1.PersistenceRollout, err error) (int64, bool) {
	if err == nil {
		return 0, true
	}
	var restored databaseRestored
	if !errors.As(err, &restored) {
		return 0, false
	}
	acked, perr := strconv.ParseInt(ro.Annotations[AnnotationAcceptRestoredDatabase], 10, 64)
	if perr != nil || acked < restored.past {
		return 0, false
	}
	return acked, true
}

// checkDatabase refuses a database that is not the one the rollout ran on,
// or that went back in time, before anything is written there; with the
// restored database acknowledged (AnnotationAcceptRestoredDatabase at the
// highest epoch status shows, or above), it stamps every cohort under a
// new epoch above it first, and lets the rollout go on.
func (r *PersistenceRolloutReconciler) checkDatabase(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, store dataplane.Store) error {
	states, err := databaseStates(ctx, ro, store)
	if err != nil {
		return err
	}
	err = restoredDatabase(ro, states)
	if err == nil {
		return nil
	}
	acked, ok := restoreAcknowledged(ro, err)
	if !ok {
		return err
	}
	// The spec check of every decision: a manager that read an older
	// generation than one acted on writes nothing.
	if err := store.SpecSeen(ctx, rolloutKey(ro), string(ro.UID), ro.Generation); err != nil {
		return err
	}
	restamped, err := store.RestampPast(ctx, rolloutKey(ro), specRef(ro), acked, reasonDatabaseRestored,
		fmt.Sprintf("the database was restored from a backup older than epoch %d (acknowledged by %s): stamped under a new epoch, so that no epoch shards may have observed is used again", acked, AnnotationAcceptRestoredDatabase),
		r.Clock.Now())
	if err != nil {
		return err
	}
	logf.FromContext(ctx).Info("restored database acknowledged: every cohort stamped under a new epoch", "past", acked, "cohorts", len(restamped))
	if r.Recorder != nil {
		for _, st := range restamped {
			r.Recorder.Eventf(ro, nil, corev1.EventTypeWarning, reasonDatabaseRestored, "StageChange",
				"cohort %s stays at %s under epoch %d, above epoch %d that status showed before the database was restored; its soak starts again", st.Cohort, st.Stage, st.Epoch, acked)
		}
	}
	return nil
}

// observe reads every cohort's row and the shards' reports of a rollout
// register registered.
func (r *PersistenceRolloutReconciler) observe(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, store dataplane.Store) (observation, error) {
	key := rolloutKey(ro)
	// A manager that read an older spec than one acted on already (an old
	// leader, held up while a person edited the rollout and the new leader
	// acted on the edit) writes nothing: a Hold or a pause writes nothing
	// that moves a cohort's epoch, so the epoch compare-and-set alone let
	// its promotion through. Every write below carries the generation too.
	if err := store.SpecSeen(ctx, key, string(ro.UID), ro.Generation); err != nil {
		return observation{}, err
	}
	if err := r.markCohortsInSpec(ctx, ro, store); err != nil {
		return observation{}, err
	}
	states, err := store.Cohorts(ctx, key)
	if err != nil {
		return observation{}, err
	}
	// Checked again on what is decided on: a database restored after
	// register checked it (a reconcile in flight meanwhile) would
	// otherwise be acted on, and status overwritten with its older
	// epochs, which would leave nothing to tell it went back in time.
	if err := restoredDatabase(ro, states); err != nil {
		if _, ok := restoreAcknowledged(ro, err); !ok {
			return observation{}, fmt.Errorf("%w (the gateway keeps its last template meanwhile)", err)
		}
	}
	reports, err := store.ShardReports(ctx, key)
	if err != nil {
		return observation{}, err
	}
	history, err := store.History(ctx, key, persistencev1alpha1.MaxHistory)
	if err != nil {
		return observation{}, err
	}
	outside, sample, err := r.schoolsOutside(ctx, key, store)
	if err != nil {
		return observation{}, err
	}
	now, err := store.Now(ctx)
	if err != nil {
		return observation{}, err
	}
	obs := observation{store: store, now: now, cohorts: make([]cohortInput, len(ro.Spec.Cohorts)), history: history,
		outside: outside, outsideSample: sample}
	for _, rep := range reports {
		if rep.Shard < int(ro.Spec.Gateway.Shards) && reportFresh(rep.ReportedAt, now, ro.Spec.Gates.MaxReportAge.Duration) {
			obs.alive++
		}
	}
	inSpec := map[string]bool{}
	for _, c := range ro.Spec.Cohorts {
		inSpec[c.Name] = true
	}
	// A removed cohort without members (say, one renamed back before any
	// school was frozen into it) concerns nobody, and stays so: it takes no
	// newly seen school while it is out of the spec.
	for name, st := range states {
		if !inSpec[name] && unfinished(persistencev1alpha1.Stage(st.Stage)) && st.Members > 0 {
			obs.removed = append(obs.removed, st)
		}
	}
	slices.SortFunc(obs.removed, func(a, b dataplane.CohortState) int { return strings.Compare(a.Cohort, b.Cohort) })
	for i, c := range ro.Spec.Cohorts {
		in := cohortInput{spec: c, index: i}
		if st, ok := states[c.Name]; ok {
			in.state = &st
			in.sum = summarize(reports, int(ro.Spec.Gateway.Shards), c.Name, st.Epoch, now, ro.Spec.Gates.MaxReportAge.Duration)
		} else {
			in.sum = summary{shards: int(ro.Spec.Gateway.Shards)}
		}
		obs.cohorts[i] = in
	}
	return obs, nil
}

// markCohortsInSpec tells the data plane which cohorts the spec has. A
// cohort removed from the spec, or renamed (which removes its old name),
// keeps its row and its schools in PostgreSQL, since memberships are never
// moved; but its stored selector still matched the buckets of schools seen
// for the first time, which then joined a cohort the spec no longer has
// (rolled back, or Yjs-authoritative) instead of where the spec puts them.
// Marked removed, it takes no new school; back under its name, it takes
// them again by the rule it was frozen with.
func (r *PersistenceRolloutReconciler) markCohortsInSpec(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, store dataplane.Store) error {
	names := make([]string, len(ro.Spec.Cohorts))
	for i, c := range ro.Spec.Cohorts {
		names[i] = c.Name
	}
	removed, restored, err := store.MarkCohortsInSpec(ctx, rolloutKey(ro), specRef(ro), names, r.Clock.Now())
	if err != nil {
		return err
	}
	log := logf.FromContext(ctx)
	for _, c := range removed {
		log.Info("cohort removed from the spec: it keeps its schools and takes no newly seen school", "cohort", c)
		if r.Recorder != nil {
			r.Recorder.Eventf(ro, nil, corev1.EventTypeNormal, "CohortRemovedFromSpec", "MarkCohorts",
				"cohort %s is no longer in the spec: its schools stay in it (memberships are never moved), and no school seen from now on joins it", c)
		}
	}
	for _, c := range restored {
		log.Info("cohort back in the spec: newly seen schools its buckets select join it again", "cohort", c)
		if r.Recorder != nil {
			r.Recorder.Eventf(ro, nil, corev1.EventTypeNormal, "CohortBackInSpec", "MarkCohorts",
				"cohort %s is back in the spec: schools seen from now on that the rule it was frozen with selects join it again; those seen while it was away stay where they were placed", c)
		}
	}
	return nil
}

// errNoDSN marks a databaseURL error that says the connection string does
// not exist (the Secret, or its key, is gone), as opposed to a failed read.
var errNoDSN = errors.New("no database connection string")

// ManagerClientOptions are the manager's client options: Secrets are read
// from the API server, one by name, never cached. A cached Get would
// start an informer over every Secret of the cluster (memory, and a list
// and watch permission on all of them); only the rollouts' database
// Secrets are read, once per reconcile.
func ManagerClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}}
}

// databaseURL reads the DSN from the rollout's database Secret.
func (r *PersistenceRolloutReconciler) databaseURL(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout) (string, error) {
	ref := ro.Spec.Database.SecretRef
	var s corev1.Secret
	if err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ref.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			// In our words: the API server's differ from the cache's.
			return "", noDSN{fmt.Errorf("database secret %s does not exist", ref.Name)}
		}
		return "", fmt.Errorf("database secret %s: %w", ref.Name, err)
	}
	dsn, ok := s.Data[ref.Key]
	if !ok || len(dsn) == 0 {
		return "", noDSN{fmt.Errorf("database secret %s has no key %q", ref.Name, ref.Key)}
	}
	return string(dsn), nil
}

// noDSN is an error that is errNoDSN, with the message of its cause.
type noDSN struct{ error }

func (e noDSN) Is(target error) bool { return target == errNoDSN }
func (e noDSN) Unwrap() error        { return e.error }

// execute carries out the plan's actions in order, announcing each decision
// in an Event and the log (the data plane keeps the audit trail). It stops
// at the first error and reports whether it wrote a decision.
func (r *PersistenceRolloutReconciler) execute(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, store dataplane.Store, actions []action, now time.Time) (bool, error) {
	log := logf.FromContext(ctx)
	wrote := false
	for _, a := range actions {
		key := dataplane.CohortKey{Rollout: rolloutKey(ro), Cohort: a.cohort}
		var epoch int64
		switch a.kind {
		case actFreeze:
			st, err := store.FreezeCohortAs(ctx, key, specRef(ro), a.position, a.selector, now)
			if errors.Is(err, dataplane.ErrStaleSpec) {
				return wrote, errRequeue
			}
			if err != nil {
				return wrote, err
			}
			epoch = st.Epoch
			a.message = fmt.Sprintf("%s: %d %s", a.message, st.Members, plural(int(st.Members), "school", "schools"))
			if n := st.HeldElsewhere - st.HeldOutsideSpec; n > 0 {
				// Overlapping selectors, as intended: a school stays in
				// the first cohort that took it.
				a.message = fmt.Sprintf("%s (%d more it selects are in cohorts that started earlier)", a.message, n)
			}
			if st.HeldOutsideSpec > 0 && r.Recorder != nil {
				r.Recorder.Eventf(ro, nil, corev1.EventTypeWarning, "SchoolsHeldElsewhere", "Freeze",
					"cohort %s selects %d schools that belong to cohorts no longer in the spec (a renamed or removed cohort keeps its schools: memberships are never moved); they stay there. Add the old cohort back under its name to move them",
					a.cohort, st.HeldOutsideSpec)
			}
		case actSetStage:
			spec := specRef(ro)
			st, err := store.SetStage(ctx, dataplane.StageChange{Key: key, ExpectEpoch: a.expectEpoch, ExpectSoakStartedAt: a.expectSoak, Stage: string(a.stage),
				Attempt: a.attempt, Outcome: string(a.outcome), Reason: a.reason, Message: a.message, At: now,
				SpecUID: spec.UID, SpecGeneration: spec.Generation})
			if errors.Is(err, dataplane.ErrEpochConflict) || errors.Is(err, dataplane.ErrStaleSpec) {
				// Someone else moved the cohort: decide again on fresh data.
				log.Info("cohort epoch moved under us; re-reading", "cohort", a.cohort)
				return wrote, errRequeue
			}
			if err != nil {
				return wrote, err
			}
			epoch = st.Epoch
		case actHalt:
			spec := specRef(ro)
			if err := store.HaltAttempt(ctx, dataplane.StageChange{Key: key, ExpectEpoch: a.expectEpoch,
				Reason: a.reason, Message: a.message, At: now, SpecUID: spec.UID, SpecGeneration: spec.Generation}); err != nil {
				if errors.Is(err, dataplane.ErrEpochConflict) || errors.Is(err, dataplane.ErrStaleSpec) {
					return wrote, errRequeue
				}
				return wrote, err
			}
			epoch = a.expectEpoch
		case actRestartSoak:
			if err := store.RestartSoak(ctx, key, a.expectEpoch, now); err != nil && !errors.Is(err, dataplane.ErrEpochConflict) {
				return wrote, err
			}
			continue // not a decision people need to hear about
		}
		log.Info(a.message, "cohort", a.cohort, "stage", a.stage, "epoch", epoch, "attempt", a.attempt, "reason", a.reason)
		eventType := corev1.EventTypeNormal
		if a.outcome == persistencev1alpha1.OutcomeRolledBack || a.outcome == persistencev1alpha1.OutcomeHalted {
			eventType = corev1.EventTypeWarning
		}
		if a.outcome == persistencev1alpha1.OutcomeRolledBack && a.reason == persistencev1alpha1.ReasonGateFailed {
			gateRollbacks.WithLabelValues(ro.Namespace, ro.Name, a.cohort).Inc()
		}
		if r.Recorder != nil {
			r.Recorder.Eventf(ro, nil, eventType, a.reason, "StageChange", "%s (epoch %d)", a.message, epoch)
		}
		wrote = true
	}
	return wrote, nil
}

// applyGateway applies the StatefulSet and Services and returns how far
// the gateway pods are.
//
// The pods are judged by the StatefulSet the apply answered with, never by
// the informer's cached copy: the cache may not have caught up with the
// write yet, and its old generation's status (observed, every pod ready and
// updated) would say a template change just written had already rolled out.
// The answer is the object as stored after our write: its generation is the
// one we wrote, and its status is what the StatefulSet controller has
// reported for it so far. Each change of that status reaches us as an event
// (Owns), and the next reconcile's apply answers with it.
//
// checkedDSN is the database Secret's value this reconcile checked the
// database of ("": none checked). A Secret edited since (between that read
// and this one) is not put on the pods: the gateway is applied by the
// next reconcile, which checks the database the Secret names now.
func (r *PersistenceRolloutReconciler) applyGateway(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, owned bool, checkedDSN string) (gatewayPods, error) {
	versions, err := r.podSecretVersions(ctx, ro, checkedDSN)
	if err != nil {
		return gatewayPods{}, err
	}
	applied := gatewayStatefulSet(ro, owned)
	applied.Spec.Template.WithAnnotations(map[string]string{AnnotationSecretVersions: versions})
	if err := r.Apply(ctx, applied, FieldOwner, client.ForceOwnership); err != nil {
		return gatewayPods{}, fmt.Errorf("apply gateway statefulset: %w", err)
	}
	for _, svc := range gatewayServices(ro, owned) {
		if err := r.Apply(ctx, svc, FieldOwner, client.ForceOwnership); err != nil {
			return gatewayPods{}, fmt.Errorf("apply service %s: %w", *svc.Name, err)
		}
	}
	if err := r.Apply(ctx, gatewayDisruptionBudget(ro, owned), FieldOwner, client.ForceOwnership); err != nil {
		return gatewayPods{}, fmt.Errorf("apply gateway pod disruption budget: %w", err)
	}
	sts, err := statefulSetOf(applied)
	if err != nil {
		return gatewayPods{}, fmt.Errorf("read the applied gateway statefulset: %w", err)
	}
	return observeGatewayPods(sts, ro.Spec.Gateway.Shards), nil
}

// podSecretVersions names, for every Secret key the gateway pods read
// through their environment, a digest of the value they would read
// ("name/key@digest"), for AnnotationSecretVersions; each Secret is read
// once. Only the bytes the pods read count: a label, an annotation or
// another key of the Secret changes nothing. A Secret or key that is
// missing keeps the entry the current template names ("absent" if none):
// a pod created from it could not start, and the running pods still hold
// the value they read. The syncers' service DSN (serviceSecretRef) is an
// error then, reported as the gateway not applied: the last template
// stays until it is there.
func (r *PersistenceRolloutReconciler) podSecretVersions(ctx context.Context, ro *persistencev1alpha1.PersistenceRollout, checkedDSN string) (string, error) {
	dsn, service := ro.Spec.Database.SecretRef, ro.Spec.Database.ServiceSecretRef != nil
	if service {
		dsn = *ro.Spec.Database.ServiceSecretRef
	}
	refs := []persistencev1alpha1.SecretKeyRef{dsn}
	if ref := ro.Spec.Gateway.TokenSecretRef; ref != nil {
		refs = append(refs, *ref)
	}
	prev := map[string]string{}
	var cur appsv1.StatefulSet
	if err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: gatewayName(ro)}, &cur); err == nil {
		for _, e := range strings.Split(cur.Spec.Template.Annotations[AnnotationSecretVersions], ",") {
			if k, v, ok := strings.Cut(e, "@"); ok {
				prev[k] = v
			}
		}
	}
	out := make([]string, 0, len(refs))
	for i, ref := range refs {
		name := ref.Name + "/" + ref.Key
		var s corev1.Secret
		err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: ref.Name}, &s)
		v, ok := s.Data[ref.Key]
		switch {
		case err != nil && !apierrors.IsNotFound(err):
			return "", fmt.Errorf("secret %s of the gateway pods: %w", ref.Name, err)
		case i == 0 && service && err != nil:
			return "", fmt.Errorf("the syncers' database Secret %s (spec.database.serviceSecretRef) does not exist", ref.Name)
		case i == 0 && service && len(v) == 0:
			return "", fmt.Errorf("the syncers' database Secret %s has no key %q (spec.database.serviceSecretRef)", ref.Name, ref.Key)
		case i == 0 && !service && checkedDSN != "" && ok && string(v) != checkedDSN:
			return "", fmt.Errorf("the database Secret %s changed while this reconcile checked the database it named before: "+
				"the gateway is applied once the next reconcile has checked the one it names now", ref.Name)
		case err != nil || !ok:
			was, seen := prev[name]
			if !seen {
				was = "absent"
			}
			out = append(out, name+"@"+was)
			continue
		}
		h := sha256.New()
		h.Write([]byte(s.UID))
		h.Write([]byte{0})
		h.Write(v)
		out = append(out, name+"@"+hex.EncodeToString(h.Sum(nil))[:16])
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ","), nil
}

// statefulSetOf converts the apply configuration the API server's answer
// was decoded into (client.Apply does that) into a StatefulSet.
func statefulSetOf(ac *appsv1ac.StatefulSetApplyConfiguration) (*appsv1.StatefulSet, error) {
	raw, err := json.Marshal(ac)
	if err != nil {
		return nil, err
	}
	var sts appsv1.StatefulSet
	if err := json.Unmarshal(raw, &sts); err != nil {
		return nil, err
	}
	if sts.Generation == 0 {
		// Every stored object has a generation: without one, this is not
		// the server's answer.
		return nil, errors.New("the apply answered with no generation")
	}
	return &sts, nil
}

// patchStatus writes status with an optimistic lock, skipping no-op writes.
// The metrics follow the status on every path that reports it (a data
// plane error and a waiting deletion included), so alerts read what
// kubectl shows.
func (r *PersistenceRolloutReconciler) patchStatus(ctx context.Context, original, ro *persistencev1alpha1.PersistenceRollout) error {
	recordCohortMetrics(ro)
	if statusEqual(original.Status, withSteadyReportTimes(ro.Status, original.Status)) {
		// Nothing changed but the shards' report times: status is not
		// rewritten at every poll for them (each write is an etcd
		// revision and an event to every watcher, forever once the
		// rollout is done).
		return nil
	}
	patch := client.MergeFromWithOptions(original, client.MergeFromWithOptimisticLock{})
	if err := r.Status().Patch(ctx, ro, patch); err != nil {
		if apierrors.IsConflict(err) {
			// A newer version exists; its reconcile will report.
			return nil
		}
		return fmt.Errorf("patch status: %w", err)
	}
	return nil
}

// failureBackoff is the controller's retry delay after a failed
// reconcile: doubling from 50 ms, as controller-runtime's default does,
// but never past the poll interval (the default grows to 16 minutes). A
// recurring error (one cohort's action the data plane keeps refusing, a
// database down for a while) otherwise left every rollout unlooked-at for
// minutes: gates not judged, and soaks restarted for a silence that was
// the controller's own. The bucket bounds the overall rate, as the
// default's does.
func failureBackoff(poll time.Duration) workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](50*time.Millisecond, poll),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}

// DefaultDataPlaneTimeout is the default of
// PersistenceRolloutReconciler.DataPlaneTimeout.
const DefaultDataPlaneTimeout = time.Minute

func (r *PersistenceRolloutReconciler) dataPlaneTimeout() time.Duration {
	if r.DataPlaneTimeout > 0 {
		return r.DataPlaneTimeout
	}
	return DefaultDataPlaneTimeout
}

// dataPlaneTimedOut says so when err came of dctx's deadline (the
// reconcile's data-plane work took longer than DataPlaneTimeout) rather
// than of the reconcile's own end.
func (r *PersistenceRolloutReconciler) dataPlaneTimedOut(ctx, dctx context.Context, err error) error {
	if err != nil && errors.Is(dctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("the database did not answer within %s (a reconcile's data-plane work is bounded so): %w", r.dataPlaneTimeout(), err)
	}
	return err
}

// DefaultMaxConcurrentReconciles is the default of
// PersistenceRolloutReconciler.MaxConcurrentReconciles.
const DefaultMaxConcurrentReconciles = 4

// SetupWithManager registers the controller.
//
// Reconciles of different rollouts run concurrently: what they share is
// safe for it (the Stores, which open each database once and lock none
// while they do; the counts of schools outside cohorts, under outsideMu;
// the metrics, whose series are per rollout). A database serves one
// rollout, which the data plane decides under a lock of its own
// (RegisterRollout), not by reconciles taking turns.
func (r *PersistenceRolloutReconciler) SetupWithManager(mgr ctrl.Manager) error {
	workers := r.MaxConcurrentReconciles
	if workers <= 0 {
		workers = DefaultMaxConcurrentReconciles
	}
	return ctrl.NewControllerManagedBy(mgr).
		WithOptions(controller.TypedOptions[reconcile.Request]{RateLimiter: failureBackoff(r.poll()), MaxConcurrentReconciles: workers}).
		For(&persistencev1alpha1.PersistenceRollout{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Named("persistencerollout").
		Complete(r)
}
