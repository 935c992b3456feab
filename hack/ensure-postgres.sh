#!/usr/bin/env bash
# Ensure the PostgreSQL server binaries (initdb, postgres) used by
# internal/pgharness, and pgbench, are installed. Idempotent; silent when
# everything is present.
#
# On Debian 12 all of them ship in postgresql-15 (pulled in by the
# "postgresql" package); /usr/bin/pgbench is postgresql-client-common's
# wrapper around /usr/lib/postgresql/<version>/bin/pgbench.
#
# Installing the package makes Debian create, and usually start, a "main"
# cluster on port 5432. pgharness does not use it, so the script stops any
# cluster the install started.
set -euo pipefail

# have NAME: NAME is on PATH or in a versioned Debian bindir.
have() {
	command -v "$1" >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}

if have initdb && have postgres && have pgbench; then
	exit 0
fi

. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install ensure-postgres postgresql

# Stop whatever cluster the package created and started; harmless if none.
if command -v pg_lsclusters >/dev/null 2>&1; then
	pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _; do
		"${sudo[@]}" pg_ctlcluster "$version" "$cluster" stop >/dev/null 2>&1 || true
	done
fi
"${sudo[@]}" service postgresql stop >/dev/null 2>&1 || true

for bin in initdb postgres pgbench; do
	if ! have "$bin"; then
		echo "ensure-postgres: $bin still missing after installing postgresql" >&2
		exit 1
	fi
done
echo "ensure-postgres: PostgreSQL installed: $(compgen -G '/usr/lib/postgresql/*/bin' | tr '\n' ' ')" >&2
