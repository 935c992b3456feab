package main

import "testing"

// TestTokenWithAnInvalidTenantOrUserIsWrongUsage: an empty --tenant or
// --user (an unset shell variable: --tenant "$SCHOOL"), or the reserved
// tenant "(unauthenticated)", is a flag value out of range: exit 2 with a
// pointer to --help, as `--ttl 0s` is. Before, auth.Mint's refusal exited
// 1, as if the key could not be read.
func TestTokenWithAnInvalidTenantOrUserIsWrongUsage(t *testing.T) {
	t.Setenv("YAWP_TOKEN_KEY", "k")
	for _, args := range [][]string{
		{"token", "--tenant", "", "--user", "support"},
		{"token", "--tenant", "school-1", "--user", ""},
		{"token", "--tenant", "(unauthenticated)", "--user", "support"},
	} {
		if got := run(args); got != exitUsage {
			t.Errorf("yawpctl %q exited %d, want %d (wrong usage: a flag value out of range)", args, got, exitUsage)
		}
	}
}
