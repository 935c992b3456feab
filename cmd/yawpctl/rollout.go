package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/rolloutctl"
)

// newRolloutCommand is `yawpctl rollout`: read a rollout's cohorts, and
// express intent (approve, retry, hold, proceed, rollback, pause, resume) by
// editing its spec, as a GitOps commit would.
func newRolloutCommand() *cobra.Command {
	var kubeconfig, namespace string
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Inspect a PersistenceRollout and express intent for its cohorts",
	}
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	cmd.PersistentFlags().StringVarP(&namespace, "namespace", "n", "", "namespace (default: the kubeconfig's)")

	connect := func() (client.Client, string, error) {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		// kubeconfigError says what client-go's warning about missing
		// files would.
		rules.WarnIfAllMissing = false
		if kubeconfig != "" {
			rules.ExplicitPath = kubeconfig
		}
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
		cfg, err := cc.ClientConfig()
		if err != nil {
			return nil, "", kubeconfigError(kubeconfig, err)
		}
		ns := namespace
		if ns == "" {
			if ns, _, err = cc.Namespace(); err != nil {
				return nil, "", err
			}
		}
		scheme := runtime.NewScheme()
		if err := persistencev1alpha1.AddToScheme(scheme); err != nil {
			return nil, "", err
		}
		c, err := client.New(cfg, client.Options{Scheme: scheme})
		return c, ns, err
	}
	edit := func(use, short string, args cobra.PositionalArgs, mk func(args []string) rolloutctl.Edit) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: args, RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := connect()
			if err != nil {
				return err
			}
			msg, err := rolloutctl.Apply(context.Background(), c, client.ObjectKey{Namespace: ns, Name: args[0]}, mk(args))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg)
			return nil
		}}
	}
	cmd.AddCommand(
		&cobra.Command{Use: "status NAME", Short: "Show every cohort's stage, counts and what it waits for", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, ns, err := connect()
				if err != nil {
					return err
				}
				var ro persistencev1alpha1.PersistenceRollout
				if err := rolloutctl.Get(context.Background(), c, client.ObjectKey{Namespace: ns, Name: args[0]}, &ro); err != nil {
					return err
				}
				return rolloutctl.PrintStatus(os.Stdout, &ro, time.Now())
			}},
		newRolloutDeleteCommand(connect),
		edit("approve NAME COHORT", "Approve the flip of the cohort's current attempt, or of the retried one about to start", cobra.ExactArgs(2),
			func(a []string) rolloutctl.Edit { return rolloutctl.Approve(a[1]) }),
		edit("retry NAME COHORT", "Start a new attempt of a rolled-back or halted cohort", cobra.ExactArgs(2),
			func(a []string) rolloutctl.Edit { return rolloutctl.Retry(a[1]) }),
		edit("hold NAME COHORT", "Keep a cohort at its stage", cobra.ExactArgs(2),
			func(a []string) rolloutctl.Edit { return rolloutctl.SetIntent(a[1], persistencev1alpha1.IntentHold) }),
		edit("proceed NAME COHORT", "Let a held cohort move again", cobra.ExactArgs(2),
			func(a []string) rolloutctl.Edit { return rolloutctl.SetIntent(a[1], persistencev1alpha1.IntentProceed) }),
		edit("rollback NAME COHORT", "Return a cohort to Legacy under a new epoch and keep it there", cobra.ExactArgs(2),
			func(a []string) rolloutctl.Edit {
				return rolloutctl.SetIntent(a[1], persistencev1alpha1.IntentRollback)
			}),
		edit("pause NAME", "Stop every transition of the rollout", cobra.ExactArgs(1),
			func([]string) rolloutctl.Edit { return rolloutctl.SetPaused(true) }),
		edit("resume NAME", "Let the rollout move again", cobra.ExactArgs(1),
			func([]string) rolloutctl.Edit { return rolloutctl.SetPaused(false) }),
	)
	return cmd
}

// newRolloutDeleteCommand is `yawpctl rollout delete`: delete a rollout and
// wait until the operator has carried out its deletionPolicy (the chart's
// pre-delete hook runs it, so that `helm uninstall` deletes the rollout
// while the operator still runs).
func newRolloutDeleteCommand(connect func() (client.Client, string, error)) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a rollout and wait until the operator has carried out its deletionPolicy",
		Long: `Deletes the PersistenceRollout and waits until it is gone: the operator
carries out its deletionPolicy (Retain keeps every cohort's stage and the
gateway; RollbackToLegacy returns every cohort to Legacy first), then
removes its finalizer. Prints what the deletion waits for as it changes.
A rollout that is not there is not an error. Exit status 1 if it is still
there after --timeout (the operator is not running, or the deletion is
held: the message says why).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return usageError(fmt.Errorf("--timeout must be positive (got %s): it is how long to wait for the operator to carry out the deletion", timeout))
			}
			c, ns, err := connect()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return rolloutctl.Delete(ctx, c, client.ObjectKey{Namespace: ns, Name: args[0]}, 2*time.Second, func(s string) {
				fmt.Fprintln(cmd.OutOrStdout(), s)
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for the rollout to be gone")
	return cmd
}

// kubeconfigError explains a kubeconfig that could not be loaded. Finding
// no cluster at all (no --kubeconfig, $KUBECONFIG naming no file there is
// or unset with no ~/.kube/config, and not running in a pod) is wrong
// usage, exit 2: client-go's own message ("no configuration has been
// provided, try setting KUBERNETES_MASTER environment variable") points
// at a variable nothing here reads, and exited 1 as if the cluster had
// failed.
func kubeconfigError(flag string, err error) error {
	const point = "Point yawpctl at the cluster's kubeconfig with --kubeconfig FILE or KUBECONFIG=FILE " +
		"(under make dev: export KUBECONFIG=$PWD/bin/dev/kubeconfig, which make dev writes once it is up)"
	switch {
	case flag != "" && errors.Is(err, fs.ErrNotExist):
		return usageError(fmt.Errorf("--kubeconfig %s: no such file. %s", flag, point))
	case clientcmd.IsEmptyConfig(err):
		env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar)
		var looked string
		switch {
		case env == "" && anyExists(clientcmd.RecommendedHomeFile):
			looked = "$KUBECONFIG is not set and " + clientcmd.RecommendedHomeFile + " names no cluster"
		case env == "":
			looked = "$KUBECONFIG is not set and there is no " + clientcmd.RecommendedHomeFile
		case anyExists(filepath.SplitList(env)...):
			looked = "$KUBECONFIG (" + env + ") names no cluster"
		default:
			looked = "$KUBECONFIG is " + env + ", which does not exist"
		}
		return usageError(fmt.Errorf("no cluster to talk to: %s, and yawpctl is not running in a pod. %s", looked, point))
	}
	return fmt.Errorf("kubeconfig: %w", err)
}

func anyExists(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}
