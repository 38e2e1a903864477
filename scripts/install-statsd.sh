#!/bin/sh
# Installs the real statsd daemon (npm package "statsd") into build/npm, for
# tests/test_statsd_daemon.c. Does nothing when it is already there.
# Usage: scripts/install-statsd.sh [prefix]   (default prefix: build/npm)
# Without node or npm it says so and exits 0: the daemon test then skips.
set -eu
cd "$(dirname "$0")/.."
prefix=${1:-build/npm}
version=0.9.0
stats_js=$prefix/node_modules/statsd/stats.js

if [ -f "$stats_js" ]; then
    echo "install-statsd: statsd already installed at $stats_js"
    exit 0
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install-statsd: node or npm not found; tests/test_statsd_daemon will skip" >&2
    exit 0
fi
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --omit=optional "statsd@$version"
test -f "$stats_js"
echo "install-statsd: installed statsd $version at $stats_js"
