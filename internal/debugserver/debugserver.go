// Package debugserver serves Go's runtime profiles (net/http/pprof) on an
// address of their own, for the gateway's and syncer's --pprof-listen. It
// is off unless asked for: the profiles show the process's internals and
// cost CPU while taken, so they are meant for a loopback address reached
// with kubectl port-forward, never for a Service.
package debugserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// Start listens on addr and serves /debug/pprof/ there until the returned
// stop is called. An empty addr starts nothing (stop is a no-op). The
// listener is opened before Start returns, so a bad or taken address is
// an error at start-up rather than a log line later.
func Start(addr string, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof-listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("profiling endpoint stopped", "addr", addr, "err", err)
		}
	}()
	log.Info("profiling endpoint", "addr", ln.Addr().String(), "path", "/debug/pprof/")
	return func() { _ = srv.Close() }, nil
}

// Handler is the profiles' mux: net/http/pprof's handlers registered on a
// mux of their own (importing the package registers them on
// http.DefaultServeMux too, which neither binary serves).
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
