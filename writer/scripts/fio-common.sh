# Sourced by bench-vs-fio.sh and interleave-vs-fio.sh, so that both compare against the same fio
# setup. Expects $dir and $seconds to be set.

# Creates $dir, prints its file system and sets $file to a preallocated, written 256 MiB file:
# fio then measures overwrites, like the journal's zero-filled segments.
prepare_fio_file() {
    mkdir -p "$dir"
    df -T "$dir" | tail -1
    file="$dir/fio.dat"
    rm -f "$file"
    fallocate -l 256M "$file"
    dd if=/dev/zero of="$file" bs=1M count=256 oflag=direct conv=notrunc status=none
    sync
}

# fio_write DEPTH: O_DSYNC 4 KiB writes to $file at queue depth DEPTH for $seconds.
fio_write() {
    fio --name=w --filename="$file" --size=256M --ioengine=io_uring --direct=1 --sync=dsync \
        --iodepth="$1" --bs=4k --rw=write --time_based --runtime="$seconds"
}

# bench_writer BINARY CLIENTS: `powercut-writer bench` with O_DSYNC 4 KiB records on a fresh
# journal in $dir for $seconds.
bench_writer() {
    rm -rf "$dir/journal"
    "$1" bench --dir "$dir/journal" --mode dsync --record-bytes 4096 --clients "$2" \
        --seconds "$seconds"
}
