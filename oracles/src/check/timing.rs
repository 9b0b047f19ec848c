//! Where the time of checking states goes: each part of a state's check, summed over the states
//! and workers of a run (atomics, so the workers share one tally).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::report::TimeSplit;

/// A part of a state's check.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Part {
    Replay,
    Image,
    Mount,
    Recovery,
    Judge,
    Probe,
    Unmount,
    Keep,
}

const PARTS: usize = 8;

/// The time of each part of checking states, summed (nanoseconds), and the states counted.
#[derive(Debug, Default)]
pub struct Timing {
    nanos: [AtomicU64; PARTS],
    states: AtomicU64,
}

impl Timing {
    /// Adds `d` to `part`.
    pub(crate) fn add(&self, part: Part, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos[part as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds the time since `since` to `part` and returns now.
    pub(crate) fn lap(&self, part: Part, since: Instant) -> Instant {
        let now = Instant::now();
        self.add(part, now.saturating_duration_since(since));
        now
    }

    /// Counts one state checked.
    pub(crate) fn count_state(&self) {
        self.states.fetch_add(1, Ordering::Relaxed);
    }

    /// The figures so far, in seconds.
    pub fn split(&self) -> TimeSplit {
        let s = |p: Part| self.nanos[p as usize].load(Ordering::Relaxed) as f64 / 1e9;
        TimeSplit {
            states: self.states.load(Ordering::Relaxed),
            replay_s: s(Part::Replay),
            image_s: s(Part::Image),
            mount_s: s(Part::Mount),
            recovery_s: s(Part::Recovery),
            judge_s: s(Part::Judge),
            probe_s: s(Part::Probe),
            unmount_s: s(Part::Unmount),
            keep_s: s(Part::Keep),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_separately() {
        let t = Timing::default();
        t.add(Part::Mount, Duration::from_millis(30));
        t.add(Part::Mount, Duration::from_millis(10));
        t.add(Part::Judge, Duration::from_millis(5));
        t.count_state();
        t.count_state();
        let s = t.split();
        assert_eq!(s.states, 2);
        assert!((s.mount_s - 0.040).abs() < 1e-9);
        assert!((s.judge_s - 0.005).abs() < 1e-9);
        assert_eq!(s.image_s, 0.0);
        let line = s.describe();
        assert!(line.contains("mount 20.0 (89%)"), "{line}");
        assert!(line.contains("over 2 states"), "{line}");
    }
}
