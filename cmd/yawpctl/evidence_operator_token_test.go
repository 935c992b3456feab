package main

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/gateway"
)

// TestEvidenceVerifyWithoutAnOperatorTokenSaysWhichToMint: support
// following the quickstart with the student's token (`yawpctl token
// --tenant school-1 --user alice`) got only the gateway's "forbidden:
// operator token required". The refusal now names the token to mint, the
// same tenant and user with --operator, and the key to sign it with; the
// token that command mints is let through by the gateway.
func TestEvidenceVerifyWithoutAnOperatorTokenSaysWhichToMint(t *testing.T) {
	const key = "quickstart-token-key"
	// The shard's syncer: the ledger of essay-1 verifies.
	syncer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"doc":"essay-1","ok":true,"entries":3,"problems":[],"receipt":"3:` + hash64 + `"}`))
	}))
	defer syncer.Close()
	g, err := gateway.New(gateway.Config{Shards: 1, SelfShard: 0, Syncer: syncer.URL, TokenKey: []byte(key),
		InternalToken: auth.InternalToken([]byte(key)), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(g.Handler())
	defer gw.Close()
	t.Setenv("YAWP_TOKEN_KEY", key)

	yawpctl := func(args ...string) (string, error) {
		cmd := newRootCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return strings.TrimSpace(out.String()), err
	}
	mint := func(args ...string) string {
		tok, err := yawpctl(append([]string{"token"}, args...)...)
		if err != nil {
			t.Fatalf("yawpctl token %q: %v", args, err)
		}
		return tok
	}

	alice := mint("--tenant", "school-1", "--user", "alice")
	_, err = yawpctl("evidence", "verify", "essay-1", "--gateway", gw.URL, "--token", alice)
	if err == nil {
		t.Fatal("evidence verify with a student's token was not refused")
	}
	for _, want := range []string{
		"forbidden: operator token required",
		"alice's, of school-1, without the operator flag",
		"yawpctl token --tenant school-1 --user alice --operator --key-file FILE",
		"YAWP_TOKEN_KEY",
		"spec.gateway.tokenSecretRef",
		"bin/dev/token-key",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal\n  %v\ndoes not say %q", err, want)
		}
	}
	if got := exitCode(err); got != exitFailed {
		t.Errorf("evidence verify refused by the gateway: exit %d, want %d", got, exitFailed)
	}

	// The token it names verifies.
	operator := mint("--tenant", "school-1", "--user", "alice", "--operator")
	out, err := yawpctl("evidence", "verify", "essay-1", "--gateway", gw.URL, "--token", operator)
	if err != nil || !strings.Contains(out, "chain intact, 3 entries") {
		t.Errorf("evidence verify with the token the refusal names: %v\n%s", err, out)
	}
}
