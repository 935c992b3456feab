// Package devenv runs the whole system on one machine: an embedded
// Kubernetes control plane (envtest's kube-apiserver and etcd), a PostgreSQL,
// the CRDs, the manager, and, standing in for the kubelet, one gateway+syncer
// process pair per pod of every gateway StatefulSet the controller creates,
// started with the environment the StatefulSet gives its pods. `make dev`
// (cmd/devenv) and the end-to-end tests use it, so both run the same thing.
//
// It owns processes and files under its state directory; it must not hold
// product logic.
package devenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/controllers"
	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/loadgen"
	"github.com/yawp/persistence-operator/internal/migrations"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

// Options configure an Env.
type Options struct {
	// CRDs is the directory of the CRDs to install.
	CRDs string
	// State is where PostgreSQL's data, the logs and the files for other
	// terminals go.
	State string
	// Bin holds the gateway and syncer binaries.
	Bin string
	// AssetsDir holds kube-apiserver and etcd ("" = $KUBEBUILDER_ASSETS).
	AssetsDir string
	// PGPort is PostgreSQL's port (0 = a free one).
	PGPort int
	// BasePort is the first local port of the shards' processes.
	BasePort int
	// Fsync keeps PostgreSQL durable (dev); tests may turn it off.
	Fsync bool
	// ManagerPorts: metrics and health probe addresses ("0" disables).
	MetricsAddr, ProbeAddr string
	// SeedDocs legacy documents, owned round-robin by SeedTenants tenants
	// (school-1..N), are written into the database at start, as the
	// legacy store holds them before a rollout (loadgen.SeedLegacy);
	// existing ones are kept. SeedShards must equal the rollout's
	// spec.gateway.shards (the sample's 2).
	SeedDocs, SeedTenants, SeedShards int
	// SyncerArgs are extra flags for every syncer process (for example
	// --backfill-rate=100 to make a backfill last long enough to kill).
	SyncerArgs []string
	// PollInterval of the controller (default 1s).
	PollInterval time.Duration
	Log          logr.Logger
}

// Env is a running system.
type Env struct {
	// Client talks to the control plane as an administrator.
	Client client.Client
	// Kubeconfig is the path of the administrator's kubeconfig.
	Kubeconfig string
	// DatabaseURL is the DSN of the database every component uses.
	DatabaseURL string
	// TokenKey signs client tokens; the sample rollout's demo-tokens
	// Secret holds it.
	TokenKey string

	opts   Options
	pg     *pgharness.Server
	env    *envtest.Environment
	stores *dataplane.Cache
	mgr    ctrl.Manager
	pods   *podRunner
}

// Start brings everything up except the manager loop; Run starts that.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Second
	}
	state, err := filepath.Abs(opts.State)
	if err != nil {
		return nil, err
	}
	opts.State = state
	if err := os.MkdirAll(state, 0o755); err != nil {
		return nil, err
	}
	e := &Env{opts: opts, stores: &dataplane.Cache{}}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()

	// 1. PostgreSQL, kept between runs in <state>/pg.
	e.pg, err = pgharness.Start(ctx, pgharness.Options{Dir: filepath.Join(state, "pg"), Keep: true, Fsync: opts.Fsync, Port: opts.PGPort,
		Logf: func(format string, args ...any) { opts.Log.Info(fmt.Sprintf(format, args...)) }})
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	dsn, err := e.pg.CreateDatabase(ctx, "yawp")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" {
		dsn, err = e.pg.DSN("yawp"), nil
	}
	if err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	e.DatabaseURL = dsn
	if err := os.WriteFile(filepath.Join(state, "database-url"), []byte(dsn+"\n"), 0o600); err != nil {
		return nil, err
	}
	serviceDSN, err := prepare(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}

	// 2. The control plane, with the CRDs installed.
	e.env = &envtest.Environment{CRDDirectoryPaths: []string{opts.CRDs}, ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: opts.AssetsDir}
	cfg, err := e.env.Start()
	if err != nil {
		return nil, fmt.Errorf("start the control plane (is KUBEBUILDER_ASSETS set? make dev sets it): %w", err)
	}
	user, err := e.env.AddUser(envtest.User{Name: "developer", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	e.Kubeconfig = filepath.Join(state, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(persistencev1alpha1.AddToScheme(scheme))
	if e.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}

	// 3. The Secrets the sample rollout names.
	if e.TokenKey, err = readOrCreateKey(filepath.Join(state, "token-key")); err != nil {
		return nil, err
	}
	for name, data := range map[string]map[string][]byte{
		// dsn: the schema's owner, for the operator; service-dsn: the
		// syncers' role in yawp_service (spec.database.serviceSecretRef).
		"demo-database": {"dsn": []byte(dsn), "service-dsn": []byte(serviceDSN)},
		"demo-tokens":   {"key": []byte(e.TokenKey)},
	} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Data: data}
		if err := e.Client.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create secret %s: %w", name, err)
		}
	}

	// 4. The manager, with the pods' stand-in.
	e.mgr, err = ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Client: controllers.ManagerClientOptions(), Metrics: metricsserver.Options{BindAddress: orZero(opts.MetricsAddr)},
		HealthProbeBindAddress: orZero(opts.ProbeAddr)})
	if err != nil {
		return nil, err
	}
	if err := (&controllers.PersistenceRolloutReconciler{
		Client: e.mgr.GetClient(), APIReader: e.mgr.GetAPIReader(), Recorder: e.mgr.GetEventRecorder("persistencerollout-controller"),
		Clock: clock.RealClock{}, Stores: e.stores, PollInterval: opts.PollInterval,
	}).SetupWithManager(e.mgr); err != nil {
		return nil, err
	}
	pods := &podRunner{client: e.Client, bin: opts.Bin, state: state, basePort: opts.BasePort, syncerArgs: opts.SyncerArgs,
		log: opts.Log.WithName("pods")}
	e.pods = pods
	if err := e.mgr.Add(pods); err != nil {
		return nil, err
	}
	return e, nil
}

// SyncerRole is the login role in yawp_service the syncers of make dev
// and the end-to-end tests connect as: it owns nothing, so it cannot
// disable the ledger's append-only protection.
const SyncerRole = "yawp_syncer"

// prepare migrates the database as its owner, makes the syncers' login
// role (returning its DSN) and writes the legacy documents of opts.Seed*.
func prepare(ctx context.Context, dsn string, opts Options) (string, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return "", fmt.Errorf("prepare the database: %w", err)
	}
	defer pool.Close()
	if err := migrations.Up(ctx, pool); err != nil {
		return "", fmt.Errorf("prepare the database: %w", err)
	}
	// The API server starts empty at every run: the objects that managed
	// rollouts in a database kept from the last run (KEEP_DATA) are gone
	// for good, so a rollout applied again takes over where its cohorts
	// are (docs/operations.md, "One object manages a rollout").
	if _, err := pool.Exec(ctx, `UPDATE rollout_claims SET released_at = now() WHERE released_at IS NULL`); err != nil {
		return "", fmt.Errorf("prepare the database: let the last run's rollouts go: %w", err)
	}
	if _, err := pool.Exec(ctx, `DO $$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '`+SyncerRole+`') THEN
			CREATE ROLE `+SyncerRole+` LOGIN IN ROLE yawp_service;
		END IF; END $$`); err != nil {
		return "", fmt.Errorf("create the syncers' role: %w", err)
	}
	if opts.SeedDocs > 0 {
		if err := seed(ctx, pool, opts); err != nil {
			return "", err
		}
	}
	return AsSyncerRole(dsn)
}

// AsSyncerRole is dsn (of this environment's PostgreSQL, which trusts
// local connections) for SyncerRole.
func AsSyncerRole(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", err
	}
	u.User = url.User(SyncerRole)
	return u.String(), nil
}

// seed writes the legacy documents of opts.Seed*.
func seed(ctx context.Context, pool *pgxpool.Pool, opts Options) error {
	tenants := make([]string, max(opts.SeedTenants, 1))
	for i := range tenants {
		tenants[i] = fmt.Sprintf("school-%d", i+1)
	}
	n, err := loadgen.SeedLegacy(ctx, pool, loadgen.LegacySeed{Tenants: tenants, Docs: opts.SeedDocs, Shards: max(opts.SeedShards, 1)})
	if err != nil {
		return err
	}
	opts.Log.Info("seeded legacy documents", "inserted", n, "documents", opts.SeedDocs, "tenants", len(tenants))
	return nil
}

func orZero(addr string) string {
	if addr == "" {
		return "0"
	}
	return addr
}

// KillContainer sends SIGKILL to the process running container of pod
// (namespace/pod, e.g. "default", "demo-gateway-0", "syncer"), as a node
// failure would; like the kubelet, the environment starts it again a
// second later. It returns the PID it killed.
func (e *Env) KillContainer(namespace, pod, container string) (int, error) {
	return e.pods.kill(namespace + "/" + pod + "/" + container)
}

// ContainerPID is the PID of the process running container of pod
// (namespace/pod) now; an error while it is between restarts or not
// started.
func (e *Env) ContainerPID(namespace, pod, container string) (int, error) {
	return e.pods.pid(namespace + "/" + pod + "/" + container)
}

// CreateDatabase creates another database on the environment's PostgreSQL
// (each rollout needs its own) and returns its DSN.
func (e *Env) CreateDatabase(ctx context.Context, name string) (string, error) {
	return e.pg.CreateDatabase(ctx, name)
}

// Run runs the manager (and the pods) until ctx ends.
func (e *Env) Run(ctx context.Context) error { return e.mgr.Start(ctx) }

// GatewayURL is the address of shard i's gateway of the gateway
// StatefulSet namespace/name, as the pods' stand-in places them.
func (e *Env) GatewayURL(ctx context.Context, namespace, name string, shard int) (string, error) {
	var list appsv1.StatefulSetList
	if err := e.Client.List(ctx, &list, client.HasLabels{controllers.LabelRollout}); err != nil {
		return "", err
	}
	for _, sts := range list.Items {
		if sts.Namespace == namespace && sts.Name == name {
			return fmt.Sprintf("http://127.0.0.1:%d", portOf(e.opts.BasePort, e.pods.slot(namespace+"/"+name), shard, 0)), nil
		}
	}
	return "", fmt.Errorf("no gateway StatefulSet %s/%s", namespace, name)
}

// ScrapeTarget is the /metrics of one container of a gateway pod, with
// the labels the chart's PodMonitor gives its series (namespace, pod,
// container, rollout, shard).
type ScrapeTarget struct {
	Addr   string
	Labels map[string]string
}

// ScrapeTargets lists the metrics endpoints of both containers of every
// gateway pod the environment stands in for, as a Prometheus would
// discover them through the chart's PodMonitor.
func (e *Env) ScrapeTargets(ctx context.Context) ([]ScrapeTarget, error) {
	var list appsv1.StatefulSetList
	if err := e.Client.List(ctx, &list, client.HasLabels{controllers.LabelRollout}); err != nil {
		return nil, err
	}
	var out []ScrapeTarget
	for _, sts := range list.Items {
		replicas := 1
		if sts.Spec.Replicas != nil {
			replicas = int(*sts.Spec.Replicas)
		}
		s := e.pods.slot(sts.Namespace + "/" + sts.Name)
		for shard := range replicas {
			for use, container := range map[int]string{2: contract.ContainerGateway, 3: contract.ContainerSyncer} {
				out = append(out, ScrapeTarget{
					Addr: fmt.Sprintf("127.0.0.1:%d", portOf(e.opts.BasePort, s, shard, use)),
					Labels: map[string]string{
						"namespace": sts.Namespace,
						"pod":       fmt.Sprintf("%s-%d", sts.Name, shard),
						"container": container,
						"rollout":   sts.Labels[controllers.LabelRollout],
						"shard":     strconv.Itoa(shard),
					},
				})
			}
		}
	}
	return out, nil
}

// Stop stops PostgreSQL and the control plane. Run's context must have
// ended first, which stops the pods.
func (e *Env) Stop() {
	e.stores.Close()
	if e.env != nil {
		_ = e.env.Stop()
	}
	if e.pg != nil {
		_ = e.pg.Stop()
	}
}

func readOrCreateKey(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		return string(b), nil
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	key := hex.EncodeToString(buf)
	return key, os.WriteFile(path, []byte(key), 0o600)
}
