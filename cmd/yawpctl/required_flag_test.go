package main

import "testing"

// TestMissingRequiredFlagIsWrongUsage: docs/api.md says every yawpctl
// command exits 2 for wrong usage; a required flag left out (token's
// --user, --tenant) is cobra's own "required flag(s) ... not set", which
// exitCode does not recognise, so it exits 1 ("could not do its work")
// and prints no pointer to --help.
func TestMissingRequiredFlagIsWrongUsage(t *testing.T) {
	for _, args := range [][]string{
		{"token", "--tenant", "s"},
		{"token", "--user", "u"},
	} {
		if got := run(args); got != exitUsage {
			t.Errorf("yawpctl %q exited %d, want %d (wrong usage)", args, got, exitUsage)
		}
	}
}
