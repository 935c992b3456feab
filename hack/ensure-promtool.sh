#!/usr/bin/env bash
# Ensure promtool (Prometheus's rule checker and rule unit-test runner) is
# installed: the chart's alert tests (charts/alerts_promtool_test.go) run
# the PrometheusRule through it. Idempotent; silent when it is present.
#
# On Debian 12 promtool ships in the "prometheus" package. Installing it
# may start a Prometheus server; the tests do not use one, so the script
# stops it.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "ensure-promtool: promtool missing and apt-get unavailable: install Prometheus's promtool yourself (or set PROMTOOL)" >&2
	exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || {
		echo "ensure-promtool: need root (or sudo) to apt-get install prometheus" >&2
		exit 1
	}
	sudo=(sudo)
fi

echo "ensure-promtool: installing promtool (apt-get install prometheus)..." >&2
export DEBIAN_FRONTEND=noninteractive
# The package lists may be fresh already (ensure-postgres updates them when
# it installs); update only if the package is unknown.
if ! apt-cache show prometheus >/dev/null 2>&1; then
	"${sudo[@]}" apt-get update -qq
fi
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
"${sudo[@]}" service prometheus stop >/dev/null 2>&1 || true

command -v promtool >/dev/null 2>&1 || {
	echo "ensure-promtool: promtool still missing after installing prometheus" >&2
	exit 1
}
echo "ensure-promtool: $(promtool --version 2>&1 | head -1)" >&2
