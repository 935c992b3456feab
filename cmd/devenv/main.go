// Command devenv runs the whole system on one machine, in the foreground,
// for `make dev`: an embedded Kubernetes control plane (envtest's
// kube-apiserver and etcd), a PostgreSQL kept in the state directory, the
// CRDs, the manager, and, standing in for the kubelet, one gateway+syncer
// process pair per pod of every gateway StatefulSet the controller creates,
// started with the environment the StatefulSet gives its pods.
//
// It writes, for other terminals:
//
//	<state>/kubeconfig     kubectl --kubeconfig bin/dev/kubeconfig get prollout
//	<state>/database-url   psql "$(cat bin/dev/database-url)"
//	<state>/gateway-url    the first shard's gateway, once one runs
//	<state>/token-key      the key gateway tokens are signed with
//
// and creates in namespace default the Secrets the sample rollout names:
// demo-database (key dsn) and demo-tokens (key key).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
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
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/controllers"
	"github.com/yawp/persistence-operator/internal/dataplane"
	"github.com/yawp/persistence-operator/internal/pgharness"
)

func main() {
	var (
		crds     string
		state    string
		bin      string
		pgPort   int
		basePort int
	)
	flag.StringVar(&crds, "crds", "config/crd/bases", "directory of the CRDs to install")
	flag.StringVar(&state, "state", "bin/dev", "directory for PostgreSQL's data and the files for other terminals")
	flag.StringVar(&bin, "bin", "bin", "directory holding the gateway and syncer binaries")
	flag.IntVar(&pgPort, "pg-port", 0, "PostgreSQL port (0: a free one)")
	flag.IntVar(&basePort, "base-port", 18000, "first local port for the shards' gateways and syncers")
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	if err := run(crds, state, bin, pgPort, basePort); err != nil {
		fmt.Fprintln(os.Stderr, "devenv:", err)
		os.Exit(1)
	}
}

func run(crds, state, bin string, pgPort, basePort int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := ctrl.Log.WithName("devenv")
	state, err := filepath.Abs(state)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(state, 0o755); err != nil {
		return err
	}

	// 1. PostgreSQL, kept between runs in <state>/pg.
	pg, err := pgharness.Start(ctx, pgharness.Options{Dir: filepath.Join(state, "pg"), Keep: true, Fsync: true, Port: pgPort,
		Logf: func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) }})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer func() { _ = pg.Stop() }()
	dsn, err := pg.CreateDatabase(ctx, "yawp")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" {
		dsn, err = pg.DSN("yawp"), nil
	}
	if err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	if err := os.WriteFile(filepath.Join(state, "database-url"), []byte(dsn+"\n"), 0o600); err != nil {
		return err
	}

	// 2. The control plane, with the CRDs installed.
	env := &envtest.Environment{CRDDirectoryPaths: []string{crds}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("start the control plane (is KUBEBUILDER_ASSETS set? make dev sets it): %w", err)
	}
	defer func() { _ = env.Stop() }()
	user, err := env.AddUser(envtest.User{Name: "developer", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(state, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(persistencev1alpha1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}

	// 3. The Secrets the sample rollout names.
	tokenKey, err := readOrCreateKey(filepath.Join(state, "token-key"))
	if err != nil {
		return err
	}
	for name, data := range map[string]map[string][]byte{
		"demo-database": {"dsn": []byte(dsn)},
		"demo-tokens":   {"key": []byte(tokenKey)},
	} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Data: data}
		if err := c.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create secret %s: %w", name, err)
		}
	}

	// 4. The manager.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "127.0.0.1:18090"},
		HealthProbeBindAddress: "127.0.0.1:18091"})
	if err != nil {
		return err
	}
	stores := &dataplane.Cache{}
	defer stores.Close()
	if err := (&controllers.PersistenceRolloutReconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("persistencerollout-controller"),
		Clock: clock.RealClock{}, Stores: stores, PollInterval: time.Second,
	}).SetupWithManager(mgr); err != nil {
		return err
	}

	// 5. The pods' stand-in.
	pods := &podRunner{client: c, bin: bin, state: state, basePort: basePort, log: log.WithName("pods")}
	if err := mgr.Add(pods); err != nil {
		return err
	}

	fmt.Printf(`
persistence-operator is running. In another terminal:

  export KUBECONFIG=%s
  kubectl apply -f config/samples/persistence_v1alpha1_persistencerollout.yaml
  kubectl get persistencerollouts -w

PostgreSQL: %s
Press Ctrl-C to stop (PostgreSQL's data stays in %s).

`, kubeconfig, dsn, filepath.Join(state, "pg"))
	return mgr.Start(ctx)
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
