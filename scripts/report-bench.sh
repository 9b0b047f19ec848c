#!/usr/bin/env bash
# Size and render time of the HTML report of a synthetic 10,000-entry block log.
# Usage: scripts/report-bench.sh [ENTRIES]   (builds powercut in release mode first)
set -euo pipefail
cd "$(dirname "$0")/.."
entries="${1:-10000}"
cargo build --release -q -p powercut
bin="${CARGO_TARGET_DIR:-target}/release/powercut"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$bin" report-fixture "$dir/rec" --entries "$entries"
for _ in 1 2 3; do
  /usr/bin/time -f "whole command: %e s, %M KiB peak" "$bin" report "$dir/rec" -o "$dir/report.html" 2>&1 | grep -v "^HTML report"
done
