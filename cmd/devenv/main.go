// Command devenv runs the whole system on one machine, in the foreground,
// for `make dev` (see internal/devenv). It writes, for other terminals:
//
//	<state>/kubeconfig     kubectl --kubeconfig bin/dev/kubeconfig get prollout
//	<state>/database-url   psql "$(cat bin/dev/database-url)"
//	<state>/gateway-url    the first shard's gateway, once one runs
//	<state>/token-key      the key gateway tokens are signed with
//	<state>/logs/          each gateway and syncer process's output
//
// At start it writes --seed-docs legacy documents of tenants school-1..N
// (--seed-tenants) into the database, as the legacy store holds them
// before a rollout, so applying the sample rollout backfills and verifies
// real documents.
//
// and creates in namespace default the Secrets the sample rollout names:
// demo-database (key dsn) and demo-tokens (key key).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/yawp/persistence-operator/internal/devenv"
)

func main() {
	opts := devenv.Options{Fsync: true, MetricsAddr: "127.0.0.1:18090", ProbeAddr: "127.0.0.1:18091"}
	flag.StringVar(&opts.CRDs, "crds", "config/crd/bases", "directory of the CRDs to install")
	flag.StringVar(&opts.State, "state", "bin/dev", "directory for PostgreSQL's data, logs and the files for other terminals")
	flag.StringVar(&opts.Bin, "bin", "bin", "directory holding the gateway and syncer binaries")
	flag.IntVar(&opts.PGPort, "pg-port", 0, "PostgreSQL port (0: a free one)")
	flag.IntVar(&opts.BasePort, "base-port", 18000, "first local port for the shards' gateways and syncers")
	flag.IntVar(&opts.SeedDocs, "seed-docs", 50, "legacy documents to write into the database at start, as existing documents before a rollout (0: none; existing ones are kept)")
	flag.IntVar(&opts.SeedTenants, "seed-tenants", 6, "tenants (school-1..N) owning the seeded documents; the sample rollout's cohorts cover them all")
	flag.IntVar(&opts.SeedShards, "seed-shards", 2, "shards the seeded documents are placed for: the rollout's spec.gateway.shards")
	keep := flag.Bool("keep-data", false, "keep PostgreSQL's data from the last run (the API server starts empty either way, so a rollout applied again takes over the stages its cohorts reached)")
	flag.Parse()
	if err := freshState(opts.State, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "devenv:", err)
		os.Exit(1)
	}
	ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	opts.Log = ctrl.Log.WithName("devenv")
	if err := run(opts); err != nil {
		fmt.Fprintln(os.Stderr, "devenv:", err)
		os.Exit(1)
	}
}

func run(opts devenv.Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := devenv.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer env.Stop()
	fmt.Printf(`
persistence-operator is running. In another terminal:

  export KUBECONFIG=%s
  kubectl apply -f config/samples/persistence_v1alpha1_persistencerollout.yaml
  kubectl get persistencerollouts -w

PostgreSQL: %s
Press Ctrl-C to stop (PostgreSQL's data stays in %s until the next
make dev, which starts afresh unless run with KEEP_DATA=1).

`, env.Kubeconfig, env.DatabaseURL, filepath.Join(opts.State, "pg"))
	return env.Run(ctx)
}

// freshState removes what a previous run left for other terminals, so that
// a script waiting for bin/dev/gateway-url waits for this run's gateway,
// and, unless keep, the previous run's database: the API server is new
// each time, and a kept database would hand the sample rollout the stages
// its cohorts reached last time (and the documents the README creates).
func freshState(state string, keep bool) error {
	for _, f := range []string{"gateway-url", "database-url", "kubeconfig"} {
		if err := os.Remove(filepath.Join(state, f)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if keep {
		return nil
	}
	return os.RemoveAll(filepath.Join(state, "pg"))
}
