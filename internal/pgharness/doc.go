// Package pgharness owns throwaway PostgreSQL servers for tests and for
// local development (`make dev`).
//
// [Start] runs initdb in a fresh (or given) directory and launches a
// postgres process listening on 127.0.0.1 on a free port; [Server.Stop]
// shuts it down and removes the directory. Everything the server writes
// (data directory, unix socket, log) lives inside that one directory:
//
//	<dir>/data          PGDATA
//	<dir>/postgres.log  server log (stdout+stderr of postgres)
//	<dir>/.s.PGSQL.N    unix socket (omitted if the path would be too long)
//
// [ForTest] gives each test its own empty database, on the server named by
// DATABASE_URL if set, or else on one shared throwaway server per test
// binary. Packages that call ForTest must stop that server from TestMain:
//
//	func TestMain(m *testing.M) { pgharness.Main(m) }
//
// # Root
//
// initdb and postgres refuse to run as root. When the current process is
// root, both run as the OS user "postgres" (created with useradd if it is
// missing) via exec.Cmd credentials, and the directory is chowned to it.
// That user then needs search permission on every parent of the directory.
//
// # Process lifetime
//
// postgres is started directly as a child of the calling process (not
// daemonized through pg_ctl) with a parent-death signal: if the process that
// called Start dies for any reason, including SIGKILL or a test timeout, the
// kernel sends postgres SIGINT, which is PostgreSQL's fast shutdown (the same
// as pg_ctl stop -m fast). So no postgres processes outlive their owner.
// What can outlive it is the directory: Stop removes it, and [Main] calls
// Stop after the tests and on SIGINT/SIGTERM, but a SIGKILLed or timed-out
// test binary leaves its pgharness-* directory in os.TempDir behind. Those
// are safe to delete once no test run is in progress.
//
// Binaries are looked up as initdb on PATH, then in `pg_config --bindir`,
// then in the newest /usr/lib/postgresql/*/bin; postgres must sit next to
// initdb. hack/ensure-postgres.sh installs them on Debian.
package pgharness
