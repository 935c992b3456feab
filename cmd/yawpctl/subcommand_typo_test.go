package main

import "testing"

// TestUnknownSubcommandOfAGroupIsWrongUsage: an unknown command exits 2
// (exitcode.go, docs/api.md), one level down too. Before, a typo in a
// command group (`yawpctl rollout aprove demo pilot`) printed the group's
// help and exited 0: a script or a person reading $? took the approval for
// done, and nothing was changed.
func TestUnknownSubcommandOfAGroupIsWrongUsage(t *testing.T) {
	for _, args := range [][]string{
		{"rollout", "aprove", "demo", "pilot"},
		{"rollout", "rollbak", "demo", "pilot"},
		{"rollout", "stauts", "demo"},
		{"doc", "txt", "update.bin"},
		{"trace", "replai", "trace.json"},
	} {
		if got := run(args); got != exitUsage {
			t.Errorf("yawpctl %q exited %d, want %d (wrong usage: unknown command)", args, got, exitUsage)
		}
	}
}
