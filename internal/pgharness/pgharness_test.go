package pgharness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func tableExists(t *testing.T, conn *pgx.Conn, table string) bool {
	t.Helper()
	var exists bool
	if err := conn.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

// alive reports whether process pid exists and is not a zombie (an orphaned
// postmaster stays one until init reaps it).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// "pid (comm) S ...": the state follows the last ')'.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) == 0 || fields[0] != "Z"
}

func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Logf = t.Logf
	t0 := time.Now()
	s, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %v", time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestForTestGivesDistinctDatabases(t *testing.T) {
	t.Setenv("DATABASE_URL", "") // use the shared server even if the caller set one
	a, b := ForTest(t), ForTest(t)
	if a == b {
		t.Fatalf("ForTest returned the same DSN twice: %s", a)
	}
	ca, cb := connect(t, a), connect(t, b)
	if _, err := ca.Exec(t.Context(), "CREATE TABLE widgets (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if !tableExists(t, ca, "widgets") {
		t.Error("table missing in the database it was created in")
	}
	if tableExists(t, cb, "widgets") {
		t.Error("table created in one ForTest database is visible in the other")
	}
}

func TestForTestDatabaseURL(t *testing.T) {
	s := startServer(t, Options{})
	t.Setenv("DATABASE_URL", s.URL())

	var name string
	t.Run("sub", func(t *testing.T) {
		dsn := ForTest(t)
		if !strings.HasPrefix(dsn, strings.TrimSuffix(s.URL(), "/postgres?sslmode=disable")+"/") {
			t.Fatalf("DSN %s is not on the DATABASE_URL server %s", dsn, s.URL())
		}
		if err := connect(t, dsn).QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	if name == "" {
		t.Fatal("subtest did not get a database")
	}

	// The subtest's cleanup must have dropped its database.
	var n int
	if err := connect(t, s.URL()).QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after the test finished", name)
	}
}

func TestStopLeavesNothing(t *testing.T) {
	s := startServer(t, Options{})
	if _, err := s.CreateDatabase(t.Context(), "app"); err != nil {
		t.Fatal(err)
	}
	// Leave a backend connected: fast shutdown must still terminate it.
	connect(t, s.DSN("app"))

	pid, dir := s.PID(), s.Dir()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Errorf("postmaster pid %d still running after Stop", pid)
	}
	if out, err := exec.Command("pgrep", "-f", "postgres -D "+dir).Output(); err == nil {
		t.Errorf("postgres processes left for %s:\n%s", dir, out)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s not removed: %v", dir, err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestParentDeath checks that postgres shuts down when its owner is killed
// without any chance to clean up: it runs TestHelperOwner in a child test
// binary, SIGKILLs that child once its server is up, and waits for the
// postmaster to go away.
func TestParentDeath(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOwner$")
	cmd.Env = append(os.Environ(), "PGHARNESS_HELPER=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	var dir string
	if _, err := fmt.Fscan(out, &pid, &dir); err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("reading helper output: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // the killed owner cannot
	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	for deadline := time.Now().Add(20 * time.Second); alive(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
			t.Fatalf("postmaster %d still running after its owner was killed", pid)
		}
	}
}

func TestHelperOwner(t *testing.T) {
	if os.Getenv("PGHARNESS_HELPER") != "1" {
		t.Skip("helper for TestParentDeath")
	}
	s, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(s.PID(), s.Dir())
	time.Sleep(time.Minute) // until killed
}

// TestKeepReusesCluster is the `make dev` flow: a persistent directory is
// initialized once and its data survives a restart.
func TestKeepReusesCluster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	if os.Geteuid() == 0 {
		// t.TempDir is 0700 root: the postgres user could not reach it.
		_ = os.Chmod(filepath.Dir(dir), 0o755)
		_ = os.Chmod(filepath.Dir(filepath.Dir(dir)), 0o755)
	}
	opts := Options{Dir: dir, Keep: true, Fsync: true}

	s := startServer(t, opts)
	dsn, err := s.CreateDatabase(t.Context(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, dsn)
	if _, err := c.Exec(t.Context(), "CREATE TABLE kept (id int)"); err != nil {
		t.Fatal(err)
	}
	c.Close(t.Context())
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	opts.Keep = false // remove it at the end
	s = startServer(t, opts)
	if !tableExists(t, connect(t, s.DSN("dev")), "kept") {
		t.Error("data did not survive a restart with Keep")
	}
}

func TestMissingBinaries(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	old := pgLibGlob
	pgLibGlob = filepath.Join(t.TempDir(), "*", "bin")
	t.Cleanup(func() { pgLibGlob = old })

	_, err := Start(t.Context(), Options{})
	if !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), "initdb not found: install PostgreSQL (Debian: apt-get install postgresql") {
		t.Fatalf("want a clear initdb-not-found error, got %v", err)
	}
}

func TestTestDBName(t *testing.T) {
	long := "TestX/" + strings.Repeat("Sub Test-", 20)
	for _, name := range []string{"TestFoo", "TestFoo/bar_baz#01", long} {
		got := testDBName(name)
		if len(got) > 63 || strings.Trim(got, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Errorf("testDBName(%q) = %q: not a short lower-case identifier", name, got)
		}
	}
	if a, b := testDBName("TestFoo"), testDBName("TestFoo"); a == b {
		t.Error("testDBName is not unique per call")
	}
}

func TestWithDatabase(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:p@h:5432/postgres?sslmode=disable": "postgres://u:p@h:5432/t_x?sslmode=disable",
		"postgresql://h/":               "postgresql://h/t_x",
		"host=h user=u dbname=postgres": "host=h user=u dbname=postgres dbname=t_x",
	} {
		if got, err := withDatabase(in, "t_x"); err != nil || got != want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
