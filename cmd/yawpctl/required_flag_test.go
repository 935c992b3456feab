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

// TestTokenWithoutAKeyIsWrongUsage: `yawpctl token --tenant s --user u`
// with neither --key-file nor YAWP_TOKEN_KEY exited 1 ("could not do its
// work") without a pointer to --help, while loadgen without a key and
// evidence without a gateway exit 2. A key file that cannot be read is
// still 1.
func TestTokenWithoutAKeyIsWrongUsage(t *testing.T) {
	t.Setenv("YAWP_TOKEN_KEY", "")
	if got := run([]string{"token", "--tenant", "s", "--user", "u"}); got != exitUsage {
		t.Errorf("yawpctl token without a key exited %d, want %d (wrong usage)", got, exitUsage)
	}
	if got := run([]string{"token", "--tenant", "s", "--user", "u", "--key-file", t.TempDir() + "/none"}); got != exitFailed {
		t.Errorf("yawpctl token with an unreadable key file exited %d, want %d", got, exitFailed)
	}
}
