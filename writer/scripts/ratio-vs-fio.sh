#!/bin/sh
# Alternates fio and `powercut-writer bench` in pairs on the same file system and prints, per
# pair, fio's IOPS, the journal's acknowledged records per second and their ratio, then the
# medians: on a shared machine whose disk changes speed from one minute to the next only
# figures taken back to back compare, and only a median over several pairs means anything.
# fio runs at iodepth=CLIENTS (1 client against iodepth=1, 32 clients against iodepth=32).
# Usage: writer/scripts/ratio-vs-fio.sh DIR PAIRS SECONDS CLIENTS [BINARY]
# DIR must be on a real disk file system (not tmpfs); the release binary must be built:
#   cargo build --release -p powercut-writer
set -eu
dir=${1:?usage: ratio-vs-fio.sh DIR PAIRS SECONDS CLIENTS [BINARY]}
pairs=${2:?pairs}
seconds=${3:?seconds}
clients=${4:?clients}
bin=${5:-${POWERCUT_WRITER:-${CARGO_TARGET_DIR:-target}/release/powercut-writer}}
. "$(dirname "$0")/fio-common.sh"
prepare_fio_file
# IOPS=52.8k or IOPS=5263 -> a plain number.
fio_iops() {
    fio_write "$clients" | sed -n 's/.*IOPS=\([0-9.]*\)\(k\{0,1\}\).*/\1 \2/p' | head -1 |
        awk '{ print ($2 == "k") ? $1 * 1000 : $1 }'
}
writer_rate() {
    bench_writer "$bin" "$clients" | sed -n 's/.*): \([0-9.]*\) records\/s.*/\1/p'
}
pair=1
results=""
echo "pair  time      fio iodepth=$clients IOPS   writer $clients clients records/s   ratio"
while [ "$pair" -le "$pairs" ]; do
    at=$(date -u +%T)
    iops=$(fio_iops)
    rate=$(writer_rate)
    ratio=$(awk -v a="$rate" -v b="$iops" 'BEGIN { printf "%.3f", a / b }')
    printf '%4d  %s  %24s  %32s  %s\n' "$pair" "$at" "$iops" "$rate" "$ratio"
    results="$results$iops $rate $ratio
"
    pair=$((pair + 1))
done
rm -rf "$dir/journal" "$file"
median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
printf 'median  fio %s  writer %s  ratio %s (lowest %s, highest %s)\n' \
    "$(printf '%s' "$results" | awk '{ print $1 }' | median)" \
    "$(printf '%s' "$results" | awk '{ print $2 }' | median)" \
    "$(printf '%s' "$results" | awk '{ print $3 }' | median)" \
    "$(printf '%s' "$results" | awk '{ print $3 }' | sort -n | head -1)" \
    "$(printf '%s' "$results" | awk '{ print $3 }' | sort -n | tail -1)"
