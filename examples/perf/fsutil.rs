//! Filesystem helpers: flushing before a phase that writes files, making
//! parent directories, and removing the run's scratch trees.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::bounds::bound_threads;

/// Flushes the filesystem holding `dir` (syncfs), so a phase that writes
/// files does not pay for the previous phase's dirty data and deletions.
/// Untimed; best effort.
pub fn settle(dir: &Path) {
    #[cfg(target_os = "linux")]
    if let Ok(d) = fs::File::open(dir) {
        let _ = rustix::fs::syncfs(&d);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = dir;
}

/// Creates the parent directories of `paths` under `root`.
pub fn make_parents(root: &Path, paths: &[String]) -> io::Result<()> {
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

/// Removes the directory trees `roots` (and counts the files in them), on
/// several threads: deleting many small files is slow on some filesystems
/// (e.g. ext4 mounted with `discard` and no journal discards each file's
/// blocks as it goes), and concurrent deletions overlap those waits.
pub fn remove_trees(roots: &[PathBuf]) -> io::Result<u64> {
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
pub fn count_files(p: &Path) -> io::Result<u64> {
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

pub fn remove_dir_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The type of the filesystem holding `path` ("ext4", "tmpfs", ...), from
/// the longest mount point of /proc/self/mounts that contains it (Linux);
/// `None` elsewhere. Extraction of many small files depends on it far more
/// than on anything lockbox does, so the tree rows name it.
pub fn fs_type(path: &Path) -> Option<String> {
    let path = fs::canonicalize(path).ok()?;
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(mnt), Some(kind)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        // Mount points escape spaces as \040.
        let mnt = mnt.replace("\\040", " ");
        if path.starts_with(&mnt) && best.as_ref().is_none_or(|(len, _)| mnt.len() >= *len) {
            best = Some((mnt.len(), kind.to_string()));
        }
    }
    best.map(|(_, k)| k)
}
