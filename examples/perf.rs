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
//! | `LOCKBOX_PERF_SCENARIO`    | `small` \| `large` \| `all`              | `small` (see below)|
//! | `LOCKBOX_PERF_BACKEND`     | `file` \| `memory`                       | `file`             |
//! | `LOCKBOX_PERF_FILES`       | number of small files                    | `10000`            |
//! | `LOCKBOX_PERF_FILE_BYTES`  | bytes per small file                     | `1024`             |
//! | `LOCKBOX_PERF_LARGE_BYTES` | bytes of the one large file              | `268435456` (256 MiB) |
//! | `LOCKBOX_PERF_PATTERN`     | `text` \| `randomish` \| `zero`          | `text`             |
//! | `LOCKBOX_PERF_DIR`         | directory for the archives (kept)        | a temporary dir    |
//! | `LOCKBOX_PERF_JSON`        | path: write every figure there as JSON   | none               |
//!
//! Numbers accept a binary suffix: `8M` = 8 MiB, `64k` = 64 KiB.
//!
//! Scenarios:
//! - `small`: create, `put` N small files in nested directories, commit, reopen,
//!   `list`, `get` every file back and compare, then a one-file commit into the
//!   same archive (reports `CommitStats::bytes_written`).
//! - `large`: one large file through `put_reader` from a generator (never held
//!   in memory), commit, reopen, stream it back with `copy_to`, then 1000 random
//!   4 KiB `read_at` calls with p50/p99.
//! - `all`: every scenario above.
//!
//! With `LOCKBOX_PERF_SCENARIO` unset, the default run is the `small` scenario
//! followed by the `large` one (i.e. the same as `all` today), so one command
//! covers both workloads. Setting `LOCKBOX_PERF_SCENARIO=small` runs only the
//! small-file scenario.
//!
//! What is timed: exactly the library call(s) named in the step. Input data for
//! the small files is generated before the clock starts. The large file is
//! generated while `put_reader` pulls it; the time spent inside the generator is
//! measured separately, reported, and subtracted for the MiB/s figure. Read-back
//! of the large file is timed into a byte-counting sink; the byte-for-byte
//! comparison is a second, untimed pass. `read_at` calls are timed one by one and
//! checked afterwards.
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

use lockbox::{EntryKind, Key, Lockbox};

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
        })
    }
}

// ---------------------------------------------------------------------------
// Context shared by the scenarios: where archives live, how to create/reopen

struct Ctx {
    cfg: Config,
    dir: PathBuf,
}

/// The key used for every archive of the run (raw key: no KDF cost in the figures).
fn key() -> Key {
    Key::raw([0x42; 32])
}

impl Ctx {
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
                let t = Instant::now();
                let lb = Lockbox::open(&path, key())?;
                Ok((lb, t.elapsed()))
            }
            Backend::Memory => {
                let image = lb.image()?;
                drop(lb);
                let t = Instant::now();
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
        let t = Instant::now();
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

        let t = Instant::now();
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
            let t = Instant::now();
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
        let t = Instant::now();
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
    reset_peak_rss();

    let t = Instant::now();
    let mut lb = ctx.create("small")?;
    sec.timed("create", t.elapsed(), None, None, String::new());

    let t = Instant::now();
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

    let t = Instant::now();
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
    sec.timed(
        "add+commit",
        add + commit,
        Some(logical),
        Some(n as u64),
        String::new(),
    );

    let (mut lb, open) = ctx.reopen(lb, "small")?;
    sec.timed("open", open, None, None, "reopen after commit".into());

    let stored = ctx.stored_bytes(&lb, "small")?;

    let t = Instant::now();
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
    let t = Instant::now();
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
    let t = Instant::now();
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

    sec.size(stored, logical);
    sec.fact_u(
        "lockbox_bytes_after_one_file_commit",
        stored_after,
        format!("{} after the one-file commit", fmt_bytes(stored_after)),
    );
    sec.peak_rss();
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
    reset_peak_rss();

    let t = Instant::now();
    let mut lb = ctx.create("large")?;
    sec.timed("create", t.elapsed(), None, None, String::new());

    let mut input = GenReader::new(cfg.pattern, LARGE_SEED, size);
    let t = Instant::now();
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

    let t = Instant::now();
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
    sec.timed("add+commit", add + commit, Some(size), None, String::new());

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
    let t = Instant::now();
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
    drop(lb);

    sec.size(stored, size);
    sec.peak_rss();
    Ok(())
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
    detail: String,
}

struct Section {
    name: String,
    rows: Vec<Row>,
    json: Vec<(String, Json)>,
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
        }
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
            detail,
        });
    }

    /// A figure without a time.
    fn fact_u(&mut self, key: &str, v: u64, detail: String) {
        self.json_u(key, v);
        self.row(&key.replace('_', " "), None, None, None, detail);
    }

    /// A timed step; `bytes`/`files` give the MiB/s and files/s columns.
    fn timed(
        &mut self,
        step: &str,
        d: Duration,
        bytes: Option<u64>,
        files: Option<u64>,
        detail: String,
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
        self.row(step, Some(d), mib_s, files_s, detail);
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

    fn peak_rss(&mut self) {
        match peak_rss_bytes() {
            Some(b) => {
                self.json_u("peak_rss_bytes", b);
                self.row("peak RSS", None, None, None, fmt_bytes(b));
            }
            None => self.row("peak RSS", None, None, None, "unavailable".into()),
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

fn print_table(sections: &[Section]) {
    let head = ["scenario", "step", "time", "MiB/s", "files/s", "detail"];
    let mut cells: Vec<[String; 6]> = Vec::new();
    for s in sections {
        for r in &s.rows {
            cells.push([
                r.scenario.clone(),
                r.step.clone(),
                r.time.map(fmt_dur).unwrap_or_default(),
                r.mib_s.map(|m| format!("{m:.1}")).unwrap_or_default(),
                r.files_s.map(|f| format!("{f:.0}")).unwrap_or_default(),
                r.detail.clone(),
            ]);
        }
    }
    let mut w = head.map(|h| h.chars().count());
    for c in &cells {
        for i in 0..6 {
            w[i] = w[i].max(c[i].chars().count());
        }
    }
    let line = |c: &[String; 6]| {
        let mut s = String::new();
        for i in 0..6 {
            let pad = w[i] - c[i].chars().count();
            // numbers right-aligned, text left-aligned
            if (2..5).contains(&i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(&c[i]);
            } else {
                s.push_str(&c[i]);
                if i < 5 {
                    s.push_str(&" ".repeat(pad));
                }
            }
            if i < 5 {
                s.push_str("  ");
            }
        }
        println!("{}", s.trim_end());
    };
    line(&head.map(String::from));
    println!("{}", "-".repeat(w.iter().sum::<usize>() + 10));
    let mut last = None;
    for c in &cells {
        if last.is_some() && last != Some(&c[0]) {
            println!();
        }
        last = Some(&c[0]);
        line(c);
    }
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
    let (_tmp, dir) = match &cfg.dir {
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
        "lockbox perf: scenario={} backend={} pattern={} files={} file_bytes={} large_bytes={} ({})",
        cfg.scenario_label,
        cfg.backend.name(),
        cfg.pattern.name(),
        cfg.files,
        cfg.file_bytes,
        cfg.large_bytes,
        fmt_bytes(cfg.large_bytes)
    );
    if cfg.backend == Backend::File {
        println!("archives in {}", dir.display());
    }
    if cfg!(debug_assertions) {
        println!("WARNING: debug build; figures are not meaningful (use --release)");
    }
    let ctx = Ctx { cfg, dir };
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
    println!();
    print_table(&sections);
    println!();
    println!(
        "all data read back matched; total wall time {}",
        fmt_dur(total)
    );
    if let Some(p) = &ctx.cfg.json {
        write_json(p, &ctx.cfg, &sections, total)?;
        println!("figures written to {}", p.display());
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
