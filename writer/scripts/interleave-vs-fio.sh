#!/bin/sh
# Interleaved short rounds of fio and `powercut-writer bench`, so that every comparison is taken
# within the same minute on a shared, noisy machine. Per round: fio iodepth=32, bench with 32
# clients for each binary, fio iodepth=1, bench with 1 client for each binary.
# Usage: writer/scripts/interleave-vs-fio.sh DIR ROUNDS SECONDS BINARY [BINARY...]
# DIR must be on a real disk file system (not tmpfs).
set -eu
dir=${1:?usage: interleave-vs-fio.sh DIR ROUNDS SECONDS BINARY [BINARY...]}
rounds=${2:?rounds}
seconds=${3:?seconds}
shift 3
[ $# -gt 0 ] || { echo "at least one powercut-writer binary" >&2; exit 2; }
. "$(dirname "$0")/fio-common.sh"
prepare_fio_file
fio_run() {
    fio_write "$1" | grep -E 'IOPS|50.00th|99.00th' | tr -s ' \n' ' '
    echo
}
round=1
while [ "$round" -le "$rounds" ]; do
    echo "== round $round $(date -u +%T)"
    printf 'fio iodepth=32: '
    fio_run 32
    for bin in "$@"; do printf '%s, 32 clients: ' "$bin"; bench_writer "$bin" 32; done
    printf 'fio iodepth=1: '
    fio_run 1
    for bin in "$@"; do printf '%s, 1 client: ' "$bin"; bench_writer "$bin" 1; done
    round=$((round + 1))
done
rm -rf "$dir/journal" "$file"
