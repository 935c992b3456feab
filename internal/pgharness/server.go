package pgharness

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options configures [Start]. The zero value is what tests want: a fresh
// temporary directory, removed on Stop, fsync off, any free port.
type Options struct {
	// Dir holds the data directory, socket and log. Empty means a new
	// directory under os.TempDir. If Dir already contains an initialized
	// cluster (Dir/data/PG_VERSION), initdb is skipped and that data reused.
	Dir string
	// Keep leaves Dir in place on Stop; otherwise Stop removes Dir entirely.
	Keep bool
	// Fsync keeps PostgreSQL's durability settings. When false (tests),
	// initdb runs with --no-sync and the server with fsync, synchronous_commit
	// and full_page_writes off: fast, but a machine crash loses the data.
	Fsync bool
	// Port is the TCP port on 127.0.0.1. Zero picks a free one (and retries
	// with another if it is taken by the time postgres binds it).
	Port int
	// Settings are extra server settings (name to value), passed as -c
	// flags, e.g. shared_preload_libraries for a benchmark's profiling.
	Settings map[string]string
	// Logf, if set, receives progress messages.
	Logf func(format string, args ...any)
}

// Server is a running PostgreSQL server started by [Start].
type Server struct {
	opts    Options
	dir     string
	port    int
	cmd     *exec.Cmd
	logFile *os.File
	logOff  int64 // log size before this start, for logTail

	exited  chan struct{} // closed once postgres has exited and been reaped
	waitErr error         // cmd.Wait result, valid after exited is closed

	stopOnce sync.Once
	stopErr  error
}

const (
	startTimeout = time.Minute      // when ctx has no deadline
	stopTimeout  = 30 * time.Second // per shutdown mode before escalating
	portAttempts = 5
)

// Start initializes (unless already initialized) and starts a PostgreSQL
// server as described in the package documentation. ctx bounds initdb and
// startup only; the server runs until Stop or until the calling process dies.
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential(ctx)
	if err != nil {
		return nil, err
	}

	s := &Server{opts: opts}
	if opts.Dir == "" {
		s.dir, err = os.MkdirTemp("", "pgharness-")
	} else if s.dir, err = filepath.Abs(opts.Dir); err == nil {
		err = os.MkdirAll(s.dir, 0o700)
	}
	if err != nil {
		return nil, fmt.Errorf("pgharness: data directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = s.cleanup()
		}
	}()
	if cred != nil {
		if err := os.Chown(s.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgharness: chown %s to postgres: %w", s.dir, err)
		}
	}

	if err := s.initdb(ctx, bin, cred); err != nil {
		return nil, err
	}

	s.logFile, err = os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pgharness: open log: %w", err)
	}

	for attempt := 1; ; attempt++ {
		s.port = opts.Port
		if s.port == 0 {
			if s.port, err = freePort(); err != nil {
				return nil, fmt.Errorf("pgharness: pick port: %w", err)
			}
		}
		err = s.launch(ctx, bin, cred)
		if err == nil {
			return s, nil
		}
		// Another process may have grabbed the port between our probe and
		// postgres binding it; try a different one.
		if opts.Port != 0 || attempt == portAttempts || !strings.Contains(s.logTail(), "Address already in use") {
			return nil, err
		}
		s.logf("pgharness: port %d taken, retrying", s.port)
	}
}

// URL returns the DSN of the "postgres" database as superuser postgres.
func (s *Server) URL() string { return s.DSN("postgres") }

// DSN returns the DSN of database dbname on this server (which need not exist).
func (s *Server) DSN(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port returns the TCP port the server listens on at 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Dir returns the directory holding the data directory, socket and log.
func (s *Server) Dir() string { return s.dir }

// PID returns the process id of the postmaster.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// CreateDatabase creates an empty database called name and returns its DSN.
// An existing database is an error (a *pgconn.PgError with code 42P04).
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	if err := createDatabase(ctx, s.URL(), name); err != nil {
		return "", err
	}
	return s.DSN(name), nil
}

// Stop shuts the server down (fast shutdown, escalating to immediate and
// then SIGKILL if it hangs), waits for it to exit, and removes the directory
// unless Options.Keep. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.cleanup() })
	return s.stopErr
}

// cleanup stops postgres if it was started and removes what Start created.
func (s *Server) cleanup() error {
	var errs []error
	if s.cmd != nil {
		errs = append(errs, s.shutdown())
	}
	if s.logFile != nil {
		errs = append(errs, s.logFile.Close())
	}
	if !s.opts.Keep && s.dir != "" {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pgharness: stop: %w", err)
	}
	return nil
}

// shutdown signals postgres with SIGINT (fast shutdown, as pg_ctl stop -m
// fast does), then SIGQUIT (immediate), then SIGKILL, until it exits.
func (s *Server) shutdown() error {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGKILL} {
		if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("signal postgres: %w", err)
		}
		select {
		case <-s.exited:
			return nil
		case <-time.After(stopTimeout):
			s.logf("pgharness: postgres did not exit %v after %v, escalating", stopTimeout, sig)
		}
	}
	<-s.exited
	return nil
}

// initdb creates the cluster in s.dir/data unless it already exists.
func (s *Server) initdb(ctx context.Context, bin string, cred *syscall.Credential) error {
	data := filepath.Join(s.dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err == nil {
		s.logf("pgharness: reusing cluster in %s", data)
		return nil
	}
	args := []string{"-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"}
	if !s.opts.Fsync {
		args = append(args, "--no-sync")
	}
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		hint := ""
		if cred != nil {
			hint = fmt.Sprintf("\n(running as root: initdb runs as OS user postgres, which needs search permission on every parent of %s)", s.dir)
		}
		return fmt.Errorf("initdb: %w\n%s%s", err, tail(out), hint)
	}
	s.logf("pgharness: initdb %s in %v", data, time.Since(t0).Round(time.Millisecond))
	return nil
}

// launch starts postgres on s.port and waits until it accepts connections.
func (s *Server) launch(ctx context.Context, bin string, cred *syscall.Credential) error {
	data := filepath.Join(s.dir, "data")
	socketDir := s.dir
	if len(socketDir)+len("/.s.PGSQL.65535.lock") > 107 { // sun_path limit
		socketDir = "" // TCP only
	}
	args := []string{"-D", data,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port=" + strconv.Itoa(s.port),
		"-c", "unix_socket_directories=" + socketDir,
		"-c", "max_connections=200",
		"-c", "logging_collector=off",
	}
	if !s.opts.Fsync {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	for _, k := range slices.Sorted(maps.Keys(s.opts.Settings)) {
		args = append(args, "-c", k+"="+s.opts.Settings[k])
	}
	if off, err := s.logFile.Seek(0, io.SeekEnd); err == nil {
		s.logOff = off
	}

	s.cmd = exec.Command(filepath.Join(bin, "postgres"), args...)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = s.logFile, s.logFile
	s.cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		// If our process dies, the kernel asks postgres for a fast shutdown.
		Pdeathsig: syscall.SIGINT,
	}
	s.exited = make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the *thread* that forked the child exits
		// (go.dev/issue/27505), and the Go runtime may retire threads. Pin
		// this goroutine to its thread until postgres has been reaped.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := <-started; err != nil {
		s.cmd = nil
		return fmt.Errorf("pgharness: start postgres: %w", err)
	}

	t0 := time.Now()
	if err := s.waitReady(ctx); err != nil {
		_ = s.shutdown()
		s.cmd = nil
		return fmt.Errorf("pgharness: start postgres on port %d: %w\npostgres log:\n%s", s.port, err, s.logTail())
	}
	s.logf("pgharness: postgres pid %d ready on %s (%v)", s.PID(), s.URL(), time.Since(t0).Round(time.Millisecond))
	return nil
}

// waitReady polls postmaster.pid until our postmaster reports "ready", as
// pg_ctl start -w does.
func (s *Server) waitReady(ctx context.Context) error {
	pidFile := filepath.Join(s.dir, "data", "postmaster.pid")
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited during startup: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("waiting for postgres: %w", ctx.Err())
		case <-tick.C:
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			continue
		}
		// Line 1 is the postmaster pid (a stale file may name an older
		// one), line 8 the status: starting, ready, stopping, standby.
		lines := strings.Split(string(b), "\n")
		if len(lines) >= 8 && strings.TrimSpace(lines[0]) == strconv.Itoa(s.PID()) && strings.TrimSpace(lines[7]) == "ready" {
			return nil
		}
	}
}

// logTail returns the end of what postgres logged since the last launch.
func (s *Server) logTail() string {
	f, err := os.Open(filepath.Join(s.dir, "postgres.log"))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	if _, err := f.Seek(s.logOff, io.SeekStart); err != nil {
		return "(log: " + err.Error() + ")"
	}
	b, _ := io.ReadAll(f)
	return tail(b)
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// tail returns the last 30 lines of b.
func tail(b []byte) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pgLibGlob is where Debian/Ubuntu install versioned server binaries.
var pgLibGlob = "/usr/lib/postgresql/*/bin"

// findBinDir returns the directory holding initdb and postgres.
func findBinDir() (string, error) {
	var candidates []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real // e.g. /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin
		}
		candidates = append(candidates, filepath.Dir(p))
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	dirs, _ := filepath.Glob(pgLibGlob)
	major := func(bindir string) float64 { // "/usr/lib/postgresql/9.6/bin" -> 9.6
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(bindir)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(major(b), major(a)) }) // newest first
	candidates = append(candidates, dirs...)

	for _, dir := range candidates {
		if !isFile(filepath.Join(dir, "initdb")) {
			continue
		}
		if !isFile(filepath.Join(dir, "postgres")) {
			return "", fmt.Errorf("postgres not found next to initdb in %s: install the PostgreSQL server (Debian: apt-get install postgresql): %w", dir, exec.ErrNotFound)
		}
		return dir, nil
	}
	return "", fmt.Errorf("initdb not found: install PostgreSQL (Debian: apt-get install postgresql, or run hack/ensure-postgres.sh): %w", exec.ErrNotFound)
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// credential returns nil when not root, and otherwise the credentials of the
// OS user postgres, creating that user if needed: initdb and postgres refuse
// to run as root.
func credential(ctx context.Context) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if errors.As(err, new(user.UnknownUserError)) {
		out, addErr := exec.CommandContext(ctx, "useradd", "--system", "--user-group", "postgres").CombinedOutput()
		// A concurrent test binary may have created it first: look again.
		if u, err = user.Lookup("postgres"); err != nil && addErr != nil {
			return nil, fmt.Errorf("pgharness: running as root, so initdb and postgres must run as OS user postgres, "+
				"which does not exist and could not be created (useradd --system --user-group postgres: %w: %s); "+
				"create it or install PostgreSQL (apt-get install postgresql)", addErr, bytes.TrimSpace(out))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pgharness: look up OS user postgres: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgharness: uid of postgres %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgharness: gid of postgres %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// createDatabase connects to adminDSN and creates database name.
func createDatabase(ctx context.Context, adminDSN, name string) error {
	return adminExec(ctx, adminDSN, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// adminExec runs one statement on a fresh connection to dsn.
func adminExec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("pgharness: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgharness: %s: %w", sql, err)
	}
	return nil
}
