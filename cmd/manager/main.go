// Command manager runs the PersistenceRollout controller.
package main

import (
	"crypto/tls"
	"flag"
	"log/slog"
	"os"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/controllers"
	"github.com/yawp/persistence-operator/internal/dataplane"
)

func main() {
	var (
		metricsAddr   string
		probeAddr     string
		leaderElect   bool
		pollInterval  time.Duration
		secureMetrics bool
		workers       int
		dpTimeout     time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address of the /metrics endpoint; 0 disables it")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	flag.BoolVar(&leaderElect, "leader-elect", false, "elect a leader so only one manager acts at a time")
	flag.BoolVar(&secureMetrics, "metrics-secure", false, "serve metrics over HTTPS with authentication and authorisation")
	flag.DurationVar(&pollInterval, "poll-interval", 5*time.Second, "how often shard reports are re-read while a rollout moves")
	flag.IntVar(&workers, "max-concurrent-reconciles", controllers.DefaultMaxConcurrentReconciles,
		"how many rollouts are reconciled at once (one whose database is slow to answer holds up only its own)")
	flag.DurationVar(&dpTimeout, "data-plane-timeout", controllers.DefaultDataPlaneTimeout,
		"bound on one reconcile's work with its rollout's database; past it the rollout reports DataPlaneError (a database that stopped answering) and is reconciled again")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	// What the data plane's packages log through slog (the migrations:
	// a schema newer than this binary, a table locked) reads like every
	// other line of the manager.
	slog.SetDefault(slog.New(logr.ToSlogHandler(ctrl.Log.WithName("dataplane"))))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(persistencev1alpha1.AddToScheme(scheme))

	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: secureMetrics}
	if secureMetrics {
		metricsOpts.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }}
		// Only a caller whose token the API server authenticates and
		// authorises for GET /metrics (TokenReview, SubjectAccessReview)
		// reads them.
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Client:                 controllers.ManagerClientOptions(),
		Metrics:                metricsOpts,
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElect,
		LeaderElectionID:       "persistence-operator.persistence.yawp.dev",
	})
	if err != nil {
		log.Error(err, "unable to create the manager")
		os.Exit(1)
	}
	stores := &dataplane.Cache{}
	defer stores.Close()
	if err := (&controllers.PersistenceRolloutReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("persistencerollout-controller"),
		Clock:                   clock.RealClock{},
		Stores:                  stores,
		PollInterval:            pollInterval,
		OutsideEvery:            30 * time.Second,
		MaxConcurrentReconciles: workers,
		DataPlaneTimeout:        dpTimeout,
	}).SetupWithManager(mgr); err != nil {
		log.Error(err, "unable to set up the controller")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "unable to set up the ready check")
		os.Exit(1)
	}
	log.Info("starting manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}
