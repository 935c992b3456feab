package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestExitStatusTellsAFailedCheckFromAFailedAttempt: scripts around
// yawpctl (a support runbook's `evidence verify`, a CI job's loadgen
// audit) need to know whether the check ran and failed (3), could not run
// (1), or was asked wrongly (2). Every failure used to exit 1.
func TestExitStatusTellsAFailedCheckFromAFailedAttempt(t *testing.T) {
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"doc":"essay-1","ok":false,"entries":3,"problems":[{"seq":2,"problem":"hash does not match"}]}`))
	}))
	defer broken.Close()
	intact := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"doc":"essay-1","ok":true,"entries":3,"problems":[],"receipt":"3:` + hash64 + `"}`))
	}))
	defer intact.Close()
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	_ = l.Close()

	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"verified", []string{"evidence", "verify", "essay-1", "--gateway", intact.URL, "--token", "t"}, 0},
		{"chain broken", []string{"evidence", "verify", "essay-1", "--gateway", broken.URL, "--token", "t"}, 3},
		{"gateway down", []string{"evidence", "verify", "essay-1", "--gateway", down, "--token", "t"}, 1},
		{"no document argument", []string{"evidence", "verify"}, 2},
		{"unknown command", []string{"evidense", "essay-1"}, 2},
		{"unknown flag", []string{"evidence", "essay-1", "--revison", "3"}, 2},
		{"flag value of the wrong type", []string{"evidence", "essay-1", "--revision", "three"}, 2},
		{"malformed receipt", []string{"evidence", "verify", "essay-1", "--gateway", intact.URL, "--token", "t", "--receipt", "3:nothex"}, 2},
		{"no gateway", []string{"evidence", "essay-1", "--gateway", "", "--token", "t"}, 2},
		{"revision 0", []string{"evidence", "essay-1", "--gateway", intact.URL, "--token", "t", "--revision", "0"}, 2},
		{"token with a negative lifetime", []string{"token", "--tenant", "s", "--user", "u", "--ttl", "-1h"}, 2},
	} {
		if got := run(tc.args); got != tc.want {
			t.Errorf("%s: yawpctl %q exited %d, want %d", tc.name, tc.args, got, tc.want)
		}
	}
}

const hash64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
