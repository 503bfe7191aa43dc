//! Replays the saved fuzz corpus (`fuzz/corpus/<target>/*`) on stable
//! `cargo test`, through the very code the fuzz targets run: the driver
//! logic lives in `fuzz/src/drivers.rs` (with `fuzz/src/forge.rs`) and is
//! included here with `#[path]`, so there is one copy of it.
//!
//! Files named `crash-*` are minimised inputs that crashed a target; they
//! stay in the corpus as regression tests and fail until the library bug
//! they show is fixed. Every failing file is reported, not just the first.

#[path = "../fuzz/src/drivers.rs"]
mod drivers;
#[path = "../fuzz/src/forge.rs"]
mod forge;

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Instant;

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Panics caught while replaying are reported at the end with their file;
/// their default message (and backtrace) would only be noise.
fn quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                prev(info)
            }
        }));
    });
}

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no saved corpus for {target} in {}",
        dir.display()
    );
    quiet_hook();
    let started = Instant::now();
    let mut failures = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        QUIET.with(|q| q.set(true));
        let r = catch_unwind(AssertUnwindSafe(|| run(&data)));
        QUIET.with(|q| q.set(false));
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            failures.push(format!("{target}/{name} ({} bytes): {msg}", data.len()));
        }
    }
    eprintln!(
        "[corpus] {target}: {} inputs replayed in {:?}, {} failed",
        files.len(),
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} {target} corpus inputs fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn open_untrusted() {
    replay("open_untrusted", drivers::open_untrusted);
}

#[test]
fn page_plaintext() {
    replay("page_plaintext", drivers::page_plaintext);
}

#[test]
fn ops_model() {
    replay("ops_model", drivers::ops_model);
}

#[test]
fn extract_paths() {
    replay("extract_paths", drivers::extract_paths);
}
