#!/bin/sh
# Runs fio and `powercut-writer bench` back to back on the same file system.
# Usage: writer/scripts/bench-vs-fio.sh DIR [SECONDS]
# DIR must be on a real disk file system (not tmpfs); the release binary must be built:
#   cargo build --release -p powercut-writer
set -eu
dir=${1:?usage: bench-vs-fio.sh DIR [SECONDS]}
seconds=${2:-10}
bin=${POWERCUT_WRITER:-${CARGO_TARGET_DIR:-target}/release/powercut-writer}
. "$(dirname "$0")/fio-common.sh"
prepare_fio_file
for depth in 1 32; do
    echo "== fio iodepth=$depth"
    fio_write "$depth" | grep -E 'IOPS|clat percentiles|50.00th|99.00th|99.90th'
done
for clients in 1 32; do
    echo "== powercut-writer bench --clients $clients"
    bench_writer "$bin" "$clients"
done
rm -rf "$dir/journal" "$file"
