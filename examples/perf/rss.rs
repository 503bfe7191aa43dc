//! Peak RSS per phase. Before each timed step `clock()` resets the kernel's
//! high-water mark (`/proc/self/clear_refs`, Linux >= 4.0) and
//! `Section::timed` reads `VmHWM` after it, so every timed row carries the
//! peak of that phase alone. The figure is the whole process's, so it
//! includes what the run itself holds at the time (e.g. generated input,
//! or what earlier phases left in the allocator): `clock()` also notes the
//! resident size the phase starts from (`phase_start_rss`), so a report
//! can tell what the phase itself added. Elsewhere the calls do nothing
//! and the column stays empty.

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Resident bytes when the current phase's `clock()` ran.
static PHASE_START: AtomicU64 = AtomicU64::new(0);

/// Starts a timed phase: resets the peak-RSS mark, notes the resident size,
/// then starts the clock.
pub fn clock() -> Instant {
    reset_peak_rss();
    PHASE_START.store(status_bytes("VmRSS:").unwrap_or(0), Ordering::Relaxed);
    Instant::now()
}

/// Resident bytes when the current phase started (0 if unknown).
pub fn phase_start_rss() -> u64 {
    PHASE_START.load(Ordering::Relaxed)
}

/// Resets the kernel's peak-RSS mark (Linux >= 4.0) so each scenario reports its own peak.
pub fn reset_peak_rss() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

/// VmHWM from /proc/self/status, in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// A `kB` field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
