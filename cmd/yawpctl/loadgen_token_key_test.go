package main

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/gateway"
)

// TestLoadgenWithAnotherTokenKeySaysWhichKey: loadgen seeding through a
// gateway with tokens signed by a key other than the gateway's failed with
// "seed lg1-school-1-0: 401 unauthenticated: invalid token", which does
// not say that the key is the problem, nor which key it signed with. It
// now names the key it used (the --token-key-file file, or
// $YAWP_TOKEN_KEY) and where the gateway's is.
func TestLoadgenWithAnotherTokenKeySaysWhichKey(t *testing.T) {
	gatewayKey := []byte("the-gateways-token-key")
	// The shard's syncer; the gateway refuses before it asks it anything.
	syncer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer syncer.Close()
	g, err := gateway.New(gateway.Config{Shards: 1, SelfShard: 0, Syncer: syncer.URL, TokenKey: gatewayKey,
		InternalToken: auth.InternalToken(gatewayKey), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(g.Handler())
	defer gw.Close()
	wrong := filepath.Join(t.TempDir(), "token-key")
	if err := os.WriteFile(wrong, []byte("another-checkouts-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"loadgen", "--gateway", gw.URL, "--tenants", "1", "--docs", "2", "--duration", "1s", "--no-audit"}

	for _, tc := range []struct {
		name, env string
		args      []string
		want      []string
	}{
		{"--token-key-file", "", []string{"--token-key-file", wrong}, []string{"signed with the key in " + wrong + " (--token-key-file)"}},
		{"YAWP_TOKEN_KEY", "another-key", nil, []string{"signed with the key in $YAWP_TOKEN_KEY (no --token-key-file was given)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("YAWP_TOKEN_KEY", tc.env)
			cmd := newRootCommand()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(append(base, tc.args...))
			err := cmd.Execute()
			if err == nil {
				t.Fatalf("loadgen with another key than the gateway's succeeded:\n%s", out.String())
			}
			for _, want := range append(tc.want, "the token key they were signed with is not the gateway's",
				"--token-key-file FILE", "spec.gateway.tokenSecretRef", "bin/dev/token-key") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("loadgen's error\n  %v\ndoes not say %q", err, want)
				}
			}
			if got := exitCode(err); got != exitFailed {
				t.Errorf("exit status %d, want %d (the workload could not run)", got, exitFailed)
			}
		})
	}
}
