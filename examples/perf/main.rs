//! End-to-end performance run for `lockbox`.
//!
//! ```text
//! cargo run --release --example perf
//! ```
//!
//! Configured by environment variables (all optional):
//!
//! | variable                          | values                                                   | default               |
//! |-----------------------------------|----------------------------------------------------------|-----------------------|
//! | `LOCKBOX_PERF_SCENARIO`           | `small` \| `large` \| `metadata` \| `tree` \| `append-delete` \| `all` | `small` + `large` |
//! | `LOCKBOX_PERF_BACKEND`            | `file` \| `memory`                                       | `file`                |
//! | `LOCKBOX_PERF_EXTRACT`            | `directory` \| `memory`: only that extraction (`small`, `large`, `tree`) | both      |
//! | `LOCKBOX_PERF_EXTRACT_REPEAT`     | runs of each extraction (lockbox's on the same handle) and of each `tar` peer's (adds median rows; the peers table and the bound fractions use the medians) | `1` |
//! | `LOCKBOX_PERF_IMPORT_REPEAT`      | runs of each import from a directory (`small`, `tree`), each into a new archive, and of each `tar` peer's pack, in turn (adds median rows; the peers table and the import's bound fraction use the medians) | `1` |
//! | `LOCKBOX_PERF_FILES`              | small files (`small`); files of the generated tree (`tree`) | `10000`; tree: `3000` |
//! | `LOCKBOX_PERF_FILE_BYTES`         | bytes per small file (`small`, `append-delete`)          | `1024`                |
//! | `LOCKBOX_PERF_LARGE_BYTES`        | bytes of the one large file                              | `268435456` (256 MiB) |
//! | `LOCKBOX_PERF_PATTERN`            | `text` \| `randomish` \| `zero`                          | `text`                |
//! | `LOCKBOX_PERF_INITIAL_FILES`      | `append-delete`: files committed before the rounds       | `10000`               |
//! | `LOCKBOX_PERF_APPEND_FILES`       | `append-delete`: files appended (and deleted) per round  | `1000`                |
//! | `LOCKBOX_PERF_ROUNDS`             | `append-delete`: rounds                                  | `10`                  |
//! | `LOCKBOX_PERF_SOURCE`             | `tree`: a real directory to import                       | a generated tree      |
//! | `LOCKBOX_PERF_METADATA_SIZES`     | `metadata`: entry counts, comma-separated                | `10000,100000`        |
//! | `LOCKBOX_PERF_PEERS`              | `1`: also run tar+zstd and zip-AES on the same data      | off                   |
//! | `LOCKBOX_PERF_DIR`                | directory for the archives (kept) and on-disk extractions | a temporary dir      |
//! | `LOCKBOX_PERF_JSON`               | path: write every figure there as JSON                   | none                  |
//!
//! Numbers accept a binary suffix: `8M` = 8 MiB, `64k` = 64 KiB.
//!
//! Scenarios (one file each under `scenarios/`, where the details are):
//! - `small`: create, `put` N small files in nested directories, commit, reopen,
//!   `list`, `get` every file back and compare, then a one-file commit into the
//!   same archive (reports `CommitStats::bytes_written`). Then the same files
//!   are written to a source directory (one pass of the 1-thread filesystem
//!   bound) and imported with `add_path` (+ commit) into a second archive,
//!   which is extracted with `extract_to_directory` (to a new directory,
//!   checked byte for byte afterwards, untimed) and with `extract_all` (to
//!   memory).
//! - `large`: one large file through `put_reader` from a generator (never held
//!   in memory), commit, reopen, stream it back with `copy_to`, then 1000 random
//!   4 KiB `read_at` calls with p50/p99, then `extract_to_directory`.
//! - `metadata`: open, stat, list, one-file commit and delete at 10k / 100k
//!   entries (`LOCKBOX_PERF_METADATA_SIZES`).
//! - `tree`: `add_path` (+ commit) of a directory tree, `LOCKBOX_PERF_SOURCE`
//!   or else a generated, deterministic source-like tree (nested directories,
//!   text files of 200 B..20 KiB with a long tail to 1 MiB, empty files,
//!   symlinks; `LOCKBOX_PERF_FILES` scales it; the first row says which tree
//!   was used); `extract_to_directory` into a new directory on the disk
//!   (`LOCKBOX_PERF_DIR` or the temporary directory) and on tmpfs
//!   (`/dev/shm`, when it exists; the row says so when it does not), each
//!   checked against the source (for a real source, symlinks that point
//!   outside it are allowed, as tar restores them); `extract_all` into a
//!   callback that counts files and bytes (the fraction of its bound), then
//!   into one that reads every byte, checked against a checksum of the
//!   source (the peers' comparison: they copy every byte into a counting
//!   sink).
//! - `append-delete`: `LOCKBOX_PERF_INITIAL_FILES` small files committed, then
//!   `LOCKBOX_PERF_ROUNDS` rounds of `LOCKBOX_PERF_APPEND_FILES` new files +
//!   as many random deletions + commit: per round the commit time, the bytes
//!   written and the file size; at the end the size against a fresh
//!   `compact()`.
//! - `all`: every scenario above (about a minute at the defaults on 2 cores;
//!   more with peers).
//!
//! With `LOCKBOX_PERF_SCENARIO` unset, the default run is the `small` scenario
//! followed by the `large` one, so one command covers both workloads.
//!
//! Bounds (always on; `small`, `large`, `tree`): what this machine can do for
//! the same work, measured in the same run on the same data cut into frames
//! of the size and zstd level lockbox writes it with (for `large` and
//! `tree`, every k-th frame, at most 128 MiB spread over all the data, so
//! the bound streams through memory as lockbox does instead of cycling in
//! the cache): 64 KiB at level 3 for data written
//! under `Profile::Interactive` (`large`, `small`'s put archive), 1 MiB at
//! level 2 for data imported under `Profile::BulkImport` (`tree`, `small`'s
//! add_path archive; `small` measures both): raw XChaCha20-Poly1305 seal
//! and open, zstd compression and decompression, and the two pipelines
//! lockbox runs per frame (compress + seal; open + decompress), each on 1
//! thread and on every core (at most 8), best of 3 windows of 60 ms; and
//! the rate at which the filesystem accepts create + write + close of the
//! same number of files of the same sizes (for `tree`, on the disk and on
//! tmpfs; for `small` and `tree`, also open + read + close of the source).
//! For `small`'s add_path archive and `tree`, also open + decompress of the
//! archive's own data frames, each once, read from its file
//! (`testing::data_frames`): the extractions' CPU bound, expressed per byte
//! delivered (a fraction is then the time decoding the frames takes over
//! the extraction's time, deduplicated files not counted twice).
//! Lockbox's add/import/extract rates are printed as a fraction of the
//! relevant bound (the slowest stage, each stage at its best thread count,
//! on the coding of the archive the figure writes or reads: an upper
//! bound, not a prediction).
//!
//! Peers (`LOCKBOX_PERF_PEERS=1`), in-process through the Rust crates on
//! exactly the same data: `tar` + `zstd` streaming encoder at levels 1 and 3
//! (one thread), and `zip` with AES-256 (deflate, default level). For `small`
//! and `tree` every tool packs the same source directory (lockbox:
//! `add_path` + commit; symlinks stored as symlinks by every tool); for `large` the
//! generator streams into each tool. Then each archive is extracted to a new
//! directory (for `tree` also on tmpfs) and read to memory; every output is
//! checked (untimed). For `append-delete`, whose update tar and zip cannot
//! do in place, each peer rewrites the whole archive of the new state from
//! memory (a lower bound on their cost). Each figure is printed with
//! lockbox's ratio to each peer: speed ratio = peer time / lockbox time (> 1:
//! lockbox is faster), size ratio = lockbox bytes / peer bytes (< 1: lockbox
//! is smaller). Lockbox's commit ends with an fsync; the peers' archives are
//! closed, not synced.
//!
//! What is timed: exactly the library call(s) named in the step. Input data for
//! the small files is generated before the clock starts. The large file is
//! generated while `put_reader` (or a peer) pulls it; the time spent inside the
//! generator is measured separately, reported, and subtracted for the time and
//! MiB/s figures. Read-back of the large file is timed into a byte-counting
//! sink; the byte-for-byte comparison is a second, untimed pass. `read_at`
//! calls are timed one by one and checked afterwards.
//!
//! Peak RSS is reported per phase: the kernel's high-water mark is reset
//! (`/proc/self/clear_refs`) before each timed step and read after it, so it
//! includes what the run itself holds (e.g. the small files' generated data,
//! and heap the allocator kept from earlier scenarios: the reset brings the
//! mark down to the current RSS, not to zero). A scenario's "peak RSS" row
//! is the highest of lockbox's phases (the peers' do not count) and the
//! most one of them added over the resident size it began with.
//!
//! Directories of many small files made by the run (sources, extractions,
//! filesystem bounds) are removed only at its end (that cleanup is outside
//! the reported total; tmpfs directories go at once), and the filesystem is
//! flushed (syncfs) before each phase that writes files. On ext4 without a
//! journal, creating files among inodes deleted in the last seconds (minutes
//! while their inode blocks are dirty) costs a kernel scan per file, up to
//! ~100 µs each: runs started within minutes of large deletions in the same
//! filesystem (including the previous run's cleanup) can show it.
//!
//! Every run checks the data it reads back; a mismatch is an error (exit code 1).
//!
//! Layout: `config` (the variables), `ctx` (archives on the chosen backend),
//! `datagen` (seeded data), `srctree` (the generated tree, manifests,
//! checks), `bounds`, `peers`, `rss`, `report` (table and JSON), `units`,
//! `fsutil`, and `scenarios/` (one file per scenario).

mod bounds;
mod config;
mod ctx;
mod datagen;
mod fsutil;
mod peers;
mod report;
mod rss;
mod scenarios;
mod srctree;
mod units;

use std::fs;
use std::process::ExitCode;
use std::time::Instant;

use crate::bounds::bound_threads;
use crate::config::{Backend, Config};
use crate::ctx::Ctx;
use crate::fsutil::remove_trees;
use crate::report::{Section, print_compares, print_fractions, print_table, write_json};
use crate::units::{fmt_bytes, fmt_dur};

type BoxError = Box<dyn std::error::Error>;
type BoxResult<T> = Result<T, BoxError>;

fn run() -> BoxResult<()> {
    let cfg = Config::from_env()?;
    // Keep the temp dir alive for the whole run; a user-given dir is kept afterwards.
    let (tmp, dir) = match &cfg.dir {
        Some(d) => {
            fs::create_dir_all(d)?;
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new().prefix("lockbox-perf-").tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    println!(
        "lockbox perf: scenario={} backend={} pattern={} files={} file_bytes={} large_bytes={} ({}) peers={} threads={}",
        cfg.scenario_label,
        cfg.backend.name(),
        cfg.pattern.name(),
        cfg.files,
        cfg.file_bytes,
        cfg.large_bytes,
        fmt_bytes(cfg.large_bytes),
        if cfg.peers { "on" } else { "off" },
        bound_threads()
    );
    if cfg.backend == Backend::File {
        println!("archives in {}", dir.display());
    }
    if cfg!(debug_assertions) {
        println!("WARNING: debug build; figures are not meaningful (use --release)");
    }
    let ctx = Ctx {
        cfg,
        dir,
        scratch: Default::default(),
    };
    let start = Instant::now();
    let mut sections = Vec::new();
    for s in &ctx.cfg.scenarios {
        println!("running {}: {} ...", s.name, s.about);
        let mut sec = Section::new(s.name);
        let t = Instant::now();
        (s.run)(&ctx, &mut sec).map_err(|e| format!("scenario {}: {e}", s.name))?;
        sec.json_f("scenario_wall_s", t.elapsed().as_secs_f64());
        sections.push(sec);
    }
    let total = start.elapsed();
    let t = Instant::now();
    let removed = remove_trees(&ctx.scratch.borrow())?;
    let cleanup = t.elapsed();
    println!();
    print_table(&sections);
    print_fractions(&sections);
    print_compares(&sections);
    println!();
    println!(
        "all data read back matched; total wall time {}",
        fmt_dur(total)
    );
    if removed > 0 {
        println!(
            "cleanup (not in the total): removed the run's {removed} scratch files in {}",
            fmt_dur(cleanup)
        );
    }
    if let Some(p) = &ctx.cfg.json {
        write_json(p, &ctx.cfg, &sections, total)?;
        println!("figures written to {}", p.display());
    }
    if let Some(t) = tmp {
        t.close()?;
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perf: error: {e}");
            ExitCode::FAILURE
        }
    }
}
