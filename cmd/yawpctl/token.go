package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/yawp/persistence-operator/internal/auth"
	"github.com/yawp/persistence-operator/internal/contract"
)

// tokenKey reads the token key from --key-file or the environment.
func tokenKey(keyFile string) ([]byte, error) {
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, err
		}
		if k := auth.NormalizeKey(string(b)); len(k) > 0 {
			return k, nil
		}
		return nil, errors.New("the key file " + keyFile + " is empty")
	}
	if k := auth.NormalizeKey(os.Getenv(contract.EnvTokenKey)); len(k) > 0 {
		return k, nil
	}
	return nil, errors.New("no token key: pass --key-file or set " + contract.EnvTokenKey)
}

func newTokenCommand() *cobra.Command {
	var tenant, user, keyFile string
	var ttl time.Duration
	var operator bool
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a signed bearer token for the gateway (development)",
		Long: `Prints a token (HMAC-SHA256 over tenant, user and expiry) the gateway accepts
when it runs with the same key (` + contract.EnvTokenKey + ` or --key-file). --operator
mints a token that also opens operator-only endpoints such as evidence verify.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := auth.CheckIdentity(tenant, user); err != nil {
				return usageError(fmt.Errorf("--tenant %q --user %q: %w", tenant, user, err))
			}
			if ttl <= 0 {
				return usageError(fmt.Errorf("--ttl must be positive (a token valid for %s would be expired when minted)", ttl))
			}
			if keyFile == "" && len(auth.NormalizeKey(os.Getenv(contract.EnvTokenKey))) == 0 {
				// Like loadgen's and evidence's "no gateway": nothing was
				// given to sign with, which is wrong usage (exit 2), not a
				// key that could not be read (exit 1).
				return usageError(errors.New("no token key: pass --key-file or set " + contract.EnvTokenKey))
			}
			key, err := tokenKey(keyFile)
			if err != nil {
				return err
			}
			tok, err := auth.Mint(key, auth.Claims{Tenant: tenant, User: user, Expiry: time.Now().Add(ttl).Unix(), Operator: operator})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant (school) the token is for")
	cmd.Flags().StringVar(&user, "user", "", "user the token is for")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file holding the token key (default: $"+contract.EnvTokenKey+")")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "validity")
	cmd.Flags().BoolVar(&operator, "operator", false, "mint an operator token")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.MarkFlagRequired("user")
	return cmd
}
