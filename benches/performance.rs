//! Criterion benchmarks for `lockbox`.
//!
//! ```text
//! cargo bench                      # everything
//! cargo bench -- core/             # one group
//! cargo bench --no-run             # build only (CI)
//! ```
//!
//! Groups are organised by workflow; later work adds groups (metadata and TOC
//! structure, variables, redaction, peers) next to `core`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use lockbox::{Key, Lockbox};

fn key() -> Key {
    Key::raw([0x42; 32])
}

// ---------------------------------------------------------------------------
// Deterministic input data (compressible text, like the perf example's default)

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
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

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
    "file",
    "data",
    "value",
    "system",
    "user",
    "time",
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
    "tree",
    "node",
    "leaf",
    "cache",
    "storage",
    "compress",
    "encrypt",
    "verify",
    "project",
    "document",
];

fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 16);
    let n = WORDS.len() as u64;
    let mut col = 0;
    while out.len() < len {
        let w = WORDS[rng.below(n).min(rng.below(n)) as usize].as_bytes();
        out.extend_from_slice(w);
        col += w.len() + 1;
        if rng.below(12) == 0 {
            out.extend_from_slice(b". ");
        } else if col > 70 {
            out.push(b'\n');
            col = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

fn small_files(n: usize, bytes: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("d{:02}/s{}/f{:05}.txt", i / 1000, (i / 100) % 10, i),
                text(i as u64, bytes),
            )
        })
        .collect()
}

/// Streams `len` bytes of text, 1 MiB (one seed) at a time: never holds the whole file.
struct TextReader {
    left: u64,
    seed: u64,
    chunk: Vec<u8>,
    pos: usize,
}

impl TextReader {
    fn new(len: u64) -> TextReader {
        TextReader {
            left: len,
            seed: 1000,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl std::io::Read for TextReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.chunk.len() {
            if self.left == 0 {
                return Ok(0);
            }
            let n = self.left.min(1 << 20);
            self.left -= n;
            self.seed += 1;
            self.chunk = text(self.seed, n as usize);
            self.pos = 0;
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes a file-backed archive holding `files` plus (optionally) one large file.
fn build_archive(path: &Path, files: &[(String, Vec<u8>)], large: Option<(&str, u64)>) -> PathBuf {
    let mut lb = Lockbox::create(path, key()).expect("create");
    for (p, d) in files {
        lb.put(p, d).expect("put");
    }
    if let Some((name, len)) = large {
        let n = lb
            .put_reader(name, TextReader::new(len))
            .expect("put_reader");
        assert_eq!(n, len);
    }
    lb.commit().expect("commit");
    path.to_path_buf()
}

// ---------------------------------------------------------------------------
// Group `core`: the basic storage workflows

fn core(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("lockbox-bench-")
        .tempdir()
        .expect("tempdir");
    let mut g = c.benchmark_group("core");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    // Small add + commit: 1000 x 1 KiB into a fresh in-memory lockbox.
    let files = small_files(1000, 1024);
    let bytes: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("add_commit_1000x1KiB_memory", |b| {
        b.iter_batched(
            || {
                Lockbox::builder()
                    .create_in_memory(key())
                    .expect("create_in_memory")
            },
            |mut lb| {
                for (p, d) in &files {
                    lb.put(p, d).expect("put");
                }
                black_box(lb.commit().expect("commit"));
                lb // dropped outside the measurement
            },
            BatchSize::PerIteration,
        )
    });

    // Range reads on a 64 MiB file (file backend, reopened read-only).
    const LARGE: u64 = 64 << 20;
    let large_path = build_archive(
        &dir.path().join("large.lbox"),
        &[],
        Some(("big/large.bin", LARGE)),
    );
    let lb = Lockbox::builder()
        .read_only(true)
        .open(&large_path, key())
        .expect("open large");
    for (name, len) in [
        ("read_at_4KiB_of_64MiB", 4096usize),
        ("read_at_1MiB_of_64MiB", 1 << 20),
    ] {
        let mut rng = Rng::new(len as u64);
        let offsets: Vec<u64> = (0..4096)
            .map(|_| rng.below(LARGE - len as u64 + 1))
            .collect();
        let mut buf = vec![0u8; len];
        let mut i = 0usize;
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let off = offsets[i % offsets.len()];
                i += 1;
                let n = lb.read_at("big/large.bin", off, &mut buf).expect("read_at");
                assert_eq!(n, len);
                black_box(&buf);
            })
        });
    }
    drop(lb);

    // stat (warm) and open on an archive of 1000 small files.
    let small_path = build_archive(&dir.path().join("small.lbox"), &files, None);
    {
        let lb = Lockbox::open(&small_path, key()).expect("open small");
        let probe = &files[files.len() / 2].0;
        assert!(lb.stat(probe).expect("stat").is_some());
        g.throughput(Throughput::Elements(1));
        g.bench_function("stat_warm", |b| {
            b.iter(|| black_box(lb.stat(black_box(probe)).expect("stat")))
        });
    }

    g.throughput(Throughput::Elements(1));
    g.bench_function("open_1000_files", |b| {
        // Writable open takes the writer lock: each handle is dropped before the
        // next open, outside the timed region.
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let lb = Lockbox::open(&small_path, key()).expect("open");
                total += t.elapsed();
                drop(black_box(lb));
            }
            total
        })
    });

    g.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
