#!/usr/bin/env bash
# Ensure Prometheus's promtool and prometheus binaries are installed: the
# chart's alert tests (charts/alerts_promtool_test.go) run the
# PrometheusRule through promtool, and the end-to-end test
# (test/e2e/prometheus_test.go) has a real Prometheus scrape the running
# system and evaluate the alerts. Idempotent; silent when both are present.
#
# On Debian 12 both ship in the "prometheus" package. Installing it may
# start its packaged server; the tests start their own, so the script
# stops it.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "ensure-prometheus: promtool or prometheus missing and apt-get unavailable: install Prometheus yourself (or set PROMTOOL and PROMETHEUS)" >&2
	exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || {
		echo "ensure-prometheus: need root (or sudo) to apt-get install prometheus" >&2
		exit 1
	}
	sudo=(sudo)
fi

echo "ensure-prometheus: installing Prometheus (apt-get install prometheus)..." >&2
export DEBIAN_FRONTEND=noninteractive
# The package lists may be fresh already (ensure-postgres updates them when
# it installs); update first only if the package is unknown, and once more
# if the install fails on a stale list.
if ! apt-cache show prometheus >/dev/null 2>&1; then
	"${sudo[@]}" apt-get update -qq
fi
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
"${sudo[@]}" service prometheus stop >/dev/null 2>&1 || true

for bin in promtool prometheus; do
	command -v "$bin" >/dev/null 2>&1 || {
		echo "ensure-prometheus: $bin still missing after installing prometheus" >&2
		exit 1
	}
done
echo "ensure-prometheus: $(prometheus --version 2>&1 | head -1)" >&2
