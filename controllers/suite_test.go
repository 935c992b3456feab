package controllers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/migrations"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// The suite runs a real API server and etcd (envtest), a real PostgreSQL
// (pgharness) and the controller in a manager, with a fake clock the tests
// step. Tests play the shards by writing their reports through the data
// plane, and assert through a client that reads the API server directly.

var (
	k8s        client.Client
	scheme     = runtime.NewScheme()
	fakeClock  = clocktesting.NewFakeClock(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC))
	kubeconfig string
	restConfig *rest.Config
)

func assetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	out, err := exec.Command("../hack/build-envtest.sh", "--print-dir").Output()
	if err != nil {
		return "", fmt.Errorf("find envtest binaries: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err != nil {
		return "", fmt.Errorf("no kube-apiserver in %s: run `make envtest` first", dir)
	}
	return dir, nil
}

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(persistencev1alpha1.AddToScheme(scheme))
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr), zap.Level(zapcore.Level(zapLevel()))))

	assets, err := assetsDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	restConfig, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()

	user, err := env.AddUser(envtest.User{Name: "platform-team", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "add user:", err)
		return 1
	}
	kc, err := user.KubeConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeconfig:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "controllers-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	k8s, err = client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}

	// The manager runs with no more rights than the role the chart and
	// config/rbac give it (generated from the controller's RBAC markers):
	// a verb the controller needs and the role lacks fails the suite.
	managerConfig, err := asManagerServiceAccount(context.Background(), k8s, restConfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager role:", err)
		return 1
	}
	mgr, err := ctrl.NewManager(managerConfig, ctrl.Options{Scheme: scheme, Client: ManagerClientOptions(), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	// A shorter wait than a manager's, for the tests of a database that
	// does not answer: a reconcile waits 4 s for a data plane, while its
	// connect goes on for 10 s. The fake clock is the data plane's too
	// (PostgreSQL's now() does not step): soaks and report ages are timed
	// by it.
	stores := &dataplane.Cache{OpenWait: 4 * time.Second, ConnectTimeout: 10 * time.Second, Now: fakeClock.Now}
	defer stores.Close()
	if err := (&PersistenceRolloutReconciler{
		Client:       laggingCache{mgr.GetClient()},
		APIReader:    mgr.GetAPIReader(),
		Recorder:     mgr.GetEventRecorder("persistencerollout-controller"),
		Clock:        fakeClock,
		Stores:       stores,
		PollInterval: 100 * time.Millisecond,
		// Shorter than a manager's minute, for the test of a database
		// that stops answering; far above what a reconcile's queries
		// take here.
		DataPlaneTimeout: 8 * time.Second,
	}).SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped:", err)
		}
	}()
	code := pgharness.Run(m)
	cancel()
	<-done
	return code
}

// heldStatefulSets stands in for an informer that has not yet delivered
// the latest version of a StatefulSet: while a test holds a copy here (by
// namespace/name), the controller's cached reads of that StatefulSet return
// the copy. How soon a real informer catches up after a write is a matter of
// timing; holding the copy makes a test of the lag deterministic.
var heldStatefulSets sync.Map // client.ObjectKey -> *appsv1.StatefulSet

// heldRollouts does the same for PersistenceRollouts: an informer that has
// not yet delivered a spec edit (review of spec-edit races).
var heldRollouts sync.Map // client.ObjectKey -> *persistencev1alpha1.PersistenceRollout

// laggingCache is the manager's client, with StatefulSets a test holds
// served from heldStatefulSets.
type laggingCache struct{ client.Client }

func (c laggingCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if sts, ok := obj.(*appsv1.StatefulSet); ok {
		if held, ok := heldStatefulSets.Load(key); ok {
			held.(*appsv1.StatefulSet).DeepCopyInto(sts)
			return nil
		}
	}
	if ro, ok := obj.(*persistencev1alpha1.PersistenceRollout); ok {
		if held, ok := heldRollouts.Load(key); ok {
			held.(*persistencev1alpha1.PersistenceRollout).DeepCopyInto(ro)
			return nil
		}
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// asManagerServiceAccount binds the generated manager role
// (config/rbac/role.yaml) to the manager's service account and returns cfg
// impersonating it.
func asManagerServiceAccount(ctx context.Context, c client.Client, cfg *rest.Config) (*rest.Config, error) {
	raw, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(raw, &role); err != nil {
		return nil, fmt.Errorf("role.yaml: %w", err)
	}
	const ns, sa = "persistence-operator-system", "persistence-operator-controller-manager"
	if err := c.Create(ctx, &role); err != nil {
		return nil, err
	}
	if err := c.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "manager-rolebinding"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}},
	}); err != nil {
		return nil, err
	}
	out := rest.CopyConfig(cfg)
	out.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + sa}
	return out, nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func zapLevel() int8 {
	if os.Getenv("TEST_VERBOSE_CONTROLLER") != "" {
		return -1
	}
	return 1 // errors only: keep test output readable
}

// fixture is one test's namespace, database and data plane.
type fixture struct {
	t     *testing.T
	g     Gomega
	ns    string
	dsn   string
	pool  *pgxpool.Pool
	store *dataplane.Postgres
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(20 * time.Second)
	g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	f := &fixture{t: t, g: g, dsn: pgharness.ForTest(t)}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, f.dsn)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(pool.Close)
	g.Expect(migrations.Up(ctx, pool)).To(Succeed())
	f.pool = pool
	f.store = dataplane.NewPostgres(pool).WithClock(fakeClock.Now)

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rollout-test-"}}
	g.Expect(k8s.Create(ctx, ns)).To(Succeed())
	f.ns = ns.Name
	g.Expect(k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: f.ns},
		Data:       map[string][]byte{"dsn": []byte(f.dsn)},
	})).To(Succeed())
	t.Cleanup(func() {
		// Leave nothing for the controller to work on after the database
		// is dropped.
		var list persistencev1alpha1.PersistenceRolloutList
		_ = k8s.List(ctx, &list, client.InNamespace(f.ns))
		for i := range list.Items {
			ro := &list.Items[i]
			_ = k8s.Delete(ctx, ro)
		}
		g.Eventually(func() int {
			_ = k8s.List(ctx, &list, client.InNamespace(f.ns))
			return len(list.Items)
		}).Should(BeZero())
	})
	return f
}

// rollout returns a valid rollout with cohorts of the given names, each
// listing one school, 2 shards, soak 1m, post-flip soak 30s.
func (f *fixture) rollout(name string, cohorts ...string) *persistencev1alpha1.PersistenceRollout {
	ro := &persistencev1alpha1.PersistenceRollout{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: persistencev1alpha1.PersistenceRolloutSpec{
			Gateway:  persistencev1alpha1.GatewaySpec{Image: "persistence-operator:test", Shards: 2},
			Database: persistencev1alpha1.DatabaseSpec{SecretRef: persistencev1alpha1.SecretKeyRef{Name: "db", Key: "dsn"}},
			Gates:    persistencev1alpha1.IntegrityGates{MaxReportAge: metav1.Duration{Duration: time.Hour}},
		},
	}
	for _, c := range cohorts {
		ro.Spec.Cohorts = append(ro.Spec.Cohorts, persistencev1alpha1.CohortSpec{
			Name: c, Tenants: []string{c + "-school"},
			Soak: metav1.Duration{Duration: time.Minute}, PostFlipSoak: &metav1.Duration{Duration: 30 * time.Second},
		})
	}
	return ro
}

func (f *fixture) get(name string) *persistencev1alpha1.PersistenceRollout {
	var ro persistencev1alpha1.PersistenceRollout
	f.g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, &ro)).To(Succeed())
	return &ro
}

// update re-reads the rollout, applies mutate and writes it, retrying on
// conflicts with the controller's finalizer write.
func (f *fixture) update(name string, mutate func(*persistencev1alpha1.PersistenceRollout)) {
	f.g.Eventually(func() error {
		ro := f.get(name)
		mutate(ro)
		return k8s.Update(context.Background(), ro)
	}).Should(Succeed())
}

// cohort returns a cohort's status once it satisfies cond.
func (f *fixture) cohortStatus(name, cohort string) persistencev1alpha1.CohortStatus {
	for _, c := range f.get(name).Status.Cohorts {
		if c.Name == cohort {
			return c
		}
	}
	return persistencev1alpha1.CohortStatus{}
}

// waitStage waits until the cohort's recorded stage is stage and returns its
// state in PostgreSQL.
func (f *fixture) waitStage(name, cohort string, stage persistencev1alpha1.Stage) dataplane.CohortState {
	f.t.Helper()
	var st dataplane.CohortState
	f.g.Eventually(func() string {
		states, err := f.store.Cohorts(context.Background(), f.ns+"/"+name)
		if err != nil {
			return err.Error()
		}
		st = states[cohort]
		return st.Stage
	}).Should(Equal(string(stage)), "cohort %s should reach %s", cohort, stage)
	// ...and status shows it.
	f.g.Eventually(func() persistencev1alpha1.Stage { return f.cohortStatus(name, cohort).Stage }).Should(Equal(stage))
	return st
}

// shardReport is what a test shard says.
type shardReport struct {
	observed   int64
	mismatched int64
	gaps       int64
	backfill   bool
	// unverified: documents no verification pass has checked yet at the
	// epoch (of the 5 reported).
	unverified int64
	// skew: how far the shard's clock is ahead of the manager's (and the
	// data plane's).
	skew time.Duration
	// countsAge: the counts were taken that long before the report (by a
	// verification pass).
	countsAge time.Duration
	// ownClock: the shard's syncer is of a release that stamped reports
	// by its node's clock, not the data plane's (during an upgrade).
	ownClock bool
}

// report plays shard i: it has observed the rollout's current epoch (unless
// r.observed says otherwise) and reports the given counts for every frozen
// cohort at that cohort's current epoch, stamped with the fake clock's time
// (the data plane's; the shard's own if r.ownClock).
func (f *fixture) report(name string, shard int, r shardReport) {
	f.t.Helper()
	ctx := context.Background()
	states, err := f.store.Cohorts(ctx, f.ns+"/"+name)
	f.g.Expect(err).NotTo(HaveOccurred())
	at := fakeClock.Now().Add(r.skew)
	rep := dataplane.ShardReport{Rollout: f.ns + "/" + name, Shard: shard, ObservedEpoch: r.observed, ReportedAt: at, Holder: fmt.Sprintf("test-shard-%d", shard)}
	var maxEpoch int64
	for _, st := range states {
		maxEpoch = max(maxEpoch, st.Epoch)
		rep.Cohorts = append(rep.Cohorts, dataplane.CohortReport{Cohort: st.Cohort, Epoch: st.Epoch, Documents: 5, Backfilled: 5,
			BackfillComplete: r.backfill, Verified: 5 - r.mismatched - r.unverified, Mismatched: r.mismatched, EvidenceGaps: r.gaps, ReportedAt: at.Add(-r.countsAge)})
	}
	if r.observed == 0 {
		rep.ObservedEpoch = maxEpoch
	}
	f.g.Expect(f.store.ReportShard(ctx, rep)).To(Succeed())
	if r.ownClock {
		// What ReportShard wrote before the data plane stamped reports.
		_, err := f.pool.Exec(ctx, `UPDATE shard_reports SET reported_at = $3 WHERE rollout = $1 AND shard = $2`, rep.Rollout, shard, at)
		f.g.Expect(err).NotTo(HaveOccurred())
		_, err = f.pool.Exec(ctx, `UPDATE shard_cohort_reports SET reported_at = $3 WHERE rollout = $1 AND shard = $2`, rep.Rollout, shard, at)
		f.g.Expect(err).NotTo(HaveOccurred())
	}
}

// healthyShards plays both shards reporting healthy counts.
func (f *fixture) healthyShards(name string) {
	f.report(name, 0, shardReport{backfill: true})
	f.report(name, 1, shardReport{backfill: true})
}

func (f *fixture) events(name string) []string {
	var list eventsv1.EventList
	f.g.Expect(k8s.List(context.Background(), &list, client.InNamespace(f.ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e.Reason+": "+e.Note)
		}
	}
	return out
}

// gatewayPods plays the StatefulSet controller and the kubelet (both absent
// in envtest): it writes the gateway StatefulSet's status, with ready pods
// of which updated run revision rev, and the current revision cur.
func (f *fixture) gatewayPods(name string, ready, updated int32, cur, rev string) {
	f.t.Helper()
	ctx := context.Background()
	f.g.Eventually(func() error {
		var sts appsv1.StatefulSet
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: name + "-gateway"}, &sts); err != nil {
			return err
		}
		sts.Status = appsv1.StatefulSetStatus{
			ObservedGeneration: sts.Generation, Replicas: *sts.Spec.Replicas,
			ReadyReplicas: ready, AvailableReplicas: ready, CurrentReplicas: *sts.Spec.Replicas - updated, UpdatedReplicas: updated,
			CurrentRevision: cur, UpdateRevision: rev,
		}
		if cur == rev {
			sts.Status.CurrentReplicas = updated
		}
		return k8s.Status().Update(ctx, &sts)
	}).Should(Succeed())
}

// gatewayRolledOut plays a finished rollout of the gateway StatefulSet:
// every shard's pod ready at the current revision.
func (f *fixture) gatewayRolledOut(name string) {
	f.t.Helper()
	f.gatewayPods(name, f.get(name).Spec.Gateway.Shards, f.get(name).Spec.Gateway.Shards, name+"-gateway-1", name+"-gateway-1")
}

// ready is the rollout's Ready condition as "Status/Reason: Message" ("" if
// none yet).
// gone reports whether the rollout is deleted from the API server.
func (f *fixture) gone(name string) bool {
	return apierrors.IsNotFound(k8s.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, &persistencev1alpha1.PersistenceRollout{}))
}

// editDatabaseSecret edits the data of the rollouts' database Secret "db",
// as a person would.
func (f *fixture) editDatabaseSecret(edit func(data map[string][]byte)) {
	f.t.Helper()
	f.g.Eventually(func() error {
		var s corev1.Secret
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "db"}, &s); err != nil {
			return err
		}
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		edit(s.Data)
		return k8s.Update(context.Background(), &s)
	}).Should(Succeed())
}

func (f *fixture) ready(name string) string {
	c := condition(f.get(name), persistencev1alpha1.ConditionReady)
	if c == nil {
		return ""
	}
	return string(c.Status) + "/" + c.Reason + ": " + c.Message
}

// rollToRevision2 plays the StatefulSet controller rolling the two gateway
// pods of a rollout from revision 1 to 2, and checks that Ready follows:
// False while one pod of two runs the new template, True once both do.
func (f *fixture) rollToRevision2(name string) {
	f.t.Helper()
	ready := func() string { return f.ready(name) }
	old, cur := name+"-gateway-1", name+"-gateway-2"
	f.gatewayPods(name, 2, 1, old, cur)
	f.g.Eventually(ready).Should(Equal("False/GatewayNotReady: 2/2 gateway pods ready, 2/2 shards report; " +
		"waiting for the rolling update to revision " + cur + " (1/2 gateway pods updated)"))
	f.gatewayPods(name, 2, 2, cur, cur)
	f.g.Eventually(ready).Should(Equal("True/GatewayReady: 2/2 gateway pods ready, 2/2 shards report"))
}

// rollBackAndRename rolls cohort from of a rollout back to Legacy through
// its intent, then renames it to to (the way to rename a started cohort).
func (f *fixture) rollBackAndRename(name, from, to string) {
	f.t.Helper()
	cohort := func(ro *persistencev1alpha1.PersistenceRollout) *persistencev1alpha1.CohortSpec {
		for i := range ro.Spec.Cohorts {
			if ro.Spec.Cohorts[i].Name == from {
				return &ro.Spec.Cohorts[i]
			}
		}
		f.t.Fatalf("rollout %s has no cohort %s", name, from)
		return nil
	}
	f.update(name, func(ro *persistencev1alpha1.PersistenceRollout) {
		cohort(ro).Intent = persistencev1alpha1.IntentRollback
	})
	f.waitStage(name, from, persistencev1alpha1.StageLegacy)
	f.update(name, func(ro *persistencev1alpha1.PersistenceRollout) {
		c := cohort(ro)
		c.Name, c.Intent = to, ""
	})
}
