#!/usr/bin/env bash
# Scaling benchmark: one workload shape (workloads/bench/scale-*.yaml) at three sizes, about 30,
# 2,000 and 10,000 acks on 64 MiB, 256 MiB and 1 GiB disks. For each size it prints the crash
# states checked, states per second, seconds per state and the peak memory (max RSS from
# /usr/bin/time -v) of the whole `powercut` process (in the vm tier, QEMU's: the guest's memory).
#
#   scripts/bench-scale.sh [--tier sim|vm] [--sizes small,medium,large] [--segment-bytes S]
#                          [--out DIR]
#
# --segment-bytes (e.g. 16MiB) runs a copy of each workload with that segment size, the disk
# grown until the workload's check finds room for its segments (the workloads use 1 MiB).
#
# --tier sim (default) runs `powercut sim WORKLOAD --json F`; --tier vm runs `powercut run
# WORKLOAD --json F` (QEMU, much longer: minutes to hours per size). Builds `powercut` in release
# mode first (CARGO_TARGET_DIR is honoured).
set -euo pipefail

tier=sim
sizes=small,medium,large
segment_bytes=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tier) tier="$2"; shift 2 ;;
    --sizes) sizes="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --segment-bytes) segment_bytes="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$tier" in
  sim|vm) ;;
  *) echo "--tier must be sim or vm" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
powercut="$target/release/powercut"
out="${out:-$(mktemp -d -t powercut-bench-scale-XXXXXX)}"
mkdir -p "$out"

if [ ! -x /usr/bin/time ]; then
  echo "installing GNU time (/usr/bin/time -v gives the peak memory)" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y time >&2; else sudo apt-get install -y time >&2; fi
fi

cargo build --release -q -p powercut >&2

printf '%-8s %-6s %8s %9s %10s %12s %14s %12s\n' size tier acks states seconds "states/s" "s/state" "max RSS MiB"
for size in ${sizes//,/ }; do
  workload="workloads/bench/scale-$size.yaml"
  [ -f "$workload" ] || { echo "no workload $workload" >&2; exit 2; }
  if [ -n "$segment_bytes" ]; then
    mib=$(python3 -c 'import re,sys; m=re.fullmatch(r"(\d+)(KiB|MiB)",sys.argv[1]); sys.exit("--segment-bytes takes NKiB or NMiB") if not m else print(max(1,int(m[1])*(1 if m[2]=="MiB" else 0)))' "$segment_bytes")
    copy="$out/scale-$size-$segment_bytes.yaml"
    disk=$(awk '/^disk_mib:/ {print $2}' "$workload")
    sed -e "s/^  segment_bytes: .*/  segment_bytes: $segment_bytes/" \
        -e "s/^disk_mib: .*/disk_mib: $((disk + 4 * mib))/" \
        -e "s/^name: .*/&-$segment_bytes/" "$workload" >"$copy"
    # Grow the disk until the workload's own check finds room for every segment it may need.
    for _ in 1 2 3; do
      need=$("$powercut" workload check "$copy" 2>&1 | sed -n 's/.*the run may need \([0-9]*\) MiB.*/\1/p' | head -1 || true)
      [ -z "$need" ] && break
      sed -i "s/^disk_mib: .*/disk_mib: $((need * 4 / 3 + 64))/" "$copy"
    done
    workload="$copy"
  fi
  "$powercut" workload check "$workload" >/dev/null
  json="$out/$tier-$size.json"
  timing="$out/$tier-$size.time"
  if [ "$tier" = sim ]; then
    command=("$powercut" sim "$workload" --json "$json")
  else
    command=("$powercut" run "$workload" --json "$json")
  fi
  start=$(date +%s.%N)
  status=0
  /usr/bin/time -v -o "$timing" "${command[@]}" >"$out/$tier-$size.log" 2>&1 || status=$?
  end=$(date +%s.%N)
  if [ "$status" -ne 0 ]; then
    echo "$size: ${command[*]} exited $status (log: $out/$tier-$size.log)" >&2
  fi
  rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$timing")
  python3 - "$json" "$size" "$tier" "$start" "$end" "$rss_kib" <<'PY'
import json, sys
path, size, tier, start, end, rss_kib = sys.argv[1:]
report = json.load(open(path))
states = report.get("states_checked") or report.get("crash_states_checked") or report.get("states") or 0
acks = report.get("acks")
if acks is None and report.get("coverage"):
    c = report["coverage"]
    acks = c.get("acks_covered", 0) + c.get("acks_uncovered", 0) + c.get("acks_unchecked", 0)
acks = "?" if acks is None else acks
seconds = report.get("elapsed_seconds") or (float(end) - float(start))
rate = states / seconds if seconds else 0.0
per = seconds / states if states else float("nan")
print(f"{size:<8} {tier:<6} {acks!s:>8} {states:>9} {seconds:>10.1f} {rate:>12.0f} {per:>14.6f} {int(rss_kib) / 1024:>12.1f}")
PY
done
echo "reports, logs and timings in $out" >&2
