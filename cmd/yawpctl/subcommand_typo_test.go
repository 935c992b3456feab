package main

import "testing"

// TestUnknownSubcommandOfAGroupIsWrongUsage: exitcode.go and docs/api.md
// ("Every yawpctl command exits this way: ... 2 wrong usage") say an
// unknown command exits 2. At the top level it does (`yawpctl evidense`),
// but a typo one level down, in the command groups support staff and the
// platform team type from runbooks (`yawpctl rollout aprove demo pilot`,
// `yawpctl rollout rollbak demo pilot`), printed the group's help and
// exited 0: a script or a person reading $? takes the approval or the
// rollback for done, and nothing was changed.
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
