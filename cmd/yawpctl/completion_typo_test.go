package main

import "testing"

// TestMistypedCompletionShellIsWrongUsage: a mistyped subcommand of a
// group exits 2 (docs/api.md), `completion` included, which cobra adds
// when the command runs: `yawpctl completion bahs >> ~/.bashrc` wrote its
// help into the file and exited 0.
func TestMistypedCompletionShellIsWrongUsage(t *testing.T) {
	for _, args := range [][]string{{"completion", "bahs"}, {"completion", "zhs"}} {
		if got := run(args); got != exitUsage {
			t.Errorf("yawpctl %q exited %d, want %d (wrong usage: unknown command)", args, got, exitUsage)
		}
	}
	if got := run([]string{"completion", "bash"}); got != exitOK {
		t.Errorf("yawpctl completion bash exited %d", got)
	}
}
