package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/loadgen"
)

func newLoadgenCommand() *cobra.Command {
	cfg := loadgen.Config{Mix: loadgen.DefaultMix}
	var gateways []string
	var keyFile string
	var seed int64
	var noAudit, asJSON bool
	cmd := &cobra.Command{
		Use:   "loadgen",
		Short: "Run a seeded workload through the gateway, then audit that nothing was lost",
		Long: `Creates --docs documents for each of --tenants tenants (school-1..N), then for
--duration (or --ops operations) runs --concurrency workers of legacy
clients (read, then save with If-Match and an Idempotency-Key) and, for
documents whose cohort is local-first, local-first Yjs clients that sometimes
go offline and come back; with --database-url also out-of-band writes to
legacy rows, as a legacy writer bypassing the gateway. A progress line goes to
stderr every second.

At the end every local-first client is flushed and the audit checks that
every acknowledged save is present, that the legacy row equals the Yjs text
of every document that has one, that every ledger chain verifies with
every acknowledged save in its evidence timeline, and that no request was
refused for a reason no correct run meets (a reused idempotency key, a
malformed request, a refused token). Runs may be repeated with the same
seed: each run's idempotency keys are its own. It exits non-zero when the
audit fails (status 3; 1 when the workload or the audit could not run).

Under make dev:
  yawpctl loadgen --gateway "$(cat bin/dev/gateway-url)" --token-key-file bin/dev/token-key \
    --database-url "$(cat bin/dev/database-url)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(gateways) == 0 {
				if gw := os.Getenv(envGatewayURL); gw != "" {
					gateways = []string{gw}
				} else {
					return usageError(fmt.Errorf("no gateway: pass --gateway or set %s", envGatewayURL))
				}
			}
			if keyFile == "" && os.Getenv(contract.EnvTokenKey) == "" {
				return usageError(errors.New("no token key: pass --token-key-file or set " + contract.EnvTokenKey))
			}
			key, err := tokenKey(keyFile)
			if err != nil {
				return fmt.Errorf("--token-key-file: %w", err)
			}
			if seed < 0 {
				return usageError(errors.New("--seed must not be negative"))
			}
			cfg.Gateways, cfg.TokenKey, cfg.Seed = gateways, key, uint64(seed)
			cfg.Progress = cmd.ErrOrStderr()
			if cfg.DatabaseURL == "" && cmd.Flags().Changed("out-of-band") && cfg.Mix.OutOfBand > 0 {
				return usageError(errors.New("--out-of-band needs --database-url (or " + contract.EnvDatabaseURL + ")"))
			}
			if cfg.DatabaseURL == "" {
				cfg.Mix.OutOfBand = 0 // the default mix's out-of-band share needs a database
			}
			if err := cfg.Validate(); err != nil {
				return usageError(err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			g, err := loadgen.New(ctx, cfg)
			if err != nil {
				return err
			}
			defer g.Close()
			errw := cmd.ErrOrStderr()
			fmt.Fprintf(errw, "loadgen: seeding %d documents (%d tenants x %d): %s .. %s (for yawpctl evidence)\n", cfg.Tenants*cfg.Docs, cfg.Tenants, cfg.Docs,
				loadgen.DocumentID(cfg.Seed, fmt.Sprintf("%s%d", cfg.TenantPrefix, 1), 0),
				loadgen.DocumentID(cfg.Seed, fmt.Sprintf("%s%d", cfg.TenantPrefix, cfg.Tenants), cfg.Docs-1))
			if err := g.Seed(ctx); err != nil {
				return withTokenKeyToUse(err, keyFile)
			}
			runErr := g.Run(ctx)
			if runErr != nil && ctx.Err() != nil {
				return fmt.Errorf("workload: %w", runErr)
			}
			if runErr != nil {
				// Edits a client could not flush were never acknowledged:
				// the audit still checks everything that was.
				fmt.Fprintf(errw, "loadgen: workload: %v\n", runErr)
			}
			if noAudit {
				return runErr
			}
			fmt.Fprintln(errw, "loadgen: auditing")
			rep, err := g.Audit(ctx)
			if err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := printJSON(out, rep); err != nil {
					return err
				}
			} else {
				rep.Print(out)
			}
			if !rep.OK() {
				return checkFailed(fmt.Errorf("audit failed: %d findings", rep.FailureCount))
			}
			if runErr != nil {
				return fmt.Errorf("audit passed, but the workload failed: %w", runErr)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&gateways, "gateway", nil, "gateway URL, repeatable (default $"+envGatewayURL+")")
	f.StringVar(&keyFile, "token-key-file", "", "file holding the token key (default: $"+contract.EnvTokenKey+")")
	f.StringVar(&cfg.DatabaseURL, "database-url", os.Getenv(contract.EnvDatabaseURL), "PostgreSQL DSN for out-of-band writes and the audit's direct reads (env "+contract.EnvDatabaseURL+"; optional)")
	f.IntVar(&cfg.Tenants, "tenants", 4, "number of tenants (school-1..N)")
	f.StringVar(&cfg.TenantPrefix, "tenant-prefix", "school-", "tenant name prefix")
	f.IntVar(&cfg.Docs, "docs", 5, "documents per tenant")
	f.Int64Var(&seed, "seed", 1, "seed of document IDs and every choice")
	f.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long the workload runs (0: until --ops)")
	f.IntVar(&cfg.Ops, "ops", 0, "stop after this many operations (0: no limit)")
	f.IntVar(&cfg.Concurrency, "concurrency", 4, "workers")
	f.Float64Var(&cfg.Mix.Legacy, "legacy", loadgen.DefaultMix.Legacy, "weight of legacy saves")
	f.Float64Var(&cfg.Mix.LocalFirst, "local-first", loadgen.DefaultMix.LocalFirst, "weight of local-first edits (on documents whose cohort is local-first; others save through REST)")
	f.Float64Var(&cfg.Mix.OutOfBand, "out-of-band", loadgen.DefaultMix.OutOfBand, "weight of out-of-band legacy writes (needs --database-url)")
	f.Float64Var(&cfg.Mix.Offline, "offline", loadgen.DefaultMix.Offline, "probability that a local-first edit starts an offline episode")
	f.BoolVar(&cfg.Mix.DivergentOutOfBand, "divergent-out-of-band", false, "let out-of-band writes hit documents that already have a Yjs representation (verification must catch them; a live rollout rolls back)")
	f.StringVar(&cfg.StateDir, "state-dir", "", "directory for the local-first clients' stores (default: a temporary one)")
	f.BoolVar(&noAudit, "no-audit", false, "skip the audit")
	f.BoolVar(&asJSON, "json", false, "print the audit report as JSON")
	return cmd
}

// withTokenKeyToUse names, on the gateway's refusal of the workload's
// tokens (loadgen.ErrTokenKeyRefused), the key they were signed with and
// the one to give instead: a bare "401 unauthenticated: invalid token"
// left the user to guess which of the quickstart's files was wrong.
func withTokenKeyToUse(err error, keyFile string) error {
	if !errors.Is(err, loadgen.ErrTokenKeyRefused) {
		return err
	}
	signedWith := "the key in $" + contract.EnvTokenKey + " (no --token-key-file was given)"
	if keyFile != "" {
		signedWith = "the key in " + keyFile + " (--token-key-file)"
	}
	return fmt.Errorf("%w. They were signed with %s. Give loadgen the gateway's token key: "+
		"--token-key-file FILE holding the key of the Secret the rollout's spec.gateway.tokenSecretRef names "+
		"(under make dev: bin/dev/token-key)", err, signedWith)
}
