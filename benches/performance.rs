//! Criterion benchmarks for `lockbox`.
//!
//! ```text
//! cargo bench                      # everything
//! cargo bench -- core/             # one group
//! cargo bench --no-run             # build only (CI)
//! ```
//!
//! Groups are organised by workflow: `core` (small add + commit, range
//! reads, stat, open), `metadata`, `toc_structure`, `variables`,
//! `redaction`, and, with tar + zstd -3 and zip AES-256 doing the same
//! work in the same group, `extract_1000x1KiB` and `pack`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use lockbox::{Key, Lockbox};

fn key() -> Key {
    Key::raw([0x42; 32])
}

// ---------------------------------------------------------------------------
// Deterministic input data: the perf example's generators (compressible
// text), shared rather than copied.

#[allow(dead_code)]
#[path = "../examples/perf/datagen.rs"]
mod datagen;

use datagen::{Pattern, Rng};

/// `len` bytes of realistic text, deterministic in `seed`.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    datagen::fill_text(seed, &mut out);
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

/// Writes a file-backed archive holding `files` plus (optionally) one large file.
fn build_archive(path: &Path, files: &[(String, Vec<u8>)], large: Option<(&str, u64)>) -> PathBuf {
    let mut lb = Lockbox::create(path, key()).expect("create");
    for (p, d) in files {
        lb.put(p, d).expect("put");
    }
    if let Some((name, len)) = large {
        let n = lb
            .put_reader(name, datagen::GenReader::new(Pattern::Text, 1000, len))
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

/// A lockbox of `n` small packed files (200 B), committed in batches.
fn metadata_archive(path: &Path, n: usize) -> PathBuf {
    let _ = std::fs::remove_file(path);
    let mut lb = Lockbox::create(path, key()).expect("create");
    let data = text(7, 200);
    for i in 0..n {
        lb.put(&format!("d{:03}/f{i:07}", i % 997), &data)
            .expect("put");
        if (i + 1) % 50_000 == 0 {
            lb.commit().expect("commit");
        }
    }
    lb.commit().expect("commit");
    path.to_path_buf()
}

fn entry_counts() -> Vec<usize> {
    let mut v = vec![10_000, 100_000];
    if std::env::var_os("LOCKBOX_BENCH_1M").is_some() {
        v.push(1_000_000);
    }
    v
}

/// Open, stat and list at 10k and 100k entries (1M with LOCKBOX_BENCH_1M),
/// and the TOC structure under commits: a batch that splits leaves and
/// grows the root, and a delete that merges them and shrinks it.
fn metadata(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("lockbox-bench-meta-")
        .tempdir()
        .expect("tempdir");
    let mut g = c.benchmark_group("metadata");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in entry_counts() {
        let path = metadata_archive(&dir.path().join(format!("m{n}.lbox")), n);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("open_{n}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let lb = Lockbox::builder()
                        .read_only(true)
                        .open(&path, key())
                        .expect("open");
                    total += t.elapsed();
                    drop(black_box(lb));
                }
                total
            })
        });
        let lb = Lockbox::builder()
            .read_only(true)
            .open(&path, key())
            .expect("open");
        let mut rng = Rng::new(n as u64);
        let probes: Vec<String> = (0..1024)
            .map(|_| {
                let i = rng.below(n as u64) as usize;
                format!("d{:03}/f{i:07}", i % 997)
            })
            .collect();
        let mut k = 0usize;
        g.bench_function(format!("stat_warm_{n}"), |b| {
            b.iter(|| {
                k += 1;
                black_box(lb.stat(&probes[k % probes.len()]).expect("stat"))
            })
        });
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("list_{n}"), |b| {
            b.iter(|| black_box(lb.list("").expect("list").count()))
        });
        drop(lb);
    }
    g.finish();

    let mut g = c.benchmark_group("toc_structure");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let data = text(9, 100);
    g.throughput(Throughput::Elements(2000));
    // Small nodes so 2,000 entries split leaves and raise the root.
    g.bench_function("split_grow_root_2000_inserts", |b| {
        b.iter_batched(
            || {
                let mut lb = Lockbox::builder()
                    .node_capacity(2048)
                    .create_in_memory(key())
                    .expect("create");
                lb.put("seed", b"x").expect("put");
                lb.commit().expect("commit");
                lb
            },
            |mut lb| {
                for i in 0..2000 {
                    lb.put(&format!("k/{i:05}"), &data).expect("put");
                }
                black_box(lb.commit().expect("commit"));
                lb
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("merge_shrink_root_delete_2000", |b| {
        b.iter_batched(
            || {
                let mut lb = Lockbox::builder()
                    .node_capacity(2048)
                    .create_in_memory(key())
                    .expect("create");
                for i in 0..2000 {
                    lb.put(&format!("k/{i:05}"), &data).expect("put");
                }
                lb.put("keep", b"x").expect("put");
                lb.commit().expect("commit");
                lb
            },
            |mut lb| {
                lb.delete("k").expect("delete");
                black_box(lb.commit().expect("commit"));
                lb
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Variables (set, remove, list from a cold open) and redaction (a delete
/// and its commit: repacking, zeroing, the other slot rewritten).
fn vars_and_redaction(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("lockbox-bench-vars-")
        .tempdir()
        .expect("tempdir");
    let mut g = c.benchmark_group("variables");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let path = dir.path().join("vars.lbox");
    {
        let mut lb = Lockbox::create(&path, key()).expect("create");
        for i in 0..1000 {
            lb.set_var(&format!("var{i:04}"), &text(i, 64))
                .expect("set_var");
        }
        lb.commit().expect("commit");
    }
    let mut lb = Lockbox::open(&path, key()).expect("open");
    let mut i = 0u64;
    g.throughput(Throughput::Elements(1));
    g.bench_function("set_var_commit", |b| {
        b.iter(|| {
            i += 1;
            lb.set_var("counter", &i.to_le_bytes()).expect("set_var");
            black_box(lb.commit().expect("commit"))
        })
    });
    g.bench_function("set_remove_var_commit", |b| {
        b.iter(|| {
            lb.set_var("temp", b"value").expect("set_var");
            lb.commit().expect("commit");
            lb.remove_var("temp").expect("remove_var");
            black_box(lb.commit().expect("commit"))
        })
    });
    drop(lb);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("vars_cold_open_1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let lb = Lockbox::builder()
                    .read_only(true)
                    .open(&path, key())
                    .expect("open");
                let n = lb.vars().expect("vars").count();
                total += t.elapsed();
                assert_eq!(n, 1001);
                drop(lb);
            }
            total
        })
    });
    g.finish();

    let mut g = c.benchmark_group("redaction");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let files = small_files(2000, 1024);
    g.throughput(Throughput::Elements(1));
    g.bench_function("delete_packed_file_commit", |b| {
        b.iter_batched(
            || {
                let mut lb = Lockbox::builder().create_in_memory(key()).expect("create");
                for (p, d) in &files {
                    lb.put(p, d).expect("put");
                }
                lb.commit().expect("commit");
                lb
            },
            |mut lb| {
                lb.delete(&files[1000].0).expect("delete");
                black_box(lb.commit().expect("commit"));
                lb
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("delete_4MiB_file_commit", |b| {
        b.iter_batched(
            || {
                let mut lb = Lockbox::builder().create_in_memory(key()).expect("create");
                lb.put("big", &text(3, 4 << 20)).expect("put");
                lb.put("keep", b"x").expect("put");
                lb.commit().expect("commit");
                lb
            },
            |mut lb| {
                lb.delete("big").expect("delete");
                black_box(lb.commit().expect("commit"));
                lb
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Extraction of 1000 x 1 KiB files, to memory and to a directory, with
/// tar + zstd-3 and zip with AES-256 doing the same work in the same group.
fn extract_and_peers(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("lockbox-bench-ex-")
        .tempdir()
        .expect("tempdir");
    let files = small_files(1000, 1024);
    let bytes: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    let mut lb = Lockbox::builder().create_in_memory(key()).expect("create");
    for (p, d) in &files {
        lb.put(p, d).expect("put");
    }
    lb.commit().expect("commit");
    let tar_zst = tar_zstd3(&files);
    // The everyday encrypted choice: zip, AES-256 (deflate, default level).
    let zip_aes = zip_aes256(&files);
    let mut g = c.benchmark_group("extract_1000x1KiB");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("lockbox_to_memory", |b| {
        b.iter(|| {
            let mut n = 0u64;
            lb.extract_all("", |_, d| {
                n += d.len() as u64;
                Ok(())
            })
            .expect("extract_all");
            black_box(n)
        })
    });
    g.bench_function("tar_zstd3_to_memory", |b| {
        b.iter(|| {
            let dec = zstd::stream::Decoder::new(&tar_zst[..]).expect("zstd");
            let mut a = tar::Archive::new(dec);
            let mut n = 0u64;
            for e in a.entries().expect("entries") {
                let mut e = e.expect("entry");
                n += std::io::copy(&mut e, &mut std::io::sink()).expect("copy");
            }
            black_box(n)
        })
    });
    g.bench_function("zip_aes256_to_memory", |b| {
        b.iter(|| {
            let mut a = zip::ZipArchive::new(std::io::Cursor::new(&zip_aes[..])).expect("zip");
            let mut n = 0u64;
            for i in 0..a.len() {
                let mut f = a.by_index_decrypt(i, b"bench-password").expect("zip entry");
                n += std::io::copy(&mut f, &mut std::io::sink()).expect("copy");
            }
            black_box(n)
        })
    });
    let mut k = 0u32;
    g.bench_function("lockbox_to_directory", |b| {
        b.iter(|| {
            k += 1;
            let out = dir.path().join(format!("lb{k}"));
            black_box(
                lb.extract_to_directory(&out, &lockbox::ExtractOptions::default())
                    .expect("extract"),
            )
        })
    });
    g.bench_function("tar_zstd3_to_directory", |b| {
        b.iter(|| {
            k += 1;
            let out = dir.path().join(format!("tz{k}"));
            let dec = zstd::stream::Decoder::new(&tar_zst[..]).expect("zstd");
            tar::Archive::new(dec).unpack(&out).expect("unpack");
        })
    });
    g.bench_function("zip_aes256_to_directory", |b| {
        b.iter(|| {
            k += 1;
            let out = dir.path().join(format!("zip{k}"));
            let mut a = zip::ZipArchive::new(std::io::Cursor::new(&zip_aes[..])).expect("zip");
            for i in 0..a.len() {
                let mut f = a.by_index_decrypt(i, b"bench-password").expect("zip entry");
                let path = out.join(f.name().expect("zip name").as_ref());
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).expect("mkdir");
                }
                let mut o = std::fs::File::create(&path).expect("create");
                std::io::copy(&mut f, &mut o).expect("copy");
            }
        })
    });
    g.finish();
}

/// tar + zstd -3 of `files`, in memory.
fn tar_zstd3(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let enc = zstd::stream::Encoder::new(&mut out, 3)
        .expect("zstd")
        .auto_finish();
    let mut t = tar::Builder::new(enc);
    for (p, d) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, p, &d[..]).expect("tar append");
    }
    t.into_inner().expect("tar finish");
    out
}

/// zip with AES-256 (deflate, default level) of `files`, in memory.
fn zip_aes256(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = zip::write::SimpleFileOptions::default()
        .with_aes_encryption(zip::AesMode::Aes256, "bench-password")
        .large_file(files.iter().any(|(_, d)| d.len() as u64 >= u32::MAX as u64));
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(&mut out));
    for (p, d) in files {
        w.start_file(p.as_str(), opts).expect("zip start");
        std::io::Write::write_all(&mut w, d).expect("zip write");
    }
    w.finish().expect("zip finish");
    out
}

/// Packing, in memory: 1000 x 1 KiB and one 16 MiB text file put and
/// committed (lockbox under the default profile and under `BulkImport`),
/// with tar + zstd -3 and zip AES-256 packing the same files in the same
/// group.
fn pack_and_peers(c: &mut Criterion) {
    let mut g = c.benchmark_group("pack");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let small = small_files(1000, 1024);
    let large = vec![("big/large.txt".to_string(), text(0xB16, 16 << 20))];
    for (what, files) in [("1000x1KiB", &small), ("16MiB", &large)] {
        let bytes: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
        g.throughput(Throughput::Bytes(bytes));
        for (name, profile) in [
            ("lockbox", lockbox::Profile::Interactive),
            ("lockbox_bulk", lockbox::Profile::BulkImport),
        ] {
            g.bench_function(format!("{name}_{what}"), |b| {
                b.iter_batched(
                    || {
                        Lockbox::builder()
                            .profile(profile)
                            .create_in_memory(key())
                            .expect("create_in_memory")
                    },
                    |mut lb| {
                        for (p, d) in files.iter() {
                            lb.put(p, d).expect("put");
                        }
                        black_box(lb.commit().expect("commit"));
                        lb // dropped outside the measurement
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        g.bench_function(format!("tar_zstd3_{what}"), |b| {
            b.iter(|| black_box(tar_zstd3(files)))
        });
        g.bench_function(format!("zip_aes256_{what}"), |b| {
            b.iter(|| black_box(zip_aes256(files)))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    core,
    metadata,
    vars_and_redaction,
    extract_and_peers,
    pack_and_peers
);
criterion_main!(benches);
