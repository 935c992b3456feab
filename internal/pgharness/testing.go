package pgharness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// shared is the per-test-binary server behind ForTest, started on first use.
var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// mainCalled records that TestMain went through Main, which stops shared.
var mainCalled atomic.Bool

// ForTest returns the DSN of a new, empty database with a unique name,
// dropped (WITH (FORCE)) when the test and its subtests finish.
//
// If DATABASE_URL is set, the database is created on that server, which
// must let that role CREATE DATABASE. Otherwise it is created on a
// throwaway server shared by the whole test binary, started on first use
// with fsync off; the package's TestMain must then call [Main].
func ForTest(t testing.TB) string {
	t.Helper()
	admin := os.Getenv("DATABASE_URL")
	if admin == "" {
		if !mainCalled.Load() {
			t.Fatal("pgharness.ForTest: add `func TestMain(m *testing.M) { pgharness.Main(m) }` " +
				"to this package so the shared PostgreSQL server is stopped, or set DATABASE_URL")
		}
		shared.once.Do(func() {
			// Not t.Context(): the server outlives this test.
			shared.srv, shared.err = Start(context.Background(), Options{})
		})
		if shared.err != nil {
			t.Fatalf("pgharness: start shared server: %v", shared.err)
		}
		admin = shared.srv.URL()
	}

	name := testDBName(t.Name())
	dsn, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("pgharness: DATABASE_URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := createDatabase(ctx, admin, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE (PostgreSQL 13+) terminates connections the test left open.
		sql := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"
		if err := adminExec(ctx, admin, sql); err != nil {
			t.Error(err)
		}
	})
	return dsn
}

// Main runs the tests and then stops the shared server used by ForTest, also
// on SIGINT/SIGTERM. Use it as the package's TestMain:
//
//	func TestMain(m *testing.M) { pgharness.Main(m) }
//
// A SIGKILLed or timed-out test binary cannot clean up: postgres still shuts
// down (parent-death signal) but its temporary directory is left behind.
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is Main without the exit, for a TestMain that has more to tear down
// after the tests (an envtest control plane, say). It returns the exit code.
func Run(m *testing.M) int {
	mainCalled.Store(true)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		signal.Stop(sigs) // a second signal kills us the default way
		_ = stopShared()
		fmt.Fprintf(os.Stderr, "pgharness: %v: stopped shared PostgreSQL server\n", sig)
		os.Exit(1)
	}()

	code := m.Run()
	signal.Stop(sigs)
	close(sigs)
	if err := stopShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func stopShared() error {
	// Make sure no ForTest can start the server after this point.
	shared.once.Do(func() { shared.err = fmt.Errorf("pgharness: shared server already stopped") })
	if shared.srv == nil {
		return nil
	}
	return shared.srv.Stop()
}

// testDBName derives a unique, valid database name from a test name:
// "TestFoo/bar baz" -> "t_testfoo_bar_baz_1a2b3c4d" (at most 51 bytes).
func testDBName(test string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(test) {
		switch {
		case b.Len() >= 42:
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			b.WriteRune(r)
		case !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	return fmt.Sprintf("%s_%08x", strings.TrimSuffix(b.String(), "_"), rand.Uint32())
}

// withDatabase returns dsn (URL or keyword/value form) pointing at dbname.
func withDatabase(dsn, dbname string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		u.Path, u.RawPath = "/"+dbname, ""
		return u.String(), nil
	}
	// Keyword/value form: a later setting overrides an earlier one. dbname
	// comes from testDBName, so it needs no quoting.
	return dsn + " dbname=" + dbname, nil
}
