//! Machine bounds: what this machine can do for the same work as lockbox,
//! measured in the same run on the same data. CPU: raw XChaCha20-Poly1305
//! seal and open, zstd-3 compress and decompress, and the two per-frame
//! pipelines lockbox runs (compress + seal; open + decompress), on 64 KiB
//! frames, on 1 thread and on every core. Filesystem: create + write + close
//! (and open + read + close) of the same number of files of the same sizes.
//! Lockbox's rates are reported as a fraction of the slowest relevant stage.

use std::fs;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305, XNonce};

use crate::BoxResult;
use crate::fsutil::make_parents;
use crate::report::Section;
use crate::units::{MIB, fmt_bytes};

/// Frame size of the bounds (lockbox's default frame and pack target).
pub const FRAME: usize = 64 * 1024;
/// How long each CPU bound runs per thread (cycling over its frames); each
/// bound is the best of `BOUND_TRIES` such windows.
const BOUND_WINDOW: Duration = Duration::from_millis(60);
const BOUND_TRIES: usize = 3;
/// Each filesystem bound is the best of this many passes.
pub const FS_TRIES: usize = 2;
/// Bytes of the large file the CPU bounds are measured on.
pub const BOUND_SAMPLE: u64 = 32 << 20;

/// Threads for the "every core" bounds: one per core, at most 8 (what
/// lockbox's extraction uses).
pub fn bound_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
}

/// A throughput in MiB/s on one thread and on `bound_threads()` threads.
#[derive(Clone, Copy)]
pub struct Rate {
    pub one: f64,
    pub all: f64,
}

impl Rate {
    pub fn best(self) -> f64 {
        self.one.max(self.all)
    }
    /// `what` with the thread count of the best figure.
    pub fn stage(self, what: &str) -> (String, f64) {
        let t = if self.all > self.one {
            bound_threads()
        } else {
            1
        };
        let s = if t == 1 { "" } else { "s" };
        (format!("{what} ({t} thread{s})"), self.best())
    }
    pub fn detail(self) -> String {
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
pub struct CpuBounds {
    pub frames: usize,
    pub bytes: u64,
    pub seal: Rate,
    pub open: Rate,
    pub zstd_c: Rate,
    pub zstd_d: Rate,
    /// zstd-3 then seal (stored if it does not shrink), as lockbox does per frame.
    pub pack: Rate,
    /// open then zstd-decompress.
    pub unpack: Rate,
    /// zstd-3 bytes / raw bytes over the frames.
    pub zstd_ratio: f64,
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

pub fn cpu_bounds(frames: &[Vec<u8>]) -> BoxResult<CpuBounds> {
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
pub fn report_cpu_bounds(sec: &mut Section, b: &CpuBounds, what: &str) {
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
pub fn slowest(stages: &[(String, f64)]) -> (String, f64) {
    stages
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .cloned()
        .expect("at least one stage")
}

/// Cuts `data` into 64 KiB frames.
pub fn frames_of(data: &[u8]) -> Vec<Vec<u8>> {
    data.chunks(FRAME).map(|c| c.to_vec()).collect()
}

/// Runs `work` on `threads` threads, thread `t` on its share
/// `t*n/threads..(t+1)*n/threads` of `0..n`, and times them all from one
/// start: each thread calls `ready` once its set-up is done. Returns the
/// wall time until the last one finishes.
fn timed_shares<F>(threads: usize, n: usize, work: F) -> io::Result<Duration>
where
    F: Fn(std::ops::Range<usize>, &dyn Fn()) -> io::Result<()> + Sync,
{
    let barrier = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    work(t * n / threads..(t + 1) * n / threads, &|| {
                        barrier.wait();
                    })
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

/// Filesystem: create + write + close of `datas` at `paths` under `root`, on
/// `threads` threads (each its own share). Directories are made first,
/// untimed. Returns the wall time.
pub fn fs_create_bound(
    root: &Path,
    paths: &[String],
    datas: &[Vec<u8>],
    threads: usize,
) -> io::Result<Duration> {
    make_parents(root, paths)?;
    timed_shares(threads, paths.len(), |share, ready| {
        ready();
        for i in share {
            let mut f = fs::File::create(root.join(&paths[i]))?;
            f.write_all(&datas[i])?;
        }
        Ok(())
    })
}

/// Filesystem: open + read + close of the files at `paths` under `root`.
pub fn fs_read_bound(
    root: &Path,
    paths: &[String],
    len: usize,
    threads: usize,
) -> io::Result<Duration> {
    timed_shares(threads, paths.len(), |share, ready| {
        let mut buf = vec![0u8; len];
        ready();
        for p in &paths[share] {
            let mut f = fs::File::open(root.join(p))?;
            f.read_exact(&mut buf)?;
            black_box(&buf);
        }
        Ok(())
    })
}

/// Filesystem: create + write + close of files of `sizes` bytes at `paths`
/// under `root`, on `threads` threads, the bytes taken from `fill` (what a
/// file holds does not change what the filesystem does with it, so a tree
/// too large to hold in memory still gets a bound). Directories are made
/// first, untimed. Returns the wall time.
pub fn fs_create_sizes_bound(
    root: &Path,
    paths: &[String],
    sizes: &[u64],
    fill: &[u8],
    threads: usize,
) -> io::Result<Duration> {
    make_parents(root, paths)?;
    timed_shares(threads, paths.len(), |share, ready| {
        ready();
        for i in share {
            let mut f = fs::File::create(root.join(&paths[i]))?;
            let mut left = sizes[i];
            while left > 0 {
                let k = left.min(fill.len() as u64) as usize;
                f.write_all(&fill[..k])?;
                left -= k as u64;
            }
        }
        Ok(())
    })
}

/// Filesystem: open + read to the end + close of the files at `paths` under
/// `root` (any sizes), on `threads` threads.
pub fn fs_read_all_bound(root: &Path, paths: &[String], threads: usize) -> io::Result<Duration> {
    timed_shares(threads, paths.len(), |share, ready| {
        let mut buf = Vec::new();
        ready();
        for p in &paths[share] {
            buf.clear();
            fs::File::open(root.join(p))?.read_to_end(&mut buf)?;
            black_box(&buf);
        }
        Ok(())
    })
}

/// A filesystem bound: best wall time on 1 thread and on `bound_threads()`.
#[derive(Clone, Copy)]
pub struct FsBound {
    pub one: Duration,
    pub all: Duration,
}

impl FsBound {
    /// Best of `FS_TRIES` runs of `pass(threads, try)` on 1 thread and on
    /// every core.
    pub fn measure(
        mut pass: impl FnMut(usize, usize) -> io::Result<Duration>,
    ) -> io::Result<FsBound> {
        let mut best = |threads: usize| -> io::Result<Duration> {
            let mut best = Duration::MAX;
            for k in 0..FS_TRIES {
                best = best.min(pass(threads, k)?);
            }
            Ok(best)
        };
        let one = best(1)?;
        let n = bound_threads();
        let all = if n > 1 { best(n)? } else { one };
        Ok(FsBound { one, all })
    }

    pub fn rate(self, bytes: u64) -> Rate {
        Rate {
            one: bytes as f64 / self.one.as_secs_f64() / MIB,
            all: bytes as f64 / self.all.as_secs_f64() / MIB,
        }
    }

    /// A row and its JSON (`bound_{key}_*`) for `files` files of `bytes` in all.
    pub fn report(
        self,
        sec: &mut Section,
        key: &str,
        step: &str,
        files: u64,
        bytes: u64,
        what: &str,
    ) {
        let fps = |d: Duration| files as f64 / d.as_secs_f64();
        let r = self.rate(bytes);
        let threads = bound_threads();
        let (d, mib, f) = if r.all > r.one {
            (self.all, r.all, fps(self.all))
        } else {
            (self.one, r.one, fps(self.one))
        };
        sec.row(
            step,
            Some(d),
            Some(mib),
            Some(f),
            format!(
                "{what}, best of {FS_TRIES}: 1 thread {:.0} files/s ({:.1} MiB/s), {threads} threads {:.0} files/s ({:.1} MiB/s)",
                fps(self.one),
                r.one,
                fps(self.all),
                r.all
            ),
        );
        sec.json_f(&format!("bound_{key}_1t_files_s"), fps(self.one));
        sec.json_f(&format!("bound_{key}_files_s"), fps(self.all));
        sec.json_f(&format!("bound_{key}_1t_mib_s"), r.one);
        sec.json_f(&format!("bound_{key}_mib_s"), r.all);
    }
}
