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
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
apt_install ensure-prometheus prometheus
"${sudo[@]}" service prometheus stop >/dev/null 2>&1 || true

for bin in promtool prometheus; do
	command -v "$bin" >/dev/null 2>&1 || {
		echo "ensure-prometheus: $bin still missing after installing prometheus" >&2
		exit 1
	}
done
echo "ensure-prometheus: $(prometheus --version 2>&1 | head -1)" >&2
