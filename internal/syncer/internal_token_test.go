package syncer

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/yawp/persistence-operator/internal/store"
)

// TestAnotherKeysInternalTokenIsUnavailableNotUnauthorized: while a
// rotated token key rolls out, a gateway with one key calls a syncer (or a
// peer's relay) with the other, whose internal token differs. The client
// got 401 unauthenticated for a save its own valid token was fine for,
// and a waiting unconfirmed trace was dropped as refused. It is the
// servers' transient mismatch: 503 unavailable, retry.
func TestAnotherKeysInternalTokenIsUnavailableNotUnauthorized(t *testing.T) {
	srv := httptest.NewServer(Handler(nil, "token-of-the-new-key"))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, Token: "token-of-the-old-key", HTTP: srv.Client()}
	_, err := c.Apply(t.Context(), store.Request{Kind: store.KindSave, Doc: "d", Tenant: "t", User: "u", Content: "x"})
	var se *store.Error
	if !errors.As(err, &se) || se.Code != store.CodeUnavailable || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("a call with another key's internal token: %v, want 503 %s", err, store.CodeUnavailable)
	}
}
