// Package auth mints and verifies the gateway's signed bearer tokens:
//
//	yawp1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "yawp1."+claims))>
//
// Claims name a tenant, a user, an expiry and, for operators, the operator
// flag that opens operator-only endpoints. The package does no I/O.
package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
)

const prefix = "yawp1."

// Claims are what a token asserts.
type Claims struct {
	Tenant   string `json:"tenant"`
	User     string `json:"user"`
	Expiry   int64  `json:"exp"`
	Operator bool   `json:"op,omitempty"`
}

// Errors of Verify.
var (
	ErrMalformed = errors.New("auth: malformed token")
	ErrSignature = errors.New("auth: bad token signature")
	ErrExpired   = errors.New("auth: token expired")
	ErrNoKey     = errors.New("auth: no token key configured")
)

// MaxTenantBytes bounds a tenant ID, as the document store does.
const MaxTenantBytes = 128

// checkTenant refuses a tenant no document can belong to: longer than
// the store takes, or the name the ledger records refusals of
// unauthenticated requests under (a token for it would read them as its
// own school's).
func checkTenant(t string) error {
	switch {
	case len(t) > MaxTenantBytes:
		return fmt.Errorf("auth: tenant is %d bytes, the limit is %d", len(t), MaxTenantBytes)
	case t == contract.UnauthenticatedTenant:
		return fmt.Errorf("auth: tenant %q is reserved", t)
	case strings.IndexByte(t, 0) >= 0:
		return errors.New("auth: a tenant has no NUL character (PostgreSQL refuses it)")
	}
	return nil
}

// CheckIdentity says whether a token may be minted for tenant and user:
// both given, and the tenant one a token may carry.
func CheckIdentity(tenant, user string) error {
	if tenant == "" || user == "" {
		return errors.New("auth: tenant and user are required")
	}
	return checkTenant(tenant)
}

// Mint signs claims with key.
func Mint(key []byte, c Claims) (string, error) {
	if len(key) == 0 {
		return "", ErrNoKey
	}
	if err := CheckIdentity(c.Tenant, c.User); err != nil {
		return "", err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	payload := prefix + base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(sign(key, payload)), nil
}

func sign(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// strictB64 refuses the unused low bits a lenient decoder ignores, so a
// token has exactly one spelling: one that differs from the issued one in
// any character is refused, not accepted as the same token.
var strictB64 = base64.RawURLEncoding.Strict()

// Verify checks a token's signature and expiry at now. On ErrExpired it
// returns the claims too: the token is authentic, only too old, and a
// refusal of its request can go on record under its tenant.
func Verify(key []byte, token string, now time.Time) (Claims, error) {
	if len(key) == 0 {
		return Claims{}, ErrNoKey
	}
	if !strings.HasPrefix(token, prefix) || len(token) > 4096 {
		return Claims{}, ErrMalformed
	}
	i := strings.LastIndexByte(token, '.')
	if i <= len(prefix) {
		return Claims{}, ErrMalformed
	}
	payload, sig := token[:i], token[i+1:]
	got, err := strictB64.DecodeString(sig)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(got, sign(key, payload)) {
		return Claims{}, ErrSignature
	}
	raw, err := strictB64.DecodeString(payload[len(prefix):])
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(raw, &c); err != nil || c.Tenant == "" || c.User == "" || checkTenant(c.Tenant) != nil {
		return Claims{}, ErrMalformed
	}
	if now.Unix() >= c.Expiry {
		return c, fmt.Errorf("%w at %s", ErrExpired, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	return c, nil
}

// Unverified returns the claims a token asserts without checking its
// signature or expiry: only to say whose a token is in a message (the
// token yawpctl was given lacks the operator flag: mint this one), never
// to decide what it may do.
func Unverified(token string) (Claims, error) {
	i := strings.LastIndexByte(token, '.')
	if !strings.HasPrefix(token, prefix) || len(token) > 4096 || i <= len(prefix) {
		return Claims{}, ErrMalformed
	}
	raw, err := strictB64.DecodeString(token[len(prefix):i])
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(raw, &c); err != nil || c.Tenant == "" || c.User == "" {
		return Claims{}, ErrMalformed
	}
	return c, nil
}

// InternalToken derives the syncer's internal API token from the token key,
// for deployments that set only YAWP_TOKEN_KEY.
// NormalizeKey is a token key as every process uses it: without the
// spaces and line ends around it, so a key file ending in a newline, a
// Secret made from that file and the same key typed into an environment
// variable sign and verify alike.
func NormalizeKey(key string) []byte { return []byte(strings.TrimSpace(key)) }

func InternalToken(key []byte) string {
	if len(key) == 0 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(sign(key, "yawp-internal-api"))
}
