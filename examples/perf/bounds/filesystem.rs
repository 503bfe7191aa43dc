//! Filesystem bounds: create + write + close (and open + read + close) of
//! the same number of files of the same sizes as lockbox writes or reads,
//! on 1 thread and on every core.

use std::fs;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Rate, bound_threads};
use crate::fsutil::make_parents;
use crate::report::Section;
use crate::units::MIB;

/// Each filesystem bound is the best of this many passes.
pub const FS_TRIES: usize = 2;

/// Runs `work` on `threads` threads, thread `t` on its share
/// `t*n/threads..(t+1)*n/threads` of `0..n`, and times them all from one
/// start: each thread calls `ready` once its set-up is done. Returns the
/// wall time until the last one finishes.
fn timed_shares<F>(threads: usize, n: usize, work: F) -> io::Result<Duration>
where
    F: Fn(std::ops::Range<usize>, &dyn Fn()) -> io::Result<()> + Sync,
{
    // Each thread reads the clock itself, right after the barrier and when
    // its share is done: a coordinating thread would be a third one on two
    // cores, and could read the clock only once a worker let it run (which
    // made two threads look up to 7 times faster than one).
    let barrier = std::sync::Barrier::new(threads);
    let spans = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || -> io::Result<(Instant, Instant)> {
                    let start = std::cell::Cell::new(None);
                    work(t * n / threads..(t + 1) * n / threads, &|| {
                        barrier.wait();
                        start.set(Some(Instant::now()));
                    })?;
                    let end = Instant::now();
                    Ok((start.get().unwrap_or(end), end))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("fs bound thread panicked"))
            .collect::<io::Result<Vec<_>>>()
    })?;
    let start = spans.iter().map(|s| s.0).min();
    let end = spans.iter().map(|s| s.1).max();
    Ok(match (start, end) {
        (Some(s), Some(e)) => e.saturating_duration_since(s),
        _ => Duration::ZERO,
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
    fs_create_with(root, paths, threads, |f, i| f.write_all(&datas[i]))
}

/// Creates the files at `paths` under `root` (their directories first,
/// untimed), `write(file, i)` filling file `i`, on `threads` threads each
/// timing its own share. Returns the wall time.
fn fs_create_with(
    root: &Path,
    paths: &[String],
    threads: usize,
    write: impl Fn(&mut fs::File, usize) -> io::Result<()> + Sync,
) -> io::Result<Duration> {
    make_parents(root, paths)?;
    timed_shares(threads, paths.len(), |share, ready| {
        ready();
        for i in share {
            write(&mut fs::File::create(root.join(&paths[i]))?, i)?;
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
    fs_create_with(root, paths, threads, |f, i| {
        let mut left = sizes[i];
        while left > 0 {
            let k = left.min(fill.len() as u64) as usize;
            f.write_all(&fill[..k])?;
            left -= k as u64;
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
