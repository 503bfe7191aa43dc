//! Machine bounds: what this machine can do for the same work as lockbox,
//! measured in the same run on the same data. CPU: raw XChaCha20-Poly1305
//! seal and open, zstd compress and decompress, and the two per-frame
//! pipelines lockbox runs (compress + seal; open + decompress), on 1 thread
//! and on every core, on frames of the size and at the zstd level lockbox
//! writes the data with (a [`Coding`]: `Coding::INTERACTIVE`, 64 KiB at
//! level 3, or `Coding::BULK`, 1 MiB at level 2). Filesystem (in
//! `bounds/filesystem.rs`): create + write + close (and open + read +
//! close) of the same number of files of the same sizes. Lockbox's rates
//! are reported as a fraction of the slowest relevant stage.
//!
//! JSON of a set of CPU bounds (`report_cpu_bounds`): every key starts with
//! the coding's prefix, `bound_` for `Coding::INTERACTIVE` (the names these
//! bounds always had), `bound_bulk_` for `Coding::BULK` (and
//! `bound_f{frame}_z{level}_` for any other); the zstd level
//! is part of the compression keys' names (`{prefix}zstd3_compress_mib_s`,
//! `{prefix}zstd3_ratio` at level 3, `zstd2_...` at level 2), so a key never
//! holds a figure of another level. Each set also reports `{prefix}zstd_level`
//! and `{prefix}frame_size` (bytes of a frame), besides `{prefix}frames`
//! (how many) and `{prefix}frame_bytes` (their bytes in all: the name is
//! historical). `bound_threads` is reported once per set, unprefixed.

use std::hint::black_box;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use lockbox::Lockbox;
use lockbox::testing::Cipher;

use crate::BoxResult;
use crate::report::Section;
use crate::units::{MIB, fmt_bytes};

mod filesystem;
pub use filesystem::{
    FS_TRIES, FsBound, fs_create_bound, fs_create_sizes_bound, fs_read_all_bound, fs_read_bound,
};

/// How lockbox cuts and compresses new data: the raw size of a data frame
/// (and of a full pack) and the zstd level it is compressed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coding {
    pub frame: usize,
    pub level: i32,
}

impl Coding {
    /// Mirrors lockbox's defaults under `Profile::Interactive` (and any
    /// profile but `BulkImport`): the header's frame size (64 KiB) at zstd
    /// level 3. Keep in step with `Lockbox::set_profile` and
    /// `Profile::frame_level`.
    pub const INTERACTIVE: Coding = Coding {
        frame: 64 * 1024,
        level: 3,
    };
    /// Mirrors lockbox's defaults under `Profile::BulkImport`: 16 times the
    /// header's frame size (1 MiB) at zstd level 2.
    pub const BULK: Coding = Coding {
        frame: 16 * 64 * 1024,
        level: 2,
    };

    /// "64 KiB", "1 MiB".
    pub fn frame_label(self) -> String {
        if self.frame.is_multiple_of(1 << 20) {
            format!("{} MiB", self.frame >> 20)
        } else if self.frame.is_multiple_of(1024) {
            format!("{} KiB", self.frame >> 10)
        } else {
            format!("{} B", self.frame)
        }
    }

    /// The prefix of this coding's JSON keys (see the module doc).
    fn key_prefix(self) -> String {
        if self == Coding::INTERACTIVE {
            "bound_".into()
        } else if self == Coding::BULK {
            "bound_bulk_".into()
        } else {
            format!("bound_f{}_z{}_", self.frame, self.level)
        }
    }
}

/// How long each CPU bound runs per thread (cycling over its frames); each
/// bound is the best of `BOUND_TRIES` such windows.
const BOUND_WINDOW: Duration = Duration::from_millis(60);
const BOUND_TRIES: usize = 3;
/// Bytes the CPU bounds are measured on at most: every k-th frame of the
/// data, spread over all of it. (A sample that fits in the last-level
/// cache, cycled, measures a bound the real work, streaming through
/// memory, cannot reach: on this VM's 32 MiB L3 the first 32 MiB of the
/// tree gave a bound 15 % too high.)
pub const SPREAD_SAMPLE: u64 = 128 << 20;

/// Every k-th `frame`-byte frame of the `total` bytes `r` yields, so that
/// at most [`SPREAD_SAMPLE`] bytes are kept (the first frame always).
pub fn spread_frames_of(r: &mut impl Read, total: u64, frame: usize) -> io::Result<Vec<Vec<u8>>> {
    let stride = total.div_ceil(SPREAD_SAMPLE).max(1);
    let mut frames = Vec::new();
    let mut skip = vec![0u8; frame];
    let mut index = 0u64;
    let mut left = total;
    while left > 0 {
        let n = left.min(frame as u64) as usize;
        if index.is_multiple_of(stride) {
            let mut f = vec![0u8; n];
            r.read_exact(&mut f)?;
            frames.push(f);
        } else {
            r.read_exact(&mut skip[..n])?;
        }
        left -= n as u64;
        index += 1;
    }
    Ok(frames)
}

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
    pub coding: Coding,
    pub frames: usize,
    pub bytes: u64,
    pub seal: Rate,
    pub open: Rate,
    pub zstd_c: Rate,
    pub zstd_d: Rate,
    /// zstd at the coding's level then seal (stored if it does not
    /// shrink), as lockbox does per frame.
    pub pack: Rate,
    /// open then zstd-decompress.
    pub unpack: Rate,
    /// zstd bytes / raw bytes over the frames.
    pub zstd_ratio: f64,
}

impl CpuBounds {
    /// The compress + seal stage, named with its coding.
    pub fn pack_stage(&self) -> (String, f64) {
        let c = self.coding;
        let what = format!(
            "zstd-{} compress+seal of {} frames",
            c.level,
            c.frame_label()
        );
        self.pack.stage(&what)
    }
    /// The open + decompress stage, named with its coding.
    pub fn unpack_stage(&self) -> (String, f64) {
        let c = self.coding;
        let what = format!(
            "open+decompress of zstd-{} {} frames",
            c.level,
            c.frame_label()
        );
        self.unpack.stage(&what)
    }
}

/// The crate's own XChaCha20-Poly1305.
fn bound_cipher() -> Cipher {
    Cipher::new(&[0x42u8; 32])
}

/// A fixed nonce and associated data: the cost of the cipher, not of a random source.
const BOUND_NONCE: [u8; 24] = [7u8; 24];
const BOUND_AAD: [u8; 41] = [0u8; 41];

fn seal_in_place(c: &Cipher, buf: &mut [u8]) -> [u8; 16] {
    c.seal(&BOUND_NONCE, &BOUND_AAD, buf).expect("seal")
}

fn open_in_place(c: &Cipher, buf: &mut [u8], tag: &[u8; 16]) {
    c.open(&BOUND_NONCE, &BOUND_AAD, buf, tag).expect("open");
}

/// CPU bounds on `frames` (cut by `frames_of` with the same `coding`),
/// compressed at `coding.level`.
pub fn cpu_bounds(frames: &[Vec<u8>], coding: Coding) -> BoxResult<CpuBounds> {
    if frames.is_empty() || frames.iter().any(|f| f.len() > coding.frame) {
        return Err(format!(
            "cpu_bounds: need at least one frame, none over {} bytes",
            coding.frame
        )
        .into());
    }
    let (frame, level) = (coding.frame, coding.level);
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
        let z = zstd::bulk::compress(f, level)?;
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
    let scratch = || (bound_cipher(), vec![0u8; frame + 1024]);
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
                zstd::bulk::Compressor::new(level).expect("zstd compressor"),
                Vec::<u8>::with_capacity(zstd::zstd_safe::compress_bound(frame)),
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
                vec![0u8; frame],
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
                zstd::bulk::Compressor::new(level).expect("zstd compressor"),
                Vec::<u8>::with_capacity(zstd::zstd_safe::compress_bound(frame)),
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
                vec![0u8; frame + 1024],
                vec![0u8; frame],
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
        coding,
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

/// Adds the CPU bounds' rows and JSON (see the module doc) to `sec`;
/// `what` names the data (and how lockbox writes it).
pub fn report_cpu_bounds(sec: &mut Section, b: &CpuBounds, what: &str) {
    let (fl, l) = (b.coding.frame_label(), b.coding.level);
    let on = format!(
        "; on {} frames of {fl} ({}) of {what}",
        b.frames,
        fmt_bytes(b.bytes)
    );
    let rows: [(String, String, Rate, String); 6] = [
        ("seal".into(), "XChaCha20-Poly1305 seal".into(), b.seal, on),
        (
            "open".into(),
            "XChaCha20-Poly1305 open".into(),
            b.open,
            String::new(),
        ),
        (
            format!("zstd{l}_compress"),
            format!("zstd-{l} compress"),
            b.zstd_c,
            format!(", ratio {:.3}", b.zstd_ratio),
        ),
        (
            "zstd_decompress".into(),
            format!("zstd-{l} decompress"),
            b.zstd_d,
            String::new(),
        ),
        (
            "compress_seal".into(),
            format!("zstd-{l} compress+seal"),
            b.pack,
            String::new(),
        ),
        (
            "open_decompress".into(),
            format!("open+zstd-{l} decompress"),
            b.unpack,
            String::new(),
        ),
    ];
    let p = b.coding.key_prefix();
    for (key, step, r, extra) in rows {
        sec.row(
            &format!("bound: {step}, {fl} frames"),
            None,
            Some(r.all),
            None,
            format!("{}{extra}", r.detail()),
        );
        sec.json_f(&format!("{p}{key}_1t_mib_s"), r.one);
        sec.json_f(&format!("{p}{key}_mib_s"), r.all);
    }
    sec.json_u(&format!("{p}frames"), b.frames as u64);
    sec.json_u(&format!("{p}frame_bytes"), b.bytes);
    sec.json_u(&format!("{p}frame_size"), b.coding.frame as u64);
    sec.json_f(&format!("{p}zstd_level"), f64::from(b.coding.level));
    sec.json_f(&format!("{p}zstd{l}_ratio"), b.zstd_ratio);
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

/// Cuts `data` into frames of `coding.frame` bytes (the last may be shorter).
pub fn frames_of(data: &[u8], coding: Coding) -> Vec<Vec<u8>> {
    data.chunks(coding.frame).map(|c| c.to_vec()).collect()
}

/// Open + decompress of an archive's own data frames
/// (`lockbox::testing::data_frames`, each once), read from its file as
/// extraction reads them, on 1 thread and on every core: the bound of
/// decoding "the same frames" an extraction decodes, without its walk.
pub struct ArchiveFrames {
    pub frames: usize,
    pub bytes: u64,
    pub rate: Rate,
}

impl ArchiveFrames {
    pub fn measure(lb: &Lockbox) -> BoxResult<ArchiveFrames> {
        let frames = lockbox::testing::data_frames(lb)?;
        if frames.is_empty() {
            return Err("archive_frames: the archive holds no data frame".into());
        }
        let rate = rate_of(frames.len(), Vec::new, |buf, i| {
            let b = std::mem::take(buf);
            *buf = lockbox::testing::decode_frame(lb, &frames[i], b).expect("decode frame");
            u64::from(frames[i].raw_len)
        });
        Ok(ArchiveFrames {
            frames: frames.len(),
            bytes: frames.iter().map(|f| u64::from(f.raw_len)).sum(),
            rate,
        })
    }

    /// The stage, for fractions of an extraction that delivers `logical`
    /// bytes: the rate per byte delivered at which the frames decode, so
    /// a fraction is the time decoding them takes over the extraction's
    /// time (deduplicated files are delivered more than once from frames
    /// decoded once: rates per plaintext byte would credit that to the
    /// extraction).
    pub fn stage(&self, logical: u64) -> (String, f64) {
        let (what, rate) = self.rate.stage(&format!(
            "open+decompress of the archive's {} frames",
            self.frames
        ));
        let per_delivered = rate * logical as f64 / self.bytes.max(1) as f64;
        (format!("{what}, per byte delivered"), per_delivered)
    }

    /// Its row and JSON (`archive_open_decompress_1t_mib_s`, `..._mib_s`).
    pub fn report(&self, sec: &mut Section) {
        sec.row(
            "bound: open+decompress, the archive's own frames",
            None,
            Some(self.rate.all),
            None,
            format!(
                "{}; {} frames, {} of plaintext, read from the archive",
                self.rate.detail(),
                self.frames,
                fmt_bytes(self.bytes)
            ),
        );
        sec.json_f("archive_open_decompress_1t_mib_s", self.rate.one);
        sec.json_f("archive_open_decompress_mib_s", self.rate.all);
        sec.json_u("archive_frames", self.frames as u64);
    }
}
