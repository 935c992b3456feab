package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
)

func TestMintVerify(t *testing.T) {
	key := []byte("k")
	now := time.Unix(1_000_000, 0)
	tok, err := Mint(key, Claims{Tenant: "t1", User: "u1", Expiry: now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(key, tok, now)
	if err != nil || c.Tenant != "t1" || c.User != "u1" || c.Operator {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	// The signature's last character carries two bits a lenient decoder
	// ignores: a token spelled with them set is another token, refused.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	respelled := tok[:len(tok)-1] + string(alphabet[last^1])
	for _, tc := range []struct {
		name  string
		key   []byte
		token string
		at    time.Time
		want  error
	}{
		{"expired", key, tok, now.Add(2 * time.Hour), ErrExpired},
		{"wrong key", []byte("other"), tok, now, ErrSignature},
		{"garbage", key, "nonsense", now, ErrMalformed},
		{"tampered", key, tok[:10] + "x" + tok[11:], now, ErrSignature},
		{"empty", key, "", now, ErrMalformed},
		{"signature respelled", key, respelled, now, ErrMalformed},
		{"no key", nil, tok, now, ErrNoKey},
	} {
		if _, err := Verify(tc.key, tc.token, tc.at); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestNoTokenForATenantNoDocumentCanHave: yawpctl token minted tokens for
// tenants the gateway then refused at every request (longer than the
// store's 128 bytes), or for the name refusals of unauthenticated requests
// are recorded under. Neither is minted, and a token claiming one does not
// verify.
func TestNoTokenForATenantNoDocumentCanHave(t *testing.T) {
	key := []byte("k")
	exp := time.Now().Add(time.Hour).Unix()
	for _, tenant := range []string{strings.Repeat("s", MaxTenantBytes+1), contract.UnauthenticatedTenant, "school\x00-1"} {
		if _, err := Mint(key, Claims{Tenant: tenant, User: "u", Expiry: exp}); err == nil {
			t.Errorf("minted a token for tenant %.20q...", tenant)
		}
		// Signed by hand, as an older yawpctl did.
		b, _ := json.Marshal(Claims{Tenant: tenant, User: "u", Expiry: exp})
		payload := prefix + base64.RawURLEncoding.EncodeToString(b)
		tok := payload + "." + base64.RawURLEncoding.EncodeToString(sign(key, payload))
		if _, err := Verify(key, tok, time.Now()); !errors.Is(err, ErrMalformed) {
			t.Errorf("a token for tenant %.20q... verified: %v", tenant, err)
		}
	}
	if _, err := Mint(key, Claims{Tenant: strings.Repeat("s", MaxTenantBytes), User: "u", Expiry: exp}); err != nil {
		t.Errorf("a tenant of %d bytes: %v", MaxTenantBytes, err)
	}
}

// TestUnverifiedSaysWhoseATokenIs: Unverified reads the claims of any
// well-formed token, whatever key signed it and however old it is (it
// names them in messages; Verify decides), and refuses what is not a
// token.
func TestUnverifiedSaysWhoseATokenIs(t *testing.T) {
	past := time.Unix(1_000_000, 0).Unix()
	tok, err := Mint([]byte("another key"), Claims{Tenant: "school-1", User: "alice", Expiry: past})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := Unverified(tok); err != nil || c != (Claims{Tenant: "school-1", User: "alice", Expiry: past}) {
		t.Errorf("Unverified(a token of another key, expired) = %+v, %v", c, err)
	}
	for _, bad := range []string{"", "t", "yawp1.", "yawp1.garbage.sig", "yawp1." + base64.RawURLEncoding.EncodeToString([]byte(`{"tenant":""}`)) + ".sig"} {
		if c, err := Unverified(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Unverified(%q) = %+v, %v; want ErrMalformed", bad, c, err)
		}
	}
}
