package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestTooManyReceiptsIsWrongUsage: the gateway checks up to 100 receipts
// a verification (docs/api.md); 101 are wrong usage (exit 2), refused
// before the gateway is asked. Before, they were sent, and the gateway's
// 400 made yawpctl exit 1, as if the gateway were at fault.
func TestTooManyReceiptsIsWrongUsage(t *testing.T) {
	asked := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = true
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"code":"invalid_request","message":"at most 100 receipts per verification, got 101"}`))
	}))
	defer srv.Close()
	args := []string{"evidence", "verify", "essay-1", "--gateway", srv.URL, "--token", "t"}
	for i := 1; i <= 101; i++ {
		args = append(args, "--receipt", fmt.Sprintf("%d:%s", i, hash64))
	}
	if got := run(args); got != exitUsage || asked {
		t.Errorf("yawpctl evidence verify with 101 receipts exited %d (gateway asked: %v), want %d without asking", got, asked, exitUsage)
	}
}
