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
	url, asked := badRequestGateway(t)
	args := []string{"evidence", "verify", "essay-1", "--gateway", url, "--token", "t"}
	for i := 1; i <= 101; i++ {
		args = append(args, "--receipt", fmt.Sprintf("%d:%s", i, hash64))
	}
	if got := run(args); got != exitUsage || *asked {
		t.Errorf("yawpctl evidence verify with 101 receipts exited %d (gateway asked: %v), want %d without asking", got, *asked, exitUsage)
	}
}

// badRequestGateway is a gateway that answers every request 400
// invalid_request, and whether it was asked.
func badRequestGateway(t *testing.T) (string, *bool) {
	t.Helper()
	asked := new(bool)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*asked = true
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"code":"invalid_request","message":"refused"}`))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, asked
}
