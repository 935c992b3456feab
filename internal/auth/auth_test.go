package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
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
