package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/yawp/persistence-operator/internal/yjs/trace"
)

func newTraceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Replay editing traces on the Yjs engine",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "replay FILE",
		Short: "Replay a sequential or concurrent editing trace and print one JSON line",
		Long: `Replays a trace in the editing-traces format (gzip or plain JSON). Sequential
traces run as local edits on one document; concurrent traces give every agent
a replica, make each transaction at its parents' version and exchange the
transactions as Yjs updates. Prints transactions, milliseconds, final length,
the sha256 of the final text and whether it equals endContent; exits 3 when
it does not.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tr, err := trace.Load(args[0])
			if err != nil {
				return err
			}
			res, doc, err := trace.Replay(tr)
			if err != nil {
				return fmt.Errorf("replay %s: %w", args[0], err)
			}
			res.File = args[0]
			b, err := json.Marshal(res)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			if !res.MatchesEnd {
				return checkFailed(fmt.Errorf("final text differs from endContent: %s", trace.Diff(doc.GetText("text").String(), tr.EndContent)))
			}
			return nil
		},
	})
	return cmd
}
