//! Units and small statistics shared by every file: MiB/s, percentiles,
//! human-readable bytes and durations.

use std::time::Duration;

pub const MIB: f64 = 1024.0 * 1024.0;

pub fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / MIB
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // nearest-rank
    let n = sorted.len();
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1024.0 * MIB {
        format!("{:.2} GiB", b / (1024.0 * MIB))
    } else if b >= MIB {
        format!("{:.2} MiB", b / MIB)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b} B")
    }
}

pub fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.2} s")
    } else if s >= 0.001 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// What a commit wrote, as the tables show it.
pub fn fmt_commit(cs: &lockbox::CommitStats) -> String {
    format!(
        "{} written, {} pages",
        fmt_bytes(cs.bytes_written),
        cs.pages_written
    )
}
