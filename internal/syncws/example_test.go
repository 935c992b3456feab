package syncws_test

import (
	"context"
	"net/http"
	"time"

	"github.com/yawp/persistence-operator/internal/contract"
	"github.com/yawp/persistence-operator/internal/syncws"
)

// How a gateway mounts the hub: its Backend talks to the shard's syncer
// (here the in-memory one), its Authenticator verifies the REST API's
// tokens and looks documents' tenants up.
func ExampleNewHub() {
	backend := syncws.NewMemoryBackend() // the gateway: a syncer client implementing syncws.Backend
	hub := syncws.NewHub(syncws.Config{
		Backend: backend,
		Auth:    syncws.TokenAuth{Key: []byte("token key"), Tenants: backend},
		Limits:  syncws.Limits{MaxConnsPerUser: 16},
	})
	mux := http.NewServeMux()
	mux.Handle(contract.PathSync, hub) // ws://host:8080/v1/sync/<documentID>
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	_ = srv

	// At a cohort flip, tell opted-in clients of the tenant at once:
	hub.SetProtocol("school-a", contract.ProtocolLocalFirst)

	// On SIGTERM: stop accepting, drain and close sync connections with
	// 1001 (they reconnect elsewhere), then stop the HTTP server.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = hub.Shutdown(ctx)
	_ = srv.Shutdown(ctx)
	// Output:
}
