package main

import (
	"github.com/spf13/cobra"
)

// newRootCommand builds the yawpctl command tree. Command groups live in
// one file each and register here.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "yawpctl",
		Short:         "Admin and support CLI for yawp's local-first persistence",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newTraceCommand(), newDocCommand(), newTokenCommand(), newEvidenceCommand(), newRolloutCommand(), newLoadgenCommand())
	// cobra adds its completion group when the command runs: added now,
	// so that a mistyped shell (`completion bahs`) is wrong usage too.
	root.InitDefaultCompletionCmd()
	markUsageErrors(root)
	return root
}
