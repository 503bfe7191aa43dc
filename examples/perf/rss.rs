//! Peak RSS per phase. Before each timed step `clock()` resets the kernel's
//! high-water mark (`/proc/self/clear_refs`, Linux >= 4.0) and
//! `Section::timed` reads `VmHWM` after it, so every timed row carries the
//! peak of that phase alone. The figure is the whole process's, so it
//! includes what the run itself holds at the time (e.g. generated input).
//! Elsewhere the calls do nothing and the column stays empty.

use std::fs;
use std::time::Instant;

/// Starts a timed phase: resets the peak-RSS mark, then starts the clock.
pub fn clock() -> Instant {
    reset_peak_rss();
    Instant::now()
}

/// Resets the kernel's peak-RSS mark (Linux >= 4.0) so each scenario reports its own peak.
pub fn reset_peak_rss() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

/// VmHWM from /proc/self/status, in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
