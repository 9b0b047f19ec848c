#!/bin/sh
# Runs fio and `powercut-writer bench` back to back on the same file system.
# Usage: writer/scripts/bench-vs-fio.sh DIR [SECONDS]
# DIR must be on a real disk file system (not tmpfs); the release binary must be built:
#   cargo build --release -p powercut-writer
set -eu
dir=${1:?usage: bench-vs-fio.sh DIR [SECONDS]}
seconds=${2:-10}
bin=${POWERCUT_WRITER:-${CARGO_TARGET_DIR:-target}/release/powercut-writer}
mkdir -p "$dir"
df -T "$dir" | tail -1
file="$dir/fio.dat"
# A preallocated, written file: fio then measures overwrites, like the journal's zero-filled
# segments.
rm -f "$file"
fallocate -l 256M "$file"
dd if=/dev/zero of="$file" bs=1M count=256 oflag=direct conv=notrunc status=none
sync
for depth in 1 32; do
    echo "== fio iodepth=$depth"
    fio --name=w --filename="$file" --size=256M --ioengine=io_uring --direct=1 --sync=dsync \
        --iodepth=$depth --bs=4k --rw=write --time_based --runtime="$seconds" \
        | grep -E 'IOPS|clat percentiles|50.00th|99.00th|99.90th'
done
for clients in 1 32; do
    echo "== powercut-writer bench --clients $clients"
    rm -rf "$dir/journal"
    "$bin" bench --dir "$dir/journal" --mode dsync --record-bytes 4096 --clients "$clients" \
        --seconds "$seconds"
done
rm -rf "$dir/journal" "$file"
