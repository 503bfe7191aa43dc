//! End-to-end performance run for `lockbox`.
//!
//! ```text
//! cargo run --release --example perf
//! ```
//!
//! Configured by environment variables (all optional):
//!
//! | variable                   | values                                   | default            |
//! |----------------------------|------------------------------------------|--------------------|
//! | `LOCKBOX_PERF_SCENARIO`    | `small` \| `large` \| `metadata` \| `all` | `small` + `large`  |
//! | `LOCKBOX_PERF_BACKEND`     | `file` \| `memory`                       | `file`             |
//! | `LOCKBOX_PERF_FILES`       | number of small files                    | `10000`            |
//! | `LOCKBOX_PERF_FILE_BYTES`  | bytes per small file                     | `1024`             |
//! | `LOCKBOX_PERF_LARGE_BYTES` | bytes of the one large file              | `268435456` (256 MiB) |
//! | `LOCKBOX_PERF_PATTERN`     | `text` \| `randomish` \| `zero`          | `text`             |
//! | `LOCKBOX_PERF_PEERS`       | `1`: also run tar+zstd and zip-AES       | off                |
//! | `LOCKBOX_PERF_DIR`         | directory for the archives (kept)        | a temporary dir    |
//! | `LOCKBOX_PERF_JSON`        | path: write every figure there as JSON   | none               |
//!
//! Numbers accept a binary suffix: `8M` = 8 MiB, `64k` = 64 KiB.
//!
//! Scenarios:
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
//! - `all`: every scenario above.
//!
//! With `LOCKBOX_PERF_SCENARIO` unset, the default run is the `small` scenario
//! followed by the `large` one, so one command covers both workloads.
//!
//! Bounds (always on, `small` and `large`): what this machine can do for the
//! same work, measured in the same run on the same data cut into 64 KiB frames
//! (for `large`, the first 32 MiB): raw XChaCha20-Poly1305 seal and open, zstd
//! level-3 compression and decompression, and the two pipelines lockbox runs
//! per frame (compress + seal; open + decompress), each on 1 thread and on
//! every core (at most 8), best of 3 windows of 60 ms; and the rate at which
//! the filesystem accepts create + write + close of the same number of files
//! of the same sizes (and, for `small`, open + read + close of them).
//! Lockbox's add/import/extract rates are printed as a fraction of the
//! relevant bound (the slowest stage, each stage at its best thread count: an
//! upper bound, not a prediction).
//!
//! Peers (`LOCKBOX_PERF_PEERS=1`, `small` and `large`), in-process through the
//! Rust crates on exactly the same data: `tar` + `zstd` streaming encoder at
//! levels 1 and 3, and `zip` with AES-256 (deflate, default level). For
//! `small` every tool packs the same source directory (lockbox: `add_path` +
//! commit); for `large` the generator streams into each tool. Then each
//! archive is extracted to a new directory and read to memory; every output
//! is checked (untimed). Each figure is printed with lockbox's ratio to each
//! peer: speed ratio = peer time / lockbox time (> 1: lockbox is faster), size
//! ratio = lockbox bytes / peer bytes (< 1: lockbox is smaller). Lockbox's
//! commit ends with an fsync; the peers' archives are closed, not synced.
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
//! includes what the run itself holds (e.g. the small files' generated data).
//!
//! Directories of many small files made by the run (sources, extractions,
//! filesystem bounds) are removed only at its end (that cleanup is outside
//! the reported total), and the filesystem is flushed (syncfs) before each
//! phase that writes files. On ext4 without a journal, creating files among
//! inodes deleted in the last seconds (minutes while their inode blocks are
//! dirty) costs a kernel scan per file, up to ~100 µs each: runs started
//! within minutes of large deletions in the same filesystem (including the
//! previous run's cleanup) can show it.
//!
//! Every run checks the data it reads back; a mismatch is an error (exit code 1).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use std::{env, fs};

use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305, XNonce};
use lockbox::{EntryKind, ExtractOptions, Key, Lockbox};

type BoxError = Box<dyn std::error::Error>;
type BoxResult<T> = Result<T, BoxError>;

const MIB: f64 = 1024.0 * 1024.0;
const SMALL_SEED: u64 = 0x5EED_0000_0000_0001;
const LARGE_SEED: u64 = 0x5EED_0000_0000_0002;
const RANGE_SEED: u64 = 0x5EED_0000_0000_0003;
const RANGE_READS: usize = 1000;
const RANGE_READ_BYTES: usize = 4096;

// ---------------------------------------------------------------------------
// Scenarios: add new ones here (and to `DEFAULT_SCENARIOS` if they belong in
// the default run).

struct Scenario {
    name: &'static str,
    about: &'static str,
    run: fn(&Ctx, &mut Section) -> BoxResult<()>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "small",
        about: "many small files: add, commit, open, list, read back, one-file commit",
        run: scenario_small,
    },
    Scenario {
        name: "large",
        about: "one large streamed file: put_reader, commit, open, copy_to, random read_at",
        run: scenario_large,
    },
    Scenario {
        name: "metadata",
        about: "open, stat, list, one-file commit and delete at 10k / 100k entries (LOCKBOX_PERF_METADATA_SIZES)",
        run: scenario_metadata,
    },
];

/// What runs when `LOCKBOX_PERF_SCENARIO` is not set.
const DEFAULT_SCENARIOS: &[&str] = &["small", "large"];

// ---------------------------------------------------------------------------
// Configuration

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    File,
    Memory,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::Memory => "memory",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pattern {
    Text,
    Randomish,
    Zero,
}

impl Pattern {
    fn name(self) -> &'static str {
        match self {
            Pattern::Text => "text",
            Pattern::Randomish => "randomish",
            Pattern::Zero => "zero",
        }
    }

    /// Fills `out` deterministically from `seed`.
    fn fill(self, seed: u64, out: &mut [u8]) {
        match self {
            Pattern::Text => fill_text(seed, out),
            Pattern::Randomish => fill_random(seed, out),
            Pattern::Zero => out.fill(0),
        }
    }
}

struct Config {
    scenario_label: String,
    scenarios: Vec<&'static Scenario>,
    backend: Backend,
    files: usize,
    file_bytes: usize,
    large_bytes: u64,
    pattern: Pattern,
    dir: Option<PathBuf>,
    json: Option<PathBuf>,
    peers: bool,
}

fn env_string(name: &str) -> BoxResult<Option<String>> {
    match env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_string())),
        Err(env::VarError::NotPresent) => Ok(None),
        Err(env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8").into()),
    }
}

/// Parses `123`, `64k`, `8M`, `1G` (binary multiples).
fn parse_size(name: &str, raw: &str) -> BoxResult<u64> {
    let s = raw.trim().replace('_', "");
    let (digits, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1u64 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1u64 << 30),
        _ => (&s[..], 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{name}={raw:?} is not a number (examples: 1000, 64k, 8M)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{name}={raw:?} is too large").into())
}

fn env_size(name: &str, default: u64) -> BoxResult<u64> {
    match env_string(name)? {
        None => Ok(default),
        Some(v) => parse_size(name, &v),
    }
}

impl Config {
    fn from_env() -> BoxResult<Config> {
        let accepted = || {
            let mut names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
            names.push("all");
            names.join(", ")
        };
        let (scenario_label, scenarios) = match env_string("LOCKBOX_PERF_SCENARIO")? {
            None => (
                format!("default ({})", DEFAULT_SCENARIOS.join(" + ")),
                DEFAULT_SCENARIOS
                    .iter()
                    .map(|n| {
                        SCENARIOS
                            .iter()
                            .find(|s| s.name == *n)
                            .expect("default scenario exists")
                    })
                    .collect(),
            ),
            Some(v) if v == "all" => ("all".to_string(), SCENARIOS.iter().collect()),
            Some(v) => match SCENARIOS.iter().find(|s| s.name == v) {
                Some(s) => (v.clone(), vec![s]),
                None => {
                    return Err(format!(
                        "unknown LOCKBOX_PERF_SCENARIO={v:?}: this version accepts {}",
                        accepted()
                    )
                    .into());
                }
            },
        };
        let backend = match env_string("LOCKBOX_PERF_BACKEND")?.as_deref() {
            None | Some("file") => Backend::File,
            Some("memory") => Backend::Memory,
            Some(other) => {
                return Err(format!(
                    "unknown LOCKBOX_PERF_BACKEND={other:?}: expected file or memory"
                )
                .into());
            }
        };
        let pattern = match env_string("LOCKBOX_PERF_PATTERN")?.as_deref() {
            None | Some("text") => Pattern::Text,
            Some("randomish") => Pattern::Randomish,
            Some("zero") => Pattern::Zero,
            Some(other) => {
                return Err(format!(
                    "unknown LOCKBOX_PERF_PATTERN={other:?}: expected text, randomish or zero"
                )
                .into());
            }
        };
        let files = env_size("LOCKBOX_PERF_FILES", 10_000)?;
        let file_bytes = env_size("LOCKBOX_PERF_FILE_BYTES", 1024)?;
        let large_bytes = env_size("LOCKBOX_PERF_LARGE_BYTES", 256 << 20)?;
        if files == 0 {
            return Err("LOCKBOX_PERF_FILES must be at least 1".into());
        }
        if file_bytes > (64 << 20) {
            return Err(
                "LOCKBOX_PERF_FILE_BYTES above 64 MiB is not a small file; use the large scenario"
                    .into(),
            );
        }
        let files = usize::try_from(files).map_err(|_| "LOCKBOX_PERF_FILES is too large")?;
        let peers = match env_string("LOCKBOX_PERF_PEERS")?.as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => {
                return Err(
                    format!("unknown LOCKBOX_PERF_PEERS={other:?}: expected 0 or 1").into(),
                );
            }
        };
        Ok(Config {
            scenario_label,
            scenarios,
            backend,
            files,
            file_bytes: file_bytes as usize,
            large_bytes,
            pattern,
            dir: env_string("LOCKBOX_PERF_DIR")?.map(PathBuf::from),
            json: env_string("LOCKBOX_PERF_JSON")?.map(PathBuf::from),
            peers,
        })
    }
}

// ---------------------------------------------------------------------------
// Context shared by the scenarios: where archives live, how to create/reopen

struct Ctx {
    cfg: Config,
    dir: PathBuf,
    /// Directories of many small files, removed at the end of the run: on
    /// some filesystems (ext4 without a journal) creating files right after
    /// many were deleted is far slower, so no phase deletes them mid-run.
    scratch: std::cell::RefCell<Vec<PathBuf>>,
}

/// The key used for every archive of the run (raw key: no KDF cost in the figures).
fn key() -> Key {
    Key::raw([0x42; 32])
}

impl Ctx {
    /// Removes `p` at the end of the run.
    fn remove_at_end(&self, p: &Path) {
        self.scratch.borrow_mut().push(p.to_path_buf());
    }

    fn archive_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("perf-{name}.lbox"))
    }

    /// Creates a fresh archive for scenario `name` on the configured backend.
    fn create(&self, name: &str) -> BoxResult<Lockbox> {
        match self.cfg.backend {
            Backend::File => {
                let path = self.archive_path(name);
                remove_if_exists(&path)?;
                Ok(Lockbox::create(&path, key())?)
            }
            Backend::Memory => Ok(Lockbox::builder().create_in_memory(key())?),
        }
    }

    /// Closes `lb` and opens the same archive again. Only the open itself is
    /// timed (not the drop, not copying an in-memory image out).
    fn reopen(&self, lb: Lockbox, name: &str) -> BoxResult<(Lockbox, Duration)> {
        match self.cfg.backend {
            Backend::File => {
                drop(lb);
                let path = self.archive_path(name);
                let t = clock();
                let lb = Lockbox::open(&path, key())?;
                Ok((lb, t.elapsed()))
            }
            Backend::Memory => {
                let image = lb.image()?;
                drop(lb);
                let t = clock();
                let lb = Lockbox::builder().open_bytes(image, key())?;
                Ok((lb, t.elapsed()))
            }
        }
    }

    /// Size of the archive as stored: the file length, or the in-memory image length.
    fn stored_bytes(&self, lb: &Lockbox, name: &str) -> BoxResult<u64> {
        match self.cfg.backend {
            Backend::File => Ok(fs::metadata(self.archive_path(name))?.len()),
            Backend::Memory => Ok(lb.image()?.len() as u64),
        }
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Scenario: metadata at scale

/// Entry counts for `metadata`: `LOCKBOX_PERF_METADATA_SIZES` (comma-separated),
/// default 10,000 and 100,000 (1,000,000 is opt-in).
fn metadata_sizes() -> BoxResult<Vec<usize>> {
    match std::env::var("LOCKBOX_PERF_METADATA_SIZES") {
        Ok(v) => v
            .split(',')
            .map(|x| {
                x.trim()
                    .replace('_', "")
                    .parse::<usize>()
                    .map_err(|e| format!("LOCKBOX_PERF_METADATA_SIZES: {x:?}: {e}").into())
            })
            .collect(),
        Err(_) => Ok(vec![10_000, 100_000]),
    }
}

fn scenario_metadata(ctx: &Ctx, sec: &mut Section) -> BoxResult<()> {
    const BATCH: usize = 50_000;
    const FILE: usize = 200;
    for n in metadata_sizes()? {
        let name = format!("metadata-{n}");
        let tag = |s: &str| format!("{s} @{n}");
        reset_peak_rss();
        let mut lb = ctx.create(&name)?;
        let mut data = vec![0u8; FILE];
        let t = clock();
        for i in 0..n {
            ctx.cfg.pattern.fill(SMALL_SEED ^ i as u64, &mut data);
            lb.put(&small_path(i), &data)?;
            if (i + 1) % BATCH == 0 {
                lb.commit()?;
            }
        }
        lb.commit()?;
        sec.timed(
            &tag("build"),
            t.elapsed(),
            Some((n * FILE) as u64),
            Some(n as u64),
            format!("{n} x put({FILE} B), commit every {BATCH}"),
        );
        let (lb2, open) = ctx.reopen(lb, &name)?;
        let mut lb = lb2;
        let reads = lb.io_stats().reads;
        sec.timed(
            &tag("open"),
            open,
            None,
            None,
            format!("{reads} backend reads"),
        );
        sec.json_u(&format!("open_reads_{n}"), reads);

        // stat: warm (second pass over the same random paths).
        let mut rng = n as u64 | 1;
        let probes: Vec<String> = (0..10_000)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                small_path((rng % n as u64) as usize)
            })
            .collect();
        for p in &probes {
            lb.stat(p)?.ok_or("stat missed")?;
        }
        let mut times: Vec<Duration> = probes
            .iter()
            .map(|p| {
                let t = Instant::now();
                let r = lb.stat(p);
                let d = t.elapsed();
                r.map(|_| d)
            })
            .collect::<Result<_, _>>()?;
        times.sort();
        let p50 = percentile(&times, 0.5);
        let p99 = percentile(&times, 0.99);
        sec.row(
            &tag("stat warm"),
            Some(p50),
            None,
            None,
            format!(
                "10000 random paths: p50 {} p99 {}",
                fmt_dur(p50),
                fmt_dur(p99)
            ),
        );
        sec.json_f(&format!("stat_p50_s_{n}"), p50.as_secs_f64());
        sec.json_f(&format!("stat_p99_s_{n}"), p99.as_secs_f64());

        let t = clock();
        let listed = lb.list("")?.count();
        sec.timed(
            &tag("list"),
            t.elapsed(),
            None,
            Some(listed as u64),
            format!("{listed} entries"),
        );

        // Two one-file commits: the first after the build also files the
        // build's freed pages into the free-space index.
        for (i, label) in ["one-file commit (first)", "one-file commit"]
            .into_iter()
            .enumerate()
        {
            lb.put(&format!("extra/new{i}.txt"), &data)?;
            let t = clock();
            let cs = lb.commit()?;
            sec.timed(
                &tag(label),
                t.elapsed(),
                None,
                None,
                format!(
                    "{} written, {} pages",
                    fmt_bytes(cs.bytes_written),
                    cs.pages_written
                ),
            );
            sec.json_u(&format!("{}_bytes_{n}", json_key(label)), cs.bytes_written);
        }
        lb.delete(&small_path(n / 2))?;
        let t = clock();
        let cs = lb.commit()?;
        sec.timed(
            &tag("one-file delete"),
            t.elapsed(),
            None,
            None,
            format!(
                "{} written, {} pages (repack + redaction)",
                fmt_bytes(cs.bytes_written),
                cs.pages_written
            ),
        );
        sec.json_u(&format!("one_file_delete_bytes_{n}"), cs.bytes_written);
        let stored = ctx.stored_bytes(&lb, &name)?;
        sec.fact_u(&format!("lockbox_bytes_{n}"), stored, fmt_bytes(stored));
        if let Some(b) = peak_rss_bytes() {
            sec.fact_u(&format!("peak_rss_{n}"), b, fmt_bytes(b));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Scenario: small files

/// Nested layout: `d00/s0/f00000.txt`: 1000 files per top directory, 100 per leaf.
fn small_path(i: usize) -> String {
    format!("d{:02}/s{}/f{:05}.txt", i / 1000, (i / 100) % 10, i)
}

fn scenario_small(ctx: &Ctx, sec: &mut Section) -> BoxResult<()> {
    let cfg = &ctx.cfg;
    let n = cfg.files;
    // Inputs are generated before any clock starts.
    let paths: Vec<String> = (0..n).map(small_path).collect();
    let datas: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut v = vec![0u8; cfg.file_bytes];
            cfg.pattern
                .fill(SMALL_SEED ^ (i as u64).wrapping_mul(0x9E37_79B9), &mut v);
            v
        })
        .collect();
    let logical: u64 = datas.iter().map(|d| d.len() as u64).sum();
    sec.fact_u("files", n as u64, format!("{n}"));
    sec.fact_u("logical_bytes", logical, fmt_bytes(logical));
    settle(&ctx.dir);

    let t = clock();
    let mut lb = ctx.create("small")?;
    sec.timed("create", t.elapsed(), None, None, String::new());

    let t = clock();
    for (p, d) in paths.iter().zip(&datas) {
        lb.put(p, d)?;
    }
    let add = t.elapsed();
    sec.timed(
        "add",
        add,
        Some(logical),
        Some(n as u64),
        format!("{n} x put({} B)", cfg.file_bytes),
    );

    let t = clock();
    let cs = lb.commit()?;
    let commit = t.elapsed();
    // No rate on commit alone: how work splits between put and commit is the
    // library's choice; compare add+commit.
    sec.timed(
        "commit",
        commit,
        None,
        None,
        format!(
            "{} written, {} pages",
            fmt_bytes(cs.bytes_written),
            cs.pages_written
        ),
    );
    sec.json_u("commit_bytes_written", cs.bytes_written);
    sec.json_u("commit_pages_written", cs.pages_written);
    sec.derived(
        "add+commit",
        add + commit,
        Some(logical),
        Some(n as u64),
        String::new(),
    );

    let (mut lb, open) = ctx.reopen(lb, "small")?;
    sec.timed("open", open, None, None, "reopen after commit".into());

    let stored = ctx.stored_bytes(&lb, "small")?;

    let t = clock();
    let mut listed_files = 0u64;
    let mut listed_bytes = 0u64;
    let mut listed_entries = 0u64;
    for e in lb.list("")? {
        let e = e?;
        listed_entries += 1;
        if matches!(e.kind, EntryKind::File) {
            listed_files += 1;
            listed_bytes += e.len;
        }
    }
    let list = t.elapsed();
    if listed_files != n as u64 || listed_bytes != logical {
        return Err(format!(
            "list(\"\") found {listed_files} files / {listed_bytes} bytes, expected {n} / {logical}"
        )
        .into());
    }
    sec.timed(
        "list",
        list,
        None,
        Some(listed_entries),
        format!("{listed_entries} entries"),
    );

    // get + compare; the compare is a memcmp of the file's bytes.
    let t = clock();
    for (p, d) in paths.iter().zip(&datas) {
        let got = lb.get(p)?;
        if got != *d {
            return Err(format!(
                "read-back mismatch for {p}: got {} bytes, expected {}",
                got.len(),
                d.len()
            )
            .into());
        }
    }
    let read = t.elapsed();
    sec.timed(
        "read-back",
        read,
        Some(logical),
        Some(n as u64),
        format!("{n} x get + compare"),
    );

    // One more file into the existing archive: how much does a small commit write?
    let extra_path = "extra/one-file.txt";
    let mut extra = vec![0u8; cfg.file_bytes];
    cfg.pattern.fill(SMALL_SEED ^ 0xE47A, &mut extra);
    lb.put(extra_path, &extra)?;
    let t = clock();
    let cs1 = lb.commit()?;
    let one = t.elapsed();
    sec.timed(
        "one-file commit",
        one,
        None,
        None,
        format!(
            "bytes_written={} ({}), pages_written={}",
            cs1.bytes_written,
            fmt_bytes(cs1.bytes_written),
            cs1.pages_written
        ),
    );
    sec.json_u("one_file_commit_bytes_written", cs1.bytes_written);
    sec.json_u("one_file_commit_pages_written", cs1.pages_written);
    if lb.get(extra_path)? != extra {
        return Err("read-back mismatch for the one-file commit".into());
    }
    let stored_after = ctx.stored_bytes(&lb, "small")?;
    drop(lb);

    // The same files from a directory, imported with add_path into a second
    // archive, which is extracted to a new directory (checked afterwards,
    // untimed) and to memory.
    //
    // Bounds on the same data, measured here and reported after lockbox's
    // figures: the files end to end in 64 KiB frames (as packs hold them);
    // the filesystem creating the same files, best of FS_TRIES passes on 1
    // thread (the first writes the import's source directory) and on every
    // core, each into a new directory (the cost of creating files can differ
    // from one directory to the next: see `Ctx::scratch`); open+read+close
    // of the source. Nothing is deleted until the end of the run.
    let b = cpu_bounds(&frames_of(&datas.concat()))?;
    let threads = bound_threads();
    let src = ctx.dir.join("small-source");
    let fsdir = ctx.dir.join("small-fs-bound");
    remove_dir_if_exists(&src)?;
    remove_dir_if_exists(&fsdir)?;
    ctx.remove_at_end(&src);
    ctx.remove_at_end(&fsdir);
    let create_best = |t: usize| -> io::Result<Duration> {
        let mut best = Duration::MAX;
        for k in 0..FS_TRIES {
            let d = if t == 1 && k == 0 {
                src.clone()
            } else {
                fsdir.join(format!("{t}-{k}"))
            };
            settle(&ctx.dir);
            best = best.min(fs_create_bound(&d, &paths, &datas, t)?);
        }
        Ok(best)
    };
    let c1 = create_best(1)?;
    let cn = if threads > 1 {
        create_best(threads)?
    } else {
        c1
    };
    let read_best = |t: usize| -> io::Result<Duration> {
        let mut best = Duration::MAX;
        for _ in 0..FS_TRIES {
            best = best.min(fs_read_bound(&src, &paths, cfg.file_bytes, t)?);
        }
        Ok(best)
    };
    let r1 = read_best(1)?;
    let rn = if threads > 1 { read_best(threads)? } else { r1 };
    let create = Rate {
        one: mib_s(logical, c1),
        all: mib_s(logical, cn),
    };
    let readr = Rate {
        one: mib_s(logical, r1),
        all: mib_s(logical, rn),
    };

    let mut lbi = ctx.create("small-import")?;
    settle(&ctx.dir);
    let t = clock();
    let st = lbi.add_path(&src, "")?;
    let import = t.elapsed();
    if st.files != n as u64 || st.bytes != logical || !st.skipped.is_empty() {
        return Err(format!(
            "add_path imported {} files / {} bytes ({} skipped), expected {n} / {logical}",
            st.files,
            st.bytes,
            st.skipped.len()
        )
        .into());
    }
    sec.timed(
        "import (add_path)",
        import,
        Some(logical),
        Some(n as u64),
        format!("{} files, {} dirs from a directory", st.files, st.dirs),
    );
    let t = clock();
    let cs = lbi.commit()?;
    let import_commit = t.elapsed();
    sec.timed(
        "commit (import)",
        import_commit,
        None,
        None,
        format!(
            "{} written, {} pages",
            fmt_bytes(cs.bytes_written),
            cs.pages_written
        ),
    );
    let import_total = import + import_commit;
    sec.derived(
        "import+commit",
        import_total,
        Some(logical),
        Some(n as u64),
        String::new(),
    );
    let (lbi, _) = ctx.reopen(lbi, "small-import")?;
    let import_stored = ctx.stored_bytes(&lbi, "small-import")?;

    let dest = ctx.dir.join("small-extract");
    remove_dir_if_exists(&dest)?;
    settle(&ctx.dir);
    let t = clock();
    let es = lbi.extract_to_directory(&dest, &ExtractOptions::default())?;
    let extract_dir = t.elapsed();
    if es.files != n as u64 || es.bytes != logical {
        return Err(format!(
            "extract_to_directory wrote {} files / {} bytes, expected {n} / {logical}",
            es.files, es.bytes
        )
        .into());
    }
    sec.timed(
        "extract to dir",
        extract_dir,
        Some(logical),
        Some(n as u64),
        format!(
            "extract_to_directory into a new directory ({} files, {} dirs)",
            es.files, es.dirs
        ),
    );
    verify_tree(&dest, &paths, &datas, "lockbox extract_to_directory")?;
    ctx.remove_at_end(&dest);

    let (mut mem_files, mut mem_bytes) = (0u64, 0u64);
    let t = clock();
    lbi.extract_all("", |e, bytes| {
        if matches!(e.kind, EntryKind::File) {
            mem_files += 1;
            mem_bytes += black_box(bytes).len() as u64;
        }
        Ok(())
    })?;
    let extract_mem = t.elapsed();
    if mem_files != n as u64 || mem_bytes != logical {
        return Err(format!(
            "extract_all gave {mem_files} files / {mem_bytes} bytes, expected {n} / {logical}"
        )
        .into());
    }
    sec.timed(
        "extract to memory",
        extract_mem,
        Some(logical),
        Some(n as u64),
        "extract_all: every file to a callback".into(),
    );
    drop(lbi);

    sec.size(stored, logical);
    sec.fact_u(
        "lockbox_bytes_after_one_file_commit",
        stored_after,
        format!("{} after the one-file commit", fmt_bytes(stored_after)),
    );
    sec.fact_named(
        "lockbox bytes (import)",
        "import_lockbox_bytes",
        import_stored,
        format!(
            "{} ({import_stored} B), ratio lockbox/logical {:.3}",
            fmt_bytes(import_stored),
            import_stored as f64 / logical.max(1) as f64
        ),
    );
    sec.peak_rss();

    report_cpu_bounds(sec, &b, "the small files end to end");
    for (key, step, d1, dn, r) in [
        ("fs_create", "bound: fs create+write+close", c1, cn, create),
        ("fs_read", "bound: fs open+read+close", r1, rn, readr),
    ] {
        let fps = |d: Duration| n as f64 / d.as_secs_f64();
        sec.row(
            step,
            Some(dn),
            Some(r.all),
            Some(fps(dn)),
            format!(
                "{n} x {} B, best of {FS_TRIES}: 1 thread {:.0} files/s ({:.1} MiB/s), {threads} threads {:.0} files/s ({:.1} MiB/s)",
                cfg.file_bytes,
                fps(d1),
                r.one,
                fps(dn),
                r.all
            ),
        );
        sec.json_f(&format!("bound_{key}_1t_files_s"), fps(d1));
        sec.json_f(&format!("bound_{key}_files_s"), fps(dn));
        sec.json_f(&format!("bound_{key}_1t_mib_s"), r.one);
        sec.json_f(&format!("bound_{key}_mib_s"), r.all);
    }
    let rate = |d: Duration| mib_s(logical, d);
    let (w, v) = b.pack.stage("compress+seal");
    sec.fraction("add+commit (put)", rate(add + commit), &w, v);
    let (w, v) = slowest(&[
        b.pack.stage("compress+seal"),
        readr.stage("fs open+read+close"),
    ]);
    sec.fraction("import+commit (add_path)", rate(import_total), &w, v);
    let (w, v) = slowest(&[
        b.unpack.stage("open+decompress"),
        create.stage("fs create+write+close"),
    ]);
    sec.fraction("extract to directory", rate(extract_dir), &w, v);
    let (w, v) = b.unpack.stage("open+decompress");
    sec.fraction("extract to memory (extract_all)", rate(extract_mem), &w, v);
    sec.fraction("read-back (get)", rate(read), &w, v);

    if cfg.peers {
        let runs = run_peers(
            ctx,
            sec,
            "small",
            logical,
            n as u64,
            &|peer, out| {
                peer_pack_dir(peer, &src, out)?;
                Ok(Duration::ZERO)
            },
            &|peer, dest| verify_tree(dest, &paths, &datas, peer.name()),
        )?;
        compare_peers(
            sec,
            &runs,
            ("import from directory", import_total),
            extract_dir,
            ("extract to memory", extract_mem),
            import_stored,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Scenario: one large file

fn scenario_large(ctx: &Ctx, sec: &mut Section) -> BoxResult<()> {
    let cfg = &ctx.cfg;
    let size = cfg.large_bytes;
    let path = "large/blob.bin";
    sec.fact_u("files", 1, "1".into());
    sec.fact_u("logical_bytes", size, fmt_bytes(size));
    settle(&ctx.dir);

    let t = clock();
    let mut lb = ctx.create("large")?;
    sec.timed("create", t.elapsed(), None, None, String::new());

    let mut input = GenReader::new(cfg.pattern, LARGE_SEED, size);
    let t = clock();
    let n = lb.put_reader(path, &mut input)?;
    let add_wall = t.elapsed();
    if n != size {
        return Err(format!("put_reader returned {n}, expected {size}").into());
    }
    let gen_time = input.gen_time;
    let add = add_wall.saturating_sub(gen_time);
    sec.timed(
        "add",
        add,
        Some(size),
        None,
        format!(
            "put_reader; wall {} incl. {} generating input (excluded)",
            fmt_dur(add_wall),
            fmt_dur(gen_time)
        ),
    );
    sec.json_f("add_wall_s", add_wall.as_secs_f64());
    sec.json_f("add_generator_s", gen_time.as_secs_f64());

    let t = clock();
    let cs = lb.commit()?;
    let commit = t.elapsed();
    sec.timed(
        "commit",
        commit,
        None,
        None,
        format!(
            "{} written, {} pages",
            fmt_bytes(cs.bytes_written),
            cs.pages_written
        ),
    );
    sec.json_u("commit_bytes_written", cs.bytes_written);
    sec.derived("add+commit", add + commit, Some(size), None, String::new());

    let (lb, open) = ctx.reopen(lb, "large")?;
    sec.timed("open", open, None, None, "reopen after commit".into());
    let stored = ctx.stored_bytes(&lb, "large")?;

    match lb.stat(path)? {
        Some(e) if e.len == size && matches!(e.kind, EntryKind::File) => {}
        other => {
            return Err(
                format!("stat({path}) = {other:?}, expected a file of {size} bytes").into(),
            );
        }
    }

    // Timed pass: stream into a counting sink.
    let mut sink = CountingSink(0);
    let t = clock();
    let copied = lb.copy_to(path, &mut sink)?;
    let read = t.elapsed();
    if copied != size || sink.0 != size {
        return Err(format!(
            "copy_to returned {copied} ({} seen), expected {size}",
            sink.0
        )
        .into());
    }
    sec.timed(
        "read-back",
        read,
        Some(size),
        None,
        "copy_to into a counting sink".into(),
    );

    // Untimed pass: byte-for-byte comparison against the generator.
    let mut check = VerifyWriter::new(cfg.pattern, LARGE_SEED);
    let copied = lb.copy_to(path, &mut check)?;
    if copied != size || check.pos != size {
        return Err(format!("verify pass: copy_to returned {copied}, expected {size}").into());
    }

    // Random 4 KiB read_at calls, each timed alone; checked afterwards.
    if size > 0 {
        let len = RANGE_READ_BYTES.min(size as usize);
        let mut rng = Rng::new(RANGE_SEED);
        let offsets: Vec<u64> = (0..RANGE_READS)
            .map(|_| rng.below(size - len as u64 + 1))
            .collect();
        let mut buf = vec![0u8; len];
        let mut got = vec![0u8; RANGE_READS * len];
        let mut times = Vec::with_capacity(RANGE_READS);
        reset_peak_rss();
        for (k, &off) in offsets.iter().enumerate() {
            let t = Instant::now();
            let n = lb.read_at(path, off, &mut buf)?;
            times.push(t.elapsed());
            if n != len {
                return Err(format!("read_at({off}) returned {n}, expected {len}").into());
            }
            got[k * len..(k + 1) * len].copy_from_slice(&buf);
        }
        let mut expected = vec![0u8; len];
        let mut scratch = vec![0u8; GEN_BLOCK];
        for (k, &off) in offsets.iter().enumerate() {
            expected_range(cfg.pattern, LARGE_SEED, off, &mut expected, &mut scratch);
            if got[k * len..(k + 1) * len] != expected[..] {
                return Err(format!("read_at({off}, {len}) returned wrong bytes").into());
            }
        }
        let total: Duration = times.iter().sum();
        times.sort();
        let p50 = percentile(&times, 0.50);
        let p99 = percentile(&times, 0.99);
        sec.timed(
            "random read_at",
            total,
            Some((RANGE_READS * len) as u64),
            None,
            format!(
                "{RANGE_READS} x {len} B: p50 {} p99 {} max {}",
                fmt_dur(p50),
                fmt_dur(p99),
                fmt_dur(*times.last().unwrap())
            ),
        );
        sec.json_f("read_at_p50_s", p50.as_secs_f64());
        sec.json_f("read_at_p99_s", p99.as_secs_f64());
        sec.json_f("read_at_total_s", total.as_secs_f64());
        sec.json_u("read_at_calls", RANGE_READS as u64);
        sec.json_u("read_at_bytes", len as u64);
    }

    // Extract to a new directory; checked afterwards (untimed).
    let dest = ctx.dir.join("large-extract");
    remove_dir_if_exists(&dest)?;
    settle(&ctx.dir);
    let t = clock();
    let es = lb.extract_to_directory(&dest, &ExtractOptions::default())?;
    let extract_dir = t.elapsed();
    if es.files != 1 || es.bytes != size {
        return Err(format!(
            "extract_to_directory wrote {} files / {} bytes, expected 1 / {size}",
            es.files, es.bytes
        )
        .into());
    }
    sec.timed(
        "extract to dir",
        extract_dir,
        Some(size),
        None,
        "extract_to_directory into a new directory".into(),
    );
    verify_large_file(
        &dest.join(path),
        cfg.pattern,
        size,
        "lockbox extract_to_directory",
    )?;
    remove_dir_if_exists(&dest)?;
    drop(lb);

    sec.size(stored, size);
    sec.peak_rss();

    // Bounds on the same data (the file's first 32 MiB in 64 KiB frames), and
    // the filesystem writing one file of the same size.
    let sample = size.min(BOUND_SAMPLE);
    let mut head = vec![0u8; sample as usize];
    GenReader::new(cfg.pattern, LARGE_SEED, sample).read_exact(&mut head)?;
    let b = cpu_bounds(&frames_of(&head))?;
    report_cpu_bounds(sec, &b, &format!("the file's first {}", fmt_bytes(sample)));
    let chunk = &head[..head.len().min(1 << 20)];
    let mut c1 = Duration::MAX;
    for k in 0..FS_TRIES {
        let fpath = ctx.dir.join(format!("large-fs-bound-{k}.bin"));
        remove_if_exists(&fpath)?;
        settle(&ctx.dir);
        let t = Instant::now();
        {
            let mut f = fs::File::create(&fpath)?;
            let mut left = size;
            while left > 0 {
                let k = left.min(chunk.len() as u64) as usize;
                f.write_all(&chunk[..k])?;
                left -= k as u64;
            }
        }
        c1 = c1.min(t.elapsed());
    }
    for k in 0..FS_TRIES {
        remove_if_exists(&ctx.dir.join(format!("large-fs-bound-{k}.bin")))?;
    }
    drop(head);
    let create = mib_s(size, c1);
    sec.row(
        "bound: fs create+write+close",
        Some(c1),
        Some(create),
        None,
        format!(
            "1 file of {}, 1 MiB writes, 1 thread, best of {FS_TRIES}",
            fmt_bytes(size)
        ),
    );
    sec.json_f("bound_fs_create_mib_s", create);
    sec.json_f("bound_fs_create_s", c1.as_secs_f64());
    let rate = |d: Duration| mib_s(size, d);
    let (w, v) = b.pack.stage("compress+seal");
    sec.fraction("add+commit (put_reader)", rate(add + commit), &w, v);
    let (w, v) = b.unpack.stage("open+decompress");
    sec.fraction("read-back (copy_to)", rate(read), &w, v);
    let (w, v) = slowest(&[
        b.unpack.stage("open+decompress"),
        ("fs create+write+close (1 thread)".to_string(), create),
    ]);
    sec.fraction("extract to directory", rate(extract_dir), &w, v);

    if cfg.peers {
        let runs = run_peers(
            ctx,
            sec,
            "large",
            size,
            1,
            &|peer, out| peer_pack_stream(peer, out, cfg.pattern, size, path),
            &|peer, dest| verify_large_file(&dest.join(path), cfg.pattern, size, peer.name()),
        )?;
        compare_peers(
            sec,
            &runs,
            ("add (streamed)", add + commit),
            extract_dir,
            ("read to memory (copy_to)", read),
            stored,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Bounds: what this machine can do for the same work, measured in the run

/// Frame size of the bounds (lockbox's default frame and pack target).
const FRAME: usize = 64 * 1024;
/// How long each CPU bound runs per thread (cycling over its frames); each
/// bound is the best of `BOUND_TRIES` such windows.
const BOUND_WINDOW: Duration = Duration::from_millis(60);
const BOUND_TRIES: usize = 3;
/// Each filesystem bound is the best of this many passes.
const FS_TRIES: usize = 2;
/// Bytes of the large file the CPU bounds are measured on.
const BOUND_SAMPLE: u64 = 32 << 20;

/// Threads for the "every core" bounds: one per core, at most 8 (what
/// lockbox's extraction uses).
fn bound_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
}

/// A throughput in MiB/s on one thread and on `bound_threads()` threads.
#[derive(Clone, Copy)]
struct Rate {
    one: f64,
    all: f64,
}

impl Rate {
    fn best(self) -> f64 {
        self.one.max(self.all)
    }
    /// `what` with the thread count of the best figure.
    fn stage(self, what: &str) -> (String, f64) {
        let t = if self.all > self.one {
            bound_threads()
        } else {
            1
        };
        let s = if t == 1 { "" } else { "s" };
        (format!("{what} ({t} thread{s})"), self.best())
    }
    fn detail(self) -> String {
        format!(
            "1 thread {:.1} MiB/s, {} threads {:.1} MiB/s",
            self.one,
            bound_threads(),
            self.all
        )
    }
}

/// Runs `op(state, item)` on `threads` threads, each over its own share of
/// `items` items and then cycling over it until `BOUND_WINDOW` has passed.
/// `op` returns the bytes it handled; returns MiB/s over the slowest thread.
fn cpu_rate<S>(
    threads: usize,
    items: usize,
    init: impl Fn() -> S + Sync,
    op: impl Fn(&mut S, usize) -> u64 + Sync,
) -> f64 {
    let barrier = std::sync::Barrier::new(threads);
    let results: Vec<(u64, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (init, op, barrier) = (&init, &op, &barrier);
                scope.spawn(move || {
                    let mut st = init();
                    let lo = t * items / threads;
                    let share = ((t + 1) * items / threads - lo).max(1);
                    black_box(op(&mut st, lo % items)); // warm-up
                    barrier.wait();
                    let start = Instant::now();
                    let mut bytes = 0u64;
                    let mut i = 0usize;
                    loop {
                        bytes += op(&mut st, (lo + i % share) % items);
                        i += 1;
                        if i >= share && start.elapsed() >= BOUND_WINDOW {
                            break;
                        }
                    }
                    (bytes, start.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bound thread panicked"))
            .collect()
    });
    let bytes: u64 = results.iter().map(|r| r.0).sum();
    let secs = results
        .iter()
        .map(|r| r.1)
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    bytes as f64 / secs / MIB
}

fn rate_of<S>(
    items: usize,
    init: impl Fn() -> S + Sync,
    op: impl Fn(&mut S, usize) -> u64 + Sync,
) -> Rate {
    let best = |threads| {
        (0..BOUND_TRIES)
            .map(|_| cpu_rate(threads, items, &init, &op))
            .fold(0.0, f64::max)
    };
    let one = best(1);
    let n = bound_threads();
    let all = if n > 1 { best(n) } else { one };
    Rate { one, all }
}

/// CPU bounds on one data set's frames (rates in MiB/s of plaintext).
struct CpuBounds {
    frames: usize,
    bytes: u64,
    seal: Rate,
    open: Rate,
    zstd_c: Rate,
    zstd_d: Rate,
    /// zstd-3 then seal (stored if it does not shrink), as lockbox does per frame.
    pack: Rate,
    /// open then zstd-decompress.
    unpack: Rate,
    /// zstd-3 bytes / raw bytes over the frames.
    zstd_ratio: f64,
}

fn bound_cipher() -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&chacha20poly1305::Key::from([0x42u8; 32]))
}

/// A fixed nonce and associated data: the cost of the cipher, not of a random source.
fn bound_nonce() -> XNonce {
    XNonce::try_from(&[7u8; 24][..]).expect("24-byte nonce")
}
const BOUND_AAD: [u8; 41] = [0u8; 41];

fn seal_in_place(c: &XChaCha20Poly1305, buf: &mut [u8]) -> chacha20poly1305::Tag {
    c.encrypt_inout_detached(&bound_nonce(), &BOUND_AAD, buf.into())
        .expect("seal")
}

fn open_in_place(c: &XChaCha20Poly1305, buf: &mut [u8], tag: &chacha20poly1305::Tag) {
    c.decrypt_inout_detached(&bound_nonce(), &BOUND_AAD, buf.into(), tag)
        .expect("open");
}

fn cpu_bounds(frames: &[Vec<u8>]) -> BoxResult<CpuBounds> {
    let cipher = bound_cipher();
    let items = frames.len();
    // Untimed inputs for the opening side.
    let mut sealed_raw = Vec::with_capacity(items);
    let mut compressed = Vec::with_capacity(items);
    let mut sealed_packed = Vec::with_capacity(items);
    let mut zbytes = 0u64;
    for f in frames {
        let mut b = f.clone();
        let tag = seal_in_place(&cipher, &mut b);
        sealed_raw.push((b, tag));
        let z = zstd::bulk::compress(f, 3)?;
        zbytes += z.len() as u64;
        let (mut body, zstd) = if z.len() + 8 < f.len() {
            (z.clone(), true)
        } else {
            (f.clone(), false)
        };
        let tag = seal_in_place(&cipher, &mut body);
        sealed_packed.push((body, tag, zstd));
        compressed.push(z);
    }
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let scratch = || (bound_cipher(), vec![0u8; FRAME + 1024]);
    let seal = rate_of(items, scratch, |(c, buf), i| {
        let f = &frames[i];
        buf[..f.len()].copy_from_slice(f);
        black_box(seal_in_place(c, &mut buf[..f.len()]));
        f.len() as u64
    });
    let open = rate_of(items, scratch, |(c, buf), i| {
        let (b, tag) = &sealed_raw[i];
        buf[..b.len()].copy_from_slice(b);
        open_in_place(c, &mut buf[..b.len()], tag);
        black_box(&buf[..b.len()]);
        b.len() as u64
    });
    let zstd_c = rate_of(
        items,
        || {
            (
                zstd::bulk::Compressor::new(3).expect("zstd compressor"),
                Vec::<u8>::with_capacity(zstd::zstd_safe::compress_bound(FRAME)),
            )
        },
        |(z, out), i| {
            out.clear();
            z.compress_to_buffer(&frames[i][..], out)
                .expect("zstd compress");
            black_box(&out[..]);
            frames[i].len() as u64
        },
    );
    let zstd_d = rate_of(
        items,
        || {
            (
                zstd::bulk::Decompressor::new().expect("zstd decompressor"),
                vec![0u8; FRAME],
            )
        },
        |(z, out), i| {
            let len = frames[i].len();
            let n = z
                .decompress_to_buffer(&compressed[i][..], &mut out[..len])
                .expect("zstd decompress");
            black_box(&out[..n]);
            n as u64
        },
    );
    let pack = rate_of(
        items,
        || {
            (
                bound_cipher(),
                zstd::bulk::Compressor::new(3).expect("zstd compressor"),
                Vec::<u8>::with_capacity(zstd::zstd_safe::compress_bound(FRAME)),
            )
        },
        |(c, z, out), i| {
            let f = &frames[i];
            out.clear();
            z.compress_to_buffer(&f[..], out).expect("zstd compress");
            if out.len() + 8 >= f.len() {
                out.clear();
                out.extend_from_slice(f);
            }
            black_box(seal_in_place(c, &mut out[..]));
            f.len() as u64
        },
    );
    let unpack = rate_of(
        items,
        || {
            (
                bound_cipher(),
                zstd::bulk::Decompressor::new().expect("zstd decompressor"),
                vec![0u8; FRAME + 1024],
                vec![0u8; FRAME],
            )
        },
        |(c, z, buf, out), i| {
            let (b, tag, zstd) = &sealed_packed[i];
            let len = frames[i].len();
            buf[..b.len()].copy_from_slice(b);
            open_in_place(c, &mut buf[..b.len()], tag);
            if *zstd {
                z.decompress_to_buffer(&buf[..b.len()], &mut out[..len])
                    .expect("zstd decompress");
            } else {
                out[..len].copy_from_slice(&buf[..len]);
            }
            black_box(&out[..len]);
            len as u64
        },
    );
    Ok(CpuBounds {
        frames: items,
        bytes,
        seal,
        open,
        zstd_c,
        zstd_d,
        pack,
        unpack,
        zstd_ratio: zbytes as f64 / bytes.max(1) as f64,
    })
}

/// Adds the CPU bounds' rows and JSON to `sec`.
fn report_cpu_bounds(sec: &mut Section, b: &CpuBounds, what: &str) {
    let on = format!(
        "; on {} frames of 64 KiB ({}) of {what}",
        b.frames,
        fmt_bytes(b.bytes)
    );
    let rows: [(&str, &str, Rate, String); 6] = [
        ("seal", "bound: XChaCha20-Poly1305 seal", b.seal, on),
        (
            "open",
            "bound: XChaCha20-Poly1305 open",
            b.open,
            String::new(),
        ),
        (
            "zstd3_compress",
            "bound: zstd-3 compress",
            b.zstd_c,
            format!(", ratio {:.3}", b.zstd_ratio),
        ),
        (
            "zstd_decompress",
            "bound: zstd decompress",
            b.zstd_d,
            String::new(),
        ),
        (
            "compress_seal",
            "bound: compress+seal",
            b.pack,
            String::new(),
        ),
        (
            "open_decompress",
            "bound: open+decompress",
            b.unpack,
            String::new(),
        ),
    ];
    for (key, step, r, extra) in rows {
        sec.row(
            step,
            None,
            Some(r.all),
            None,
            format!("{}{extra}", r.detail()),
        );
        sec.json_f(&format!("bound_{key}_1t_mib_s"), r.one);
        sec.json_f(&format!("bound_{key}_mib_s"), r.all);
    }
    sec.json_u("bound_frames", b.frames as u64);
    sec.json_u("bound_frame_bytes", b.bytes);
    sec.json_f("bound_zstd3_ratio", b.zstd_ratio);
    sec.json_u("bound_threads", bound_threads() as u64);
}

/// The slowest of `stages` (name, MiB/s): the bound of a pipeline.
fn slowest(stages: &[(String, f64)]) -> (String, f64) {
    stages
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .cloned()
        .expect("at least one stage")
}

/// Cuts `data` into 64 KiB frames.
fn frames_of(data: &[u8]) -> Vec<Vec<u8>> {
    data.chunks(FRAME).map(|c| c.to_vec()).collect()
}

/// Filesystem: create + write + close of `datas` at `paths` under `root`, on
/// `threads` threads (each its own share). Directories are made first,
/// untimed. Returns the wall time.
fn fs_create_bound(
    root: &Path,
    paths: &[String],
    datas: &[Vec<u8>],
    threads: usize,
) -> io::Result<Duration> {
    make_parents(root, paths)?;
    let n = paths.len();
    let barrier = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || -> io::Result<()> {
                    barrier.wait();
                    for i in t * n / threads..(t + 1) * n / threads {
                        let mut f = fs::File::create(root.join(&paths[i]))?;
                        f.write_all(&datas[i])?;
                    }
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().expect("fs bound thread panicked")?;
        }
        Ok(start.elapsed())
    })
}

/// Filesystem: open + read + close of the files at `paths` under `root`.
fn fs_read_bound(
    root: &Path,
    paths: &[String],
    len: usize,
    threads: usize,
) -> io::Result<Duration> {
    let n = paths.len();
    let barrier = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || -> io::Result<()> {
                    let mut buf = vec![0u8; len];
                    barrier.wait();
                    for p in &paths[t * n / threads..(t + 1) * n / threads] {
                        let mut f = fs::File::open(root.join(p))?;
                        f.read_exact(&mut buf)?;
                        black_box(&buf);
                    }
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().expect("fs bound thread panicked")?;
        }
        Ok(start.elapsed())
    })
}

/// Creates the parent directories of `paths` under `root`.
fn make_parents(root: &Path, paths: &[String]) -> io::Result<()> {
    let mut last: Option<&str> = None;
    for p in paths {
        let parent = p.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        if last != Some(parent) {
            fs::create_dir_all(root.join(parent))?;
            last = Some(parent);
        }
    }
    Ok(())
}

/// Checks that `root` holds every small file with the right bytes.
fn verify_tree(root: &Path, paths: &[String], datas: &[Vec<u8>], who: &str) -> BoxResult<()> {
    for (p, d) in paths.iter().zip(datas) {
        let got = fs::read(root.join(p)).map_err(|e| format!("{who}: {p}: {e}"))?;
        if got != *d {
            return Err(format!("{who}: extracted {p} differs from its source").into());
        }
    }
    Ok(())
}

/// Checks that the file at `path` holds the large generator's bytes.
fn verify_large_file(path: &Path, pattern: Pattern, size: u64, who: &str) -> BoxResult<()> {
    let mut check = VerifyWriter::new(pattern, LARGE_SEED);
    let n = io::copy(
        &mut fs::File::open(path).map_err(|e| format!("{who}: {}: {e}", path.display()))?,
        &mut check,
    )
    .map_err(|e| format!("{who}: {e}"))?;
    if n != size {
        return Err(format!("{who}: extracted {n} bytes, expected {size}").into());
    }
    Ok(())
}

/// Removes the directory trees `roots` (and counts the files in them), on
/// several threads: deleting many small files is slow on some filesystems
/// (e.g. ext4 mounted with `discard` and no journal discards each file's
/// blocks as it goes), and concurrent deletions overlap those waits.
fn remove_trees(roots: &[PathBuf]) -> io::Result<u64> {
    let mut subtrees = Vec::new();
    for r in roots {
        match fs::read_dir(r) {
            Ok(rd) => {
                for e in rd {
                    subtrees.push(e?.path());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let threads = (2 * bound_threads()).clamp(1, 8);
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let subtrees = &subtrees;
                scope.spawn(move || -> io::Result<u64> {
                    let mut files = 0;
                    for p in subtrees.iter().skip(k).step_by(threads) {
                        files += count_files(p)?;
                        if fs::symlink_metadata(p)?.is_dir() {
                            fs::remove_dir_all(p)?;
                        } else {
                            fs::remove_file(p)?;
                        }
                    }
                    Ok(files)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("cleanup thread panicked"))
            .collect::<io::Result<Vec<u64>>>()
    })?;
    for r in roots {
        remove_dir_if_exists(r)?;
    }
    Ok(counts.iter().sum())
}

/// Regular files under `p` (or 1 if `p` is one).
fn count_files(p: &Path) -> io::Result<u64> {
    let m = fs::symlink_metadata(p)?;
    if !m.is_dir() {
        return Ok(u64::from(m.is_file()));
    }
    let mut n = 0;
    for e in fs::read_dir(p)? {
        n += count_files(&e?.path())?;
    }
    Ok(n)
}

fn remove_dir_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Peers: tar + zstd, zip with AES-256, through their Rust crates in-process

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    /// `tar` crate into a `zstd` streaming encoder at this level.
    TarZstd(i32),
    /// `zip` crate, deflate at its default level, AES-256 (WinZip AE-2).
    ZipAes,
}

const PEERS: [Peer; 3] = [Peer::TarZstd(1), Peer::TarZstd(3), Peer::ZipAes];
const ZIP_PASSWORD: &str = "pw";

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::TarZstd(1) => "tar+zstd-1",
            Peer::TarZstd(3) => "tar+zstd-3",
            Peer::TarZstd(_) => "tar+zstd",
            Peer::ZipAes => "zip-aes256",
        }
    }
    fn key(self) -> String {
        json_key(self.name())
    }
    fn file_name(self, scenario: &str) -> String {
        match self {
            Peer::TarZstd(l) => format!("peer-{scenario}-{l}.tar.zst"),
            Peer::ZipAes => format!("peer-{scenario}.zip"),
        }
    }
}

fn zip_options() -> zip::write::SimpleFileOptions {
    zip::write::SimpleFileOptions::default().with_aes_encryption(zip::AesMode::Aes256, ZIP_PASSWORD)
}

/// Packs the directory `src` (its contents, as `./...` for tar).
fn peer_pack_dir(peer: Peer, src: &Path, out: &Path) -> BoxResult<()> {
    match peer {
        Peer::TarZstd(level) => {
            let enc = zstd::Encoder::new(fs::File::create(out)?, level)?;
            let mut b = tar::Builder::new(enc);
            b.append_dir_all(".", src)?;
            b.into_inner()?.finish()?;
        }
        Peer::ZipAes => {
            let mut w = zip::ZipWriter::new(io::BufWriter::new(fs::File::create(out)?));
            zip_add_dir(&mut w, src, "")?;
            w.finish()?.flush()?;
        }
    }
    Ok(())
}

/// Adds `dir`'s entries (name order) under `prefix` to a zip.
fn zip_add_dir<W: Write + io::Seek>(
    w: &mut zip::ZipWriter<W>,
    dir: &Path,
    prefix: &str,
) -> BoxResult<()> {
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().into_string().map_err(|_| "non-UTF-8 name")?;
        let rel = format!("{prefix}{name}");
        if e.file_type()?.is_dir() {
            w.add_directory(format!("{rel}/"), zip::write::SimpleFileOptions::default())?;
            zip_add_dir(w, &e.path(), &format!("{rel}/"))?;
        } else {
            w.start_file(rel, zip_options())?;
            io::copy(&mut fs::File::open(e.path())?, w)?;
        }
    }
    Ok(())
}

/// Packs one file of `size` generated bytes, streamed; returns the time spent
/// inside the generator.
fn peer_pack_stream(
    peer: Peer,
    out: &Path,
    pattern: Pattern,
    size: u64,
    path: &str,
) -> BoxResult<Duration> {
    let mut input = GenReader::new(pattern, LARGE_SEED, size);
    match peer {
        Peer::TarZstd(level) => {
            let enc = zstd::Encoder::new(fs::File::create(out)?, level)?;
            let mut b = tar::Builder::new(enc);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(size);
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, path, &mut input)?;
            b.into_inner()?.finish()?;
        }
        Peer::ZipAes => {
            let mut w = zip::ZipWriter::new(io::BufWriter::new(fs::File::create(out)?));
            w.start_file(path, zip_options().large_file(size >= u32::MAX as u64))?;
            io::copy(&mut input, &mut w)?;
            w.finish()?.flush()?;
        }
    }
    Ok(input.gen_time)
}

/// Extracts a peer archive into `dest` (a new directory).
fn peer_extract_dir(peer: Peer, archive: &Path, dest: &Path) -> BoxResult<()> {
    fs::create_dir(dest)?;
    match peer {
        Peer::TarZstd(_) => {
            let dec = zstd::Decoder::new(fs::File::open(archive)?)?;
            tar::Archive::new(dec).unpack(dest)?;
        }
        Peer::ZipAes => {
            let mut ar = zip::ZipArchive::new(io::BufReader::new(fs::File::open(archive)?))?;
            let mut last_parent: Option<PathBuf> = None;
            for i in 0..ar.len() {
                let mut f = ar.by_index_decrypt(i, ZIP_PASSWORD.as_bytes())?;
                let rel = f.enclosed_name().ok_or("zip entry with an unsafe name")?;
                let out = dest.join(&rel);
                if f.is_dir() {
                    fs::create_dir_all(&out)?;
                    continue;
                }
                if let Some(parent) = out.parent()
                    && last_parent.as_deref() != Some(parent)
                {
                    fs::create_dir_all(parent)?;
                    last_parent = Some(parent.to_path_buf());
                }
                let mut w = fs::File::create(&out)?;
                io::copy(&mut f, &mut w)?;
            }
        }
    }
    Ok(())
}

/// Reads every file of a peer archive into a counting sink: (files, bytes).
fn peer_extract_memory(peer: Peer, archive: &Path) -> BoxResult<(u64, u64)> {
    let mut sink = CountingSink(0);
    let mut files = 0u64;
    match peer {
        Peer::TarZstd(_) => {
            let dec = zstd::Decoder::new(fs::File::open(archive)?)?;
            let mut ar = tar::Archive::new(dec);
            for e in ar.entries()? {
                let mut e = e?;
                if e.header().entry_type().is_file() {
                    io::copy(&mut e, &mut sink)?;
                    files += 1;
                }
            }
        }
        Peer::ZipAes => {
            let mut ar = zip::ZipArchive::new(io::BufReader::new(fs::File::open(archive)?))?;
            for i in 0..ar.len() {
                let mut f = ar.by_index_decrypt(i, ZIP_PASSWORD.as_bytes())?;
                if f.is_file() {
                    io::copy(&mut f, &mut sink)?;
                    files += 1;
                }
            }
        }
    }
    Ok((files, sink.0))
}

/// What one peer measured in a scenario.
struct PeerRun {
    peer: Peer,
    pack: Duration,
    bytes: u64,
    extract_dir: Duration,
    extract_mem: Duration,
}

/// Runs every peer on a scenario's data: pack (`pack` returns the time to
/// exclude, e.g. generating input), size, extract to a directory (checked
/// by `verify`, untimed), extract to memory (checked against `expect`).
fn run_peers(
    ctx: &Ctx,
    sec: &mut Section,
    scenario: &str,
    logical: u64,
    files: u64,
    pack: &dyn Fn(Peer, &Path) -> BoxResult<Duration>,
    verify: &dyn Fn(Peer, &Path) -> BoxResult<()>,
) -> BoxResult<Vec<PeerRun>> {
    let files_rate = (files > 1).then_some(files);
    let mut runs = Vec::new();
    for peer in PEERS {
        let name = peer.name();
        let out = ctx.dir.join(peer.file_name(scenario));
        remove_if_exists(&out)?;
        settle(&ctx.dir);
        let t = clock();
        let excluded = pack(peer, &out).map_err(|e| format!("{name} pack: {e}"))?;
        let wall = t.elapsed();
        let d = wall.saturating_sub(excluded);
        let detail = if excluded > Duration::ZERO {
            format!(
                "wall {} incl. {} generating input (excluded)",
                fmt_dur(wall),
                fmt_dur(excluded)
            )
        } else {
            "from the same source directory".to_string()
        };
        sec.timed(
            &format!("{name} pack"),
            d,
            Some(logical),
            files_rate,
            detail,
        );
        let bytes = fs::metadata(&out)?.len();
        sec.fact_named(
            &format!("{name} bytes"),
            &format!("{}_bytes", peer.key()),
            bytes,
            format!(
                "{} ({bytes} B), ratio {name}/logical {:.3}",
                fmt_bytes(bytes),
                bytes as f64 / logical.max(1) as f64
            ),
        );

        let dest = ctx
            .dir
            .join(format!("peer-{scenario}-{}-extract", peer.key()));
        remove_dir_if_exists(&dest)?;
        settle(&ctx.dir);
        let t = clock();
        peer_extract_dir(peer, &out, &dest).map_err(|e| format!("{name} extract: {e}"))?;
        let extract_dir = t.elapsed();
        sec.timed(
            &format!("{name} extract to dir"),
            extract_dir,
            Some(logical),
            files_rate,
            "into a new directory".into(),
        );
        verify(peer, &dest)?;
        if files > 1 {
            ctx.remove_at_end(&dest);
        } else {
            remove_dir_if_exists(&dest)?;
        }

        let t = clock();
        let (f, b) = peer_extract_memory(peer, &out).map_err(|e| format!("{name} read: {e}"))?;
        let extract_mem = t.elapsed();
        if f != files || b != logical {
            return Err(format!(
                "{name}: read {f} files / {b} bytes, expected {files} / {logical}"
            )
            .into());
        }
        sec.timed(
            &format!("{name} extract to memory"),
            extract_mem,
            Some(logical),
            files_rate,
            "every file into a counting sink".into(),
        );
        remove_if_exists(&out)?;
        runs.push(PeerRun {
            peer,
            pack: d,
            bytes,
            extract_dir,
            extract_mem,
        });
    }
    Ok(runs)
}

/// Lockbox's figures against the peers' (see `Compare`).
fn compare_peers(
    sec: &mut Section,
    runs: &[PeerRun],
    pack: (&str, Duration),
    dir: Duration,
    mem: (&str, Duration),
    bytes: u64,
) {
    let t = |f: fn(&PeerRun) -> Duration| -> Vec<(Peer, f64)> {
        runs.iter().map(|r| (r.peer, f(r).as_secs_f64())).collect()
    };
    sec.compare(pack.0, false, pack.1.as_secs_f64(), t(|r| r.pack));
    sec.compare(
        "extract to directory",
        false,
        dir.as_secs_f64(),
        t(|r| r.extract_dir),
    );
    sec.compare(mem.0, false, mem.1.as_secs_f64(), t(|r| r.extract_mem));
    sec.compare(
        "archive bytes",
        true,
        bytes as f64,
        runs.iter().map(|r| (r.peer, r.bytes as f64)).collect(),
    );
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / MIB
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // nearest-rank
    let n = sorted.len();
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        black_box(buf);
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Deterministic data

/// splitmix64
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6A09_E667_F3BC_C908)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

/// Roughly frequency-ordered; the generator prefers the front of the list.
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "by",
    "this",
    "are",
    "or",
    "from",
    "at",
    "which",
    "an",
    "not",
    "have",
    "has",
    "but",
    "can",
    "all",
    "were",
    "its",
    "one",
    "will",
    "there",
    "their",
    "more",
    "when",
    "if",
    "each",
    "file",
    "data",
    "value",
    "system",
    "user",
    "time",
    "new",
    "should",
    "into",
    "than",
    "other",
    "some",
    "these",
    "first",
    "may",
    "only",
    "also",
    "after",
    "used",
    "two",
    "would",
    "any",
    "then",
    "over",
    "such",
    "page",
    "key",
    "open",
    "write",
    "read",
    "block",
    "index",
    "commit",
    "table",
    "record",
    "error",
    "return",
    "result",
    "number",
    "string",
    "version",
    "update",
    "build",
    "between",
    "without",
    "because",
    "where",
    "while",
    "about",
    "before",
    "under",
    "every",
    "order",
    "state",
    "change",
    "process",
    "request",
    "server",
    "client",
    "memory",
    "buffer",
    "stream",
    "archive",
    "entry",
    "directory",
    "path",
    "name",
    "length",
    "offset",
    "header",
    "format",
    "option",
    "default",
    "config",
    "module",
    "function",
    "method",
    "struct",
    "field",
    "type",
    "list",
    "map",
    "set",
    "node",
    "tree",
    "root",
    "leaf",
    "level",
    "size",
    "limit",
    "count",
    "total",
    "check",
    "test",
    "report",
    "figure",
    "measure",
    "result",
    "output",
    "input",
    "source",
    "target",
    "local",
    "remote",
    "network",
    "storage",
    "cache",
    "disk",
    "volume",
    "backup",
    "restore",
    "export",
    "import",
    "copy",
    "move",
    "delete",
    "rename",
    "create",
    "remove",
    "append",
    "replace",
    "merge",
    "split",
    "compress",
    "encrypt",
    "decrypt",
    "verify",
    "sign",
    "hash",
    "random",
    "secure",
    "private",
    "public",
    "shared",
    "global",
    "simple",
    "complex",
    "quick",
    "slow",
    "large",
    "small",
    "empty",
    "full",
    "valid",
    "invalid",
    "missing",
    "known",
    "unknown",
    "recent",
    "current",
    "previous",
    "next",
    "last",
    "early",
    "late",
    "often",
    "rarely",
    "always",
    "never",
    "usually",
    "project",
    "document",
    "section",
    "chapter",
    "example",
    "question",
    "answer",
    "problem",
    "solution",
    "approach",
    "design",
    "interface",
    "library",
    "program",
    "application",
    "service",
    "customer",
    "account",
    "payment",
    "invoice",
    "message",
    "address",
    "country",
    "city",
    "street",
    "morning",
    "evening",
    "weather",
    "river",
    "mountain",
    "garden",
    "window",
    "kitchen",
    "station",
];

/// Realistic compressible prose: skewed word choice, sentences, commas,
/// occasional numbers, wrapped lines and paragraphs. Deterministic in `seed`.
fn fill_text(seed: u64, out: &mut [u8]) {
    let mut rng = Rng::new(seed);
    let mut pos = 0usize;
    let mut col = 0usize;
    let mut words_left = 0u64;
    let mut sentences_left = 3 + rng.below(5);
    let mut tok = [0u8; 48];
    let nw = WORDS.len() as u64;
    while pos < out.len() {
        let start_sentence = words_left == 0;
        if start_sentence {
            words_left = 5 + rng.below(14);
        }
        // One draw decides the word (min of three 16-bit uniforms: skewed
        // towards the front of the list), whether it is a number, and a comma.
        let r = rng.next();
        let pick = |bits: u64| ((bits & 0xFFFF) * nw) >> 16;
        let mut t;
        if (r >> 48) & 31 == 0 {
            // a number, 1 in 32 tokens
            let mut c = io::Cursor::new(&mut tok[..]);
            let range = if (r >> 53) & 1 == 0 { 100 } else { 100_000 };
            let _ = write!(c, "{}", rng.below(range));
            t = c.position() as usize;
        } else {
            let i = pick(r).min(pick(r >> 16)).min(pick(r >> 32));
            let w = WORDS[i as usize].as_bytes();
            tok[..w.len()].copy_from_slice(w);
            t = w.len();
        }
        let comma = (r >> 56) & 15 == 0;
        if start_sentence {
            tok[0].make_ascii_uppercase();
        }
        words_left -= 1;
        if words_left == 0 {
            tok[t] = b'.';
            t += 1;
            sentences_left -= 1;
            if sentences_left == 0 {
                sentences_left = 3 + rng.below(5);
                tok[t] = b'\n';
                tok[t + 1] = b'\n';
                t += 2;
                col = 0;
            } else {
                tok[t] = b' ';
                t += 1;
                col += t;
            }
        } else {
            if comma {
                tok[t] = b',';
                t += 1;
            }
            if col + t >= 72 {
                tok[t] = b'\n';
                col = 0;
            } else {
                tok[t] = b' ';
                col += t + 1;
            }
            t += 1;
        }
        let n = t.min(out.len() - pos);
        out[pos..pos + n].copy_from_slice(&tok[..n]);
        pos += n;
    }
}

fn fill_random(seed: u64, out: &mut [u8]) {
    let mut rng = Rng::new(seed);
    let mut chunks = out.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&rng.next().to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let last = rng.next().to_le_bytes();
    rest.copy_from_slice(&last[..rest.len()]);
}

/// The large file is a sequence of independent blocks, so any byte range can be
/// regenerated without producing everything before it.
const GEN_BLOCK: usize = 16 * 1024;

fn block_seed(seed: u64, block: u64) -> u64 {
    seed ^ block.wrapping_mul(0xA24B_AED4_963E_E407)
}

/// Writes the generator's bytes at `off..off + out.len()` into `out`.
fn expected_range(pattern: Pattern, seed: u64, off: u64, out: &mut [u8], scratch: &mut [u8]) {
    let mut done = 0usize;
    while done < out.len() {
        let at = off + done as u64;
        let block = at / GEN_BLOCK as u64;
        let within = (at % GEN_BLOCK as u64) as usize;
        pattern.fill(block_seed(seed, block), &mut scratch[..GEN_BLOCK]);
        let n = (GEN_BLOCK - within).min(out.len() - done);
        out[done..done + n].copy_from_slice(&scratch[within..within + n]);
        done += n;
    }
}

/// A `Read` that produces `total` bytes block by block; never holds more than one block.
struct GenReader {
    pattern: Pattern,
    seed: u64,
    total: u64,
    pos: u64,
    block: Vec<u8>,
    block_idx: u64,
    /// Time spent generating bytes (so it can be kept out of the library's figures).
    gen_time: Duration,
}

impl GenReader {
    fn new(pattern: Pattern, seed: u64, total: u64) -> GenReader {
        GenReader {
            pattern,
            seed,
            total,
            pos: 0,
            block: vec![0; GEN_BLOCK],
            block_idx: u64::MAX,
            gen_time: Duration::ZERO,
        }
    }
}

impl Read for GenReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0usize;
        while done < buf.len() && self.pos < self.total {
            let block = self.pos / GEN_BLOCK as u64;
            if block != self.block_idx {
                let t = Instant::now();
                self.pattern
                    .fill(block_seed(self.seed, block), &mut self.block);
                self.gen_time += t.elapsed();
                self.block_idx = block;
            }
            let within = (self.pos % GEN_BLOCK as u64) as usize;
            let n = (GEN_BLOCK - within)
                .min(buf.len() - done)
                .min((self.total - self.pos).min(usize::MAX as u64) as usize);
            let t = Instant::now();
            buf[done..done + n].copy_from_slice(&self.block[within..within + n]);
            self.gen_time += t.elapsed();
            done += n;
            self.pos += n as u64;
        }
        Ok(done)
    }
}

/// A `Write` that compares everything written against the generator.
struct VerifyWriter {
    pattern: Pattern,
    seed: u64,
    pos: u64,
    block: Vec<u8>,
    block_idx: u64,
}

impl VerifyWriter {
    fn new(pattern: Pattern, seed: u64) -> VerifyWriter {
        VerifyWriter {
            pattern,
            seed,
            pos: 0,
            block: vec![0; GEN_BLOCK],
            block_idx: u64::MAX,
        }
    }
}

impl Write for VerifyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0usize;
        while done < buf.len() {
            let block = self.pos / GEN_BLOCK as u64;
            if block != self.block_idx {
                self.pattern
                    .fill(block_seed(self.seed, block), &mut self.block);
                self.block_idx = block;
            }
            let within = (self.pos % GEN_BLOCK as u64) as usize;
            let n = (GEN_BLOCK - within).min(buf.len() - done);
            if buf[done..done + n] != self.block[within..within + n] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("copy_to produced wrong bytes near offset {}", self.pos),
                ));
            }
            done += n;
            self.pos += n as u64;
        }
        Ok(done)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Peak RSS

/// Starts a timed phase: resets the peak-RSS mark, then starts the clock.
fn clock() -> Instant {
    reset_peak_rss();
    Instant::now()
}

/// Flushes the filesystem holding `dir` (syncfs), so a phase that writes
/// files does not pay for the previous phase's dirty data and deletions.
/// Untimed; best effort.
fn settle(dir: &Path) {
    #[cfg(target_os = "linux")]
    if let Ok(d) = fs::File::open(dir) {
        let _ = rustix::fs::syncfs(&d);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = dir;
}

/// Resets the kernel's peak-RSS mark (Linux >= 4.0) so each scenario reports its own peak.
fn reset_peak_rss() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

/// VmHWM from /proc/self/status, in bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

// ---------------------------------------------------------------------------
// Report: one table for humans, the same figures as JSON

enum Json {
    B(bool),
    U(u64),
    F(f64),
    S(String),
}

struct Row {
    scenario: String,
    step: String,
    time: Option<Duration>,
    mib_s: Option<f64>,
    files_s: Option<f64>,
    /// Peak RSS during the step (timed steps only).
    rss: Option<u64>,
    detail: String,
}

/// Lockbox's rate for one figure against the machine's bound for that work.
struct Fraction {
    figure: String,
    lockbox_mib_s: f64,
    bound_mib_s: f64,
    bound: String,
}

/// One figure for lockbox and each peer: seconds (speed) or bytes (size).
struct Compare {
    figure: String,
    size: bool,
    lockbox: f64,
    peers: Vec<(Peer, f64)>,
}

impl Compare {
    /// Speed: peer time / lockbox time (> 1: lockbox faster).
    /// Size: lockbox bytes / peer bytes (< 1: lockbox smaller).
    fn ratio(&self, peer: f64) -> f64 {
        if self.size {
            self.lockbox / peer
        } else {
            peer / self.lockbox
        }
    }
}

struct Section {
    name: String,
    rows: Vec<Row>,
    json: Vec<(String, Json)>,
    fractions: Vec<Fraction>,
    compares: Vec<Compare>,
    /// Highest per-phase peak RSS seen in the scenario.
    max_rss: u64,
}

fn json_key(step: &str) -> String {
    let mut k = String::new();
    for c in step.chars() {
        if c.is_ascii_alphanumeric() {
            k.push(c.to_ascii_lowercase());
        } else if !k.ends_with('_') {
            k.push('_');
        }
    }
    k.trim_matches('_').to_string()
}

impl Section {
    fn new(name: &str) -> Section {
        Section {
            name: name.to_string(),
            rows: Vec::new(),
            json: Vec::new(),
            fractions: Vec::new(),
            compares: Vec::new(),
            max_rss: 0,
        }
    }

    fn json_s(&mut self, key: &str, v: &str) {
        self.json.push((key.to_string(), Json::S(v.to_string())));
    }

    /// Lockbox's `lockbox_mib_s` for `figure` as a fraction of `bound_mib_s`.
    fn fraction(&mut self, figure: &str, lockbox_mib_s: f64, bound: &str, bound_mib_s: f64) {
        let k = json_key(figure);
        self.json_f(
            &format!("fraction_of_bound_{k}"),
            lockbox_mib_s / bound_mib_s,
        );
        self.json_f(&format!("bound_for_{k}_mib_s"), bound_mib_s);
        self.json_s(&format!("bound_for_{k}"), bound);
        self.fractions.push(Fraction {
            figure: figure.to_string(),
            lockbox_mib_s,
            bound_mib_s,
            bound: bound.to_string(),
        });
    }

    /// Lockbox against each peer for one figure (seconds, or bytes if `size`).
    fn compare(&mut self, figure: &str, size: bool, lockbox: f64, peers: Vec<(Peer, f64)>) {
        let c = Compare {
            figure: figure.to_string(),
            size,
            lockbox,
            peers,
        };
        let k = json_key(figure);
        for &(p, v) in &c.peers {
            self.json_f(&format!("ratio_{k}_vs_{}", p.key()), c.ratio(v));
        }
        self.compares.push(c);
    }

    /// A figure without a time, under an explicit step name and JSON key.
    fn fact_named(&mut self, step: &str, key: &str, v: u64, detail: String) {
        self.json_u(key, v);
        self.row(step, None, None, None, detail);
    }

    fn json_u(&mut self, key: &str, v: u64) {
        self.json.push((key.to_string(), Json::U(v)));
    }

    fn json_f(&mut self, key: &str, v: f64) {
        self.json.push((key.to_string(), Json::F(v)));
    }

    fn row(
        &mut self,
        step: &str,
        time: Option<Duration>,
        mib_s: Option<f64>,
        files_s: Option<f64>,
        detail: String,
    ) {
        self.rows.push(Row {
            scenario: self.name.clone(),
            step: step.to_string(),
            time,
            mib_s,
            files_s,
            rss: None,
            detail,
        });
    }

    /// A figure without a time.
    fn fact_u(&mut self, key: &str, v: u64, detail: String) {
        self.json_u(key, v);
        self.row(&key.replace('_', " "), None, None, None, detail);
    }

    /// A timed step; `bytes`/`files` give the MiB/s and files/s columns.
    /// Reads the peak RSS since the step's `clock()`.
    fn timed(
        &mut self,
        step: &str,
        d: Duration,
        bytes: Option<u64>,
        files: Option<u64>,
        detail: String,
    ) {
        let rss = peak_rss_bytes();
        self.timed_inner(step, d, bytes, files, detail, rss);
    }

    /// A figure computed from other steps (e.g. add + commit): no RSS of its own.
    fn derived(
        &mut self,
        step: &str,
        d: Duration,
        bytes: Option<u64>,
        files: Option<u64>,
        detail: String,
    ) {
        self.timed_inner(step, d, bytes, files, detail, None);
    }

    fn timed_inner(
        &mut self,
        step: &str,
        d: Duration,
        bytes: Option<u64>,
        files: Option<u64>,
        detail: String,
        rss: Option<u64>,
    ) {
        let secs = d.as_secs_f64();
        let rate = |x: u64| {
            if secs > 0.0 {
                Some(x as f64 / secs)
            } else {
                None
            }
        };
        let mib_s = bytes.and_then(rate).map(|b| b / MIB);
        let files_s = files.and_then(rate);
        let k = json_key(step);
        self.json_f(&format!("{k}_s"), secs);
        if let Some(m) = mib_s {
            self.json_f(&format!("{k}_mib_s"), m);
        }
        if let Some(f) = files_s {
            self.json_f(&format!("{k}_files_s"), f);
        }
        if let Some(r) = rss {
            self.json_u(&format!("{k}_peak_rss_bytes"), r);
            self.max_rss = self.max_rss.max(r);
        }
        self.row(step, Some(d), mib_s, files_s, detail);
        if let Some(last) = self.rows.last_mut() {
            last.rss = rss;
        }
    }

    fn size(&mut self, stored: u64, logical: u64) {
        let ratio = if logical > 0 {
            stored as f64 / logical as f64
        } else {
            f64::NAN
        };
        self.json_u("lockbox_bytes", stored);
        self.json_f("size_ratio", ratio);
        self.row(
            "lockbox bytes",
            None,
            None,
            None,
            format!(
                "{} ({stored} B), ratio lockbox/logical {ratio:.3}",
                fmt_bytes(stored)
            ),
        );
    }

    /// The scenario's peak RSS: the highest of lockbox's timed phases so
    /// far (call it before the bounds and the peers).
    fn peak_rss(&mut self) {
        let b = self.max_rss;
        if b > 0 {
            self.json_u("peak_rss_bytes", b);
            self.row(
                "peak RSS",
                None,
                None,
                None,
                format!("{} (highest lockbox phase)", fmt_bytes(b)),
            );
        } else {
            self.row("peak RSS", None, None, None, "unavailable".into());
        }
    }
}

fn fmt_bytes(b: u64) -> String {
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

fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.2} s")
    } else if s >= 0.001 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Prints a table: columns in `right` are right-aligned; a blank line
/// separates groups (rows whose first cell differs from the row above).
fn print_grid(head: &[&str], right: &[usize], cells: &[Vec<String>]) {
    let cols = head.len();
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for c in cells {
        for i in 0..cols {
            w[i] = w[i].max(c[i].chars().count());
        }
    }
    let line = |c: &[String]| {
        let mut s = String::new();
        for i in 0..cols {
            let pad = w[i] - c[i].chars().count();
            if right.contains(&i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(&c[i]);
            } else {
                s.push_str(&c[i]);
                if i + 1 < cols {
                    s.push_str(&" ".repeat(pad));
                }
            }
            if i + 1 < cols {
                s.push_str("  ");
            }
        }
        println!("{}", s.trim_end());
    };
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    line(&head);
    println!("{}", "-".repeat(w.iter().sum::<usize>() + 2 * (cols - 1)));
    let mut last: Option<&String> = None;
    for c in cells {
        if last.is_some() && last != Some(&c[0]) {
            println!();
        }
        last = Some(&c[0]);
        line(c);
    }
}

fn print_table(sections: &[Section]) {
    let head = [
        "scenario", "step", "time", "MiB/s", "files/s", "peak RSS", "detail",
    ];
    let mut cells = Vec::new();
    for s in sections {
        for r in &s.rows {
            cells.push(vec![
                r.scenario.clone(),
                r.step.clone(),
                r.time.map(fmt_dur).unwrap_or_default(),
                r.mib_s.map(|m| format!("{m:.1}")).unwrap_or_default(),
                r.files_s.map(|f| format!("{f:.0}")).unwrap_or_default(),
                r.rss.map(fmt_bytes).unwrap_or_default(),
                r.detail.clone(),
            ]);
        }
    }
    print_grid(&head, &[2, 3, 4, 5], &cells);
}

fn print_fractions(sections: &[Section]) {
    let mut cells = Vec::new();
    for s in sections {
        for f in &s.fractions {
            cells.push(vec![
                s.name.clone(),
                f.figure.clone(),
                format!("{:.1}", f.lockbox_mib_s),
                format!("{:.1}", f.bound_mib_s),
                format!("{:.1} %", 100.0 * f.lockbox_mib_s / f.bound_mib_s),
                f.bound.clone(),
            ]);
        }
    }
    if cells.is_empty() {
        return;
    }
    println!();
    println!(
        "lockbox as a fraction of this machine's bound for the same work (measured in this run):"
    );
    print_grid(
        &[
            "scenario",
            "figure",
            "lockbox MiB/s",
            "bound MiB/s",
            "fraction",
            "bound (slowest stage)",
        ],
        &[2, 3, 4],
        &cells,
    );
}

fn print_compares(sections: &[Section]) {
    let mut cells = Vec::new();
    for s in sections {
        for c in &s.compares {
            let show = |v: f64| {
                if c.size {
                    fmt_bytes(v as u64)
                } else {
                    fmt_dur(Duration::from_secs_f64(v))
                }
            };
            let mut row = vec![s.name.clone(), c.figure.clone(), show(c.lockbox)];
            for p in PEERS {
                match c.peers.iter().find(|(q, _)| *q == p) {
                    Some(&(_, v)) => {
                        row.push(show(v));
                        row.push(format!("{:.2}", c.ratio(v)));
                    }
                    None => {
                        row.push(String::new());
                        row.push(String::new());
                    }
                }
            }
            cells.push(row);
        }
    }
    if cells.is_empty() {
        return;
    }
    println!();
    println!(
        "lockbox vs peers (time: ratio = peer time / lockbox time, > 1 means lockbox is faster; \
         bytes: ratio = lockbox bytes / peer bytes, < 1 means lockbox is smaller):"
    );
    let mut head = vec!["scenario", "figure", "lockbox"];
    for p in PEERS {
        head.push(p.name());
        head.push("ratio");
    }
    print_grid(&head, &[2, 3, 4, 5, 6, 7, 8], &cells);
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_val(v: &Json) -> String {
    match v {
        Json::U(u) => u.to_string(),
        Json::F(f) if f.is_finite() => format!("{f}"),
        Json::B(b) => b.to_string(),
        Json::F(_) => "null".into(),
        Json::S(s) => json_str(s),
    }
}

fn json_object(pairs: &[(String, Json)], indent: &str) -> String {
    // Later duplicates of a key win; keep first-seen order.
    let mut order: Vec<&str> = Vec::new();
    let mut map: BTreeMap<&str, &Json> = BTreeMap::new();
    for (k, v) in pairs {
        if map.insert(k.as_str(), v).is_none() {
            order.push(k.as_str());
        }
    }
    let mut o = String::from("{\n");
    for (i, k) in order.iter().enumerate() {
        let _ = write!(o, "{indent}  {}: {}", json_str(k), json_val(map[k]));
        o.push_str(if i + 1 < order.len() { ",\n" } else { "\n" });
    }
    o.push_str(indent);
    o.push('}');
    o
}

fn write_json(path: &Path, cfg: &Config, sections: &[Section], total: Duration) -> io::Result<()> {
    let config = vec![
        ("scenario".to_string(), Json::S(cfg.scenario_label.clone())),
        ("backend".to_string(), Json::S(cfg.backend.name().into())),
        ("pattern".to_string(), Json::S(cfg.pattern.name().into())),
        ("files".to_string(), Json::U(cfg.files as u64)),
        ("file_bytes".to_string(), Json::U(cfg.file_bytes as u64)),
        ("large_bytes".to_string(), Json::U(cfg.large_bytes)),
        ("peers".to_string(), Json::B(cfg.peers)),
        ("threads".to_string(), Json::U(bound_threads() as u64)),
        ("release".to_string(), Json::B(!cfg!(debug_assertions))),
        (
            "lockbox_version".to_string(),
            Json::S(env!("CARGO_PKG_VERSION").into()),
        ),
    ];
    let mut o = String::from("{\n");
    let _ = writeln!(o, "  \"config\": {},", json_object(&config, "  "));
    o.push_str("  \"scenarios\": {\n");
    for (i, s) in sections.iter().enumerate() {
        let _ = write!(
            o,
            "    {}: {}",
            json_str(&s.name),
            json_object(&s.json, "    ")
        );
        o.push_str(if i + 1 < sections.len() { ",\n" } else { "\n" });
    }
    o.push_str("  },\n");
    let _ = writeln!(
        o,
        "  \"total_s\": {}",
        json_val(&Json::F(total.as_secs_f64()))
    );
    o.push_str("}\n");
    fs::write(path, o)
}

// ---------------------------------------------------------------------------

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
