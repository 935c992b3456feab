package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Exit statuses, so that scripts can tell a failed check from a failed
// attempt to run it:
//
//	0  success
//	1  the command could not do its work (gateway unreachable or refusing, a file unreadable, ...)
//	2  wrong usage: unknown command or flag, wrong arguments, a flag value out of range
//	3  a check ran and failed: `evidence verify` found the ledger broken, a receipt
//	   not confirmed, or nothing to verify; `loadgen` audit findings; `trace` text mismatch
const (
	exitOK        = 0
	exitFailed    = 1
	exitUsage     = 2
	exitCheckFail = 3
)

// codedError carries an exit status with its error.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// usageError marks err as wrong usage (exit 2).
func usageError(err error) error {
	if err == nil {
		return nil
	}
	return &codedError{code: exitUsage, err: err}
}

// checkFailed marks err as a check that ran and failed (exit 3).
func checkFailed(err error) error {
	return &codedError{code: exitCheckFail, err: err}
}

// exitCode is the exit status for err.
func exitCode(err error) int {
	var c *codedError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &c):
		return c.code
	case strings.HasPrefix(err.Error(), "unknown command "),
		strings.HasPrefix(err.Error(), "required flag(s) "),
		strings.HasPrefix(err.Error(), "if any flags in the group "):
		// cobra's own: a subcommand that does not exist, a required flag
		// (or flag group) left out.
		return exitUsage
	}
	return exitFailed
}

// markUsageErrors makes the argument checks of c and its subcommands, and
// flag parsing errors, usage errors.
func markUsageErrors(c *cobra.Command) {
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error { return usageError(check(cmd, args)) }
	}
	if c.HasParent() && c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		// A group (rollout, doc, trace): cobra checks a subcommand's
		// name only at the top level, and below it printed the group's
		// help and exited 0 for a mistyped one (`rollout aprove`), which
		// a script takes for done.
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if cmd.SuggestionsMinimumDistance <= 0 {
				cmd.SuggestionsMinimumDistance = 2 // cobra's own default
			}
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return usageError(errors.New(msg))
		}
	}
	for _, sub := range c.Commands() {
		markUsageErrors(sub)
	}
}
