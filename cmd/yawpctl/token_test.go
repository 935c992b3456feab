package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/auth"
)

// TestTokenKeyFromFileMatchesTheSecret: the signing key is kept in a file
// (`openssl rand -hex 32 > token.key` ends it with a newline), the
// gateway's Secret is made from that file (its value keeps the newline and
// reaches the gateway and the syncer as YAWP_TOKEN_KEY) and tokens are
// minted with `yawpctl token --key-file token.key`: they verify, and the
// gateway and the syncer derive the same internal token.
func TestTokenKeyFromFileMatchesTheSecret(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token.key")
	content := "3f9a1c0e5b7d2a4c6e8f0a1b3c5d7e9f\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := tokenKey(file)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Mint(key, auth.Claims{Tenant: "school-1", User: "alice", Expiry: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	// What the gateway does with the Secret's value (cmd/gateway).
	if _, err := auth.Verify(auth.NormalizeKey(content), tok, time.Now()); err != nil {
		t.Fatalf("a token minted with --key-file is refused by a gateway keyed from the same file: %v", err)
	}
	t.Setenv("YAWP_TOKEN_KEY", content)
	envKey, err := tokenKey("")
	if err != nil {
		t.Fatal(err)
	}
	if auth.InternalToken(envKey) != auth.InternalToken(key) {
		t.Fatal("the key from the environment and from the file differ")
	}
	if err := os.WriteFile(file, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tokenKey(file); err == nil {
		t.Fatal("an empty key file was accepted")
	}
}

// TestTokenTTLMustBePositive: --ttl -1h is refused, not minted expired.
func TestTokenTTLMustBePositive(t *testing.T) {
	t.Setenv("YAWP_TOKEN_KEY", "k")
	for _, ttl := range []string{"-1h", "0s"} {
		cmd := newTokenCommand()
		cmd.SetArgs([]string{"--tenant", "t", "--user", "u", "--ttl", ttl})
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if err := cmd.Execute(); err == nil {
			t.Errorf("--ttl %s was accepted", ttl)
		}
	}
	cmd := newTokenCommand()
	cmd.SetArgs([]string{"--tenant", "t", "--user", "u", "--ttl", "1h"})
	cmd.SetOut(io.Discard)
	if err := cmd.Execute(); err != nil {
		t.Errorf("--ttl 1h: %v", err)
	}
}
