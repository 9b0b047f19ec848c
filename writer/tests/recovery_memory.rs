//! Recovery and open run in memory bounded by a segment, not by the journal: records stream to
//! a visitor, and the open keeps only what the writer needs (a summary and the tail block).
//! Measured with a counting allocator (this test binary's global allocator).

// A counting allocator needs `unsafe impl GlobalAlloc`.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use common::{few_records_in_a_1_gib_segment, payload, scratch};
use powercut_writer::{recover_visiting, Journal, JournalOptions};

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);
/// One measurement at a time (the test harness runs tests on threads).
static MEASURING: Mutex<()> = Mutex::new(());

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let live = LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SEGMENT_BYTES: u64 = 1 << 20;

fn options() -> JournalOptions {
    JournalOptions {
        segment_bytes: SEGMENT_BYTES,
        prepare_ahead: false,
        ..JournalOptions::default()
    }
}

fn journal_of(payload_bytes: u64) -> tempfile::TempDir {
    let dir = scratch();
    let (journal, _) = Journal::open(dir.path(), options()).unwrap();
    let record_bytes = 16 * 1024;
    for lsn in 1..=payload_bytes / record_bytes as u64 {
        journal.append(&payload(lsn, record_bytes)).unwrap();
        if lsn % 16 == 0 {
            journal.commit().unwrap();
        }
    }
    journal.close().unwrap();
    dir
}

/// Peak bytes allocated above the start while `f` runs.
fn peak_of(f: impl FnOnce()) -> usize {
    let _one = MEASURING.lock().unwrap();
    let base = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(base, Ordering::Relaxed);
    f();
    PEAK_BYTES.load(Ordering::Relaxed).saturating_sub(base)
}

#[test]
fn open_and_recovery_memory_does_not_grow_with_the_journal() {
    let small = journal_of(4 << 20);
    let large = journal_of(48 << 20);
    let mut figures = Vec::new();
    for dir in [&small, &large] {
        let mut records = 0u64;
        let recover_peak = peak_of(|| {
            let summary = recover_visiting(dir.path(), None, &mut |_| records += 1).unwrap();
            assert_eq!(summary.record_count, records);
        });
        let open_peak = peak_of(|| {
            let (journal, report) = Journal::open(dir.path(), options()).unwrap();
            assert_eq!(report.recovery.record_count, records);
            drop(journal);
        });
        figures.push((records, recover_peak, open_peak));
    }
    println!("(records, recover peak bytes, open peak bytes): {figures:?}");
    let (small_records, small_recover, small_open) = figures[0];
    let (large_records, large_recover, large_open) = figures[1];
    assert!(large_records >= 10 * small_records, "{figures:?}");
    // A few segments at most (plus the open's staging buffers), whatever the journal's length
    // (12x more data here).
    let bound = 4 * SEGMENT_BYTES as usize;
    assert!(large_recover < bound, "{figures:?}");
    assert!(
        large_open < bound + options().max_staging_bytes,
        "{figures:?}"
    );
    assert!(
        large_recover < 2 * small_recover.max(SEGMENT_BYTES as usize),
        "{figures:?}"
    );
    assert!(
        large_open < 2 * small_open.max(SEGMENT_BYTES as usize),
        "{figures:?}"
    );
}

#[test]
fn recovery_of_a_large_preallocated_segment_holds_only_its_read_window() {
    let dir = scratch();
    few_records_in_a_1_gib_segment(dir.path(), 10);
    let mut records = 0u64;
    let peak = peak_of(|| {
        recover_visiting(dir.path(), None, &mut |_| records += 1).unwrap();
    });
    println!("recover peak bytes for a 1 GiB segment: {peak}");
    assert_eq!(records, 10);
    let window = powercut_writer::RecoveryOptions::default().read_chunk_bytes;
    // The read window, the tail kept for the writer, and small change.
    assert!(peak < 2 * window + (256 << 10), "{peak}");
}
