#!/usr/bin/env bash
# The README's screenshot of a real failing report: M1 (ack before the sync) on
# workloads/append-dsync.yaml in a QEMU guest, its HTML report drawn by headless Chromium.
# Usage: scripts/report-screenshot.sh [OUT.png]   (root; provisions like `powercut run`)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/report-screenshot.png}"
command -v chromium >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
}
cargo build --release -q -p powercut --features powercut/mutants
bin="${CARGO_TARGET_DIR:-target}/release/powercut"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
status=0
"$bin" run workloads/append-dsync.yaml --mutant M1 --out "$dir/run" --html "$dir/report.html" \
  --budget 60s > "$dir/run.log" 2>&1 || status=$?
if [ "$status" != 1 ]; then
  echo "expected M1 to be caught (exit 1), got exit $status; see the log:" >&2
  tail -20 "$dir/run.log" >&2
  exit 1
fi
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1800 \
  --screenshot="$out" "file://$dir/report.html" 2>/dev/null
echo "screenshot of $(du -h "$dir/report.html" | cut -f1) report: $out"
