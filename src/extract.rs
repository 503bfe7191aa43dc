//! `extract_to_directory`: restore a tree (or a prefix of it) to disk, and
//! `extract_all`: the same walk into a callback, for callers that want no
//! files.
//!
//! Safety rules (requirements §4): names are validated again; nothing is
//! written outside the destination; no existing symlink is followed (every
//! directory component is created or checked with `symlink_metadata`,
//! files are created with `O_CREAT | O_EXCL`, which never follows one);
//! the archive's own symlinks are created last, after every file, so no
//! write can pass through them; symlinks whose target leaves the
//! destination are refused unless allowed; modes lose setuid, setgid and
//! sticky bits. A destination that does not exist is built in a sibling
//! staging directory and renamed into place at the end, so a failed run
//! leaves nothing at `dest`. Limits are checked in a first pass over the
//! metadata, before anything is written.
//!
//! Speed: files are written by a bounded set of worker threads; the files
//! of one packed frame (within a chunk of 2,048 files) go to one worker,
//! and the workers share the packed frames decoded last (16 MiB), so a
//! frame is decoded once per pass even when deduplicated files far apart
//! share it; each file is created with its final mode, large ones
//! preallocated, and written with positional writes straight from the
//! decoded frames.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use rayon::prelude::*;

use crate::data::packs::PackCache;
use crate::error::{Error, Result};
use crate::format::entry::{Content, EntryKind, Record};
use crate::lockbox::Lockbox;
use crate::options::Progress;
use crate::path::{normalize, to_key};
use crate::toc::key_path_owned;

/// Files handed to the workers at a time.
pub(crate) const CHUNK: usize = 2048;
/// Files at least this large are preallocated before writing.
const PREALLOCATE_FROM: u64 = 1 << 20;

/// Options of [`Lockbox::extract_to_directory`]. The default has every
/// safety rule on, limits generous enough for a large source tree, and
/// modes restored.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExtractOptions {
    /// Only entries below this directory (`""`: all); paths are written
    /// relative to it.
    pub prefix: String,
    /// Allow symlinks whose target is absolute or leaves the destination.
    pub allow_escaping_symlinks: bool,
    /// Create files and directories with the stored permission bits (less
    /// setuid/setgid/sticky, and subject to the umask).
    pub restore_modes: bool,
    /// Set modification times from the archive.
    pub restore_mtimes: bool,
    /// Replace files and symlinks that already exist in the destination
    /// (the existing entry itself is removed, never followed).
    pub overwrite: bool,
    /// Most entries to extract.
    pub max_files: u64,
    /// Largest single file.
    pub max_file_bytes: u64,
    /// Most bytes in all.
    pub max_total_bytes: u64,
    /// Worker threads writing files (0: one per core, at most 8).
    pub threads: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            prefix: String::new(),
            allow_escaping_symlinks: false,
            restore_modes: true,
            restore_mtimes: false,
            overwrite: false,
            max_files: 10_000_000,
            max_file_bytes: 64 << 30,
            max_total_bytes: 1 << 40,
            threads: 0,
        }
    }
}

impl ExtractOptions {
    /// Sets `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Sets `restore_mtimes`.
    pub fn restore_mtimes(mut self, on: bool) -> Self {
        self.restore_mtimes = on;
        self
    }
    /// Sets `allow_escaping_symlinks`.
    pub fn allow_escaping_symlinks(mut self, on: bool) -> Self {
        self.allow_escaping_symlinks = on;
        self
    }
    /// Sets `overwrite`.
    pub fn overwrite(mut self, on: bool) -> Self {
        self.overwrite = on;
        self
    }
    /// Sets the three limits.
    pub fn limits(mut self, max_files: u64, max_file_bytes: u64, max_total_bytes: u64) -> Self {
        self.max_files = max_files;
        self.max_file_bytes = max_file_bytes;
        self.max_total_bytes = max_total_bytes;
        self
    }
    /// Sets `threads`.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }
}

/// What an extraction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// Regular files written.
    pub files: u64,
    /// Directories created (explicit and implied).
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// File bytes written.
    pub bytes: u64,
    /// Wall time.
    pub duration: Duration,
}

pub(crate) fn limit(what: String, limit: u64) -> Error {
    Error::LimitExceeded { what, limit }
}

fn unsafe_path(path: &str, reason: &'static str) -> Error {
    Error::InvalidPath {
        path: path.to_string(),
        reason,
    }
}

/// Resolves, lexically, a symlink at `rel` (relative to the root) pointing
/// to `target`. Returns the directories the resolution passes through
/// (relative to the root), or `None` if it leaves the root. Lexical
/// resolution is only sound if none of those is itself a symlink; the
/// caller checks that.
fn resolve_inside(rel: &str, target: &str) -> Option<Vec<String>> {
    if Path::new(target).is_absolute() || target.contains('\\') {
        return None;
    }
    let mut at: Vec<&str> = rel.split('/').collect();
    at.pop();
    let comps: Vec<Component<'_>> = Path::new(target).components().collect();
    let mut passed = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        match c {
            Component::Normal(n) => at.push(n.to_str()?),
            Component::ParentDir => {
                at.pop()?;
            }
            Component::CurDir => {}
            _ => return None,
        }
        if i + 1 < comps.len() && !at.is_empty() {
            passed.push(at.join("/"));
        }
    }
    Some(passed)
}

fn system_time(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        SystemTime::UNIX_EPOCH - Duration::new(secs.unsigned_abs(), 0) + Duration::new(0, nanos)
    }
}

/// Creates directories without following symlinks.
struct Dirs {
    root: PathBuf,
    known: HashSet<String>,
    created: u64,
}

impl Dirs {
    /// Makes sure `rel` (a directory path relative to the root) exists as a
    /// real directory, creating missing components with `mode`.
    fn ensure(&mut self, rel: &str, mode: Option<u32>) -> Result<()> {
        if rel.is_empty() || self.known.contains(rel) {
            return Ok(());
        }
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.ensure(parent, None)?;
        }
        let path = self.root.join(rel);
        let mut b = fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(mode.unwrap_or(0o755) & 0o777);
        }
        #[cfg(not(unix))]
        let _ = mode;
        match b.create(&path) {
            Ok(()) => self.created += 1,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let m = fs::symlink_metadata(&path)?;
                if !m.file_type().is_dir() {
                    return Err(unsafe_path(
                        rel,
                        "exists in the destination and is not a directory (symlinks are never followed)",
                    ));
                }
            }
            Err(e) => return Err(Error::Io(e)),
        }
        self.known.insert(rel.to_string());
        Ok(())
    }
}

/// A file to write: its path relative to the root and its record.
/// Whether two records' bytes are in the same packed frame.
fn same_pack(a: &Record, b: &Record) -> bool {
    match (&a.content, &b.content) {
        (Content::Packed { frame: x, .. }, Content::Packed { frame: y, .. }) => {
            x.offset == y.offset
        }
        _ => false,
    }
}

struct Job {
    rel: String,
    rec: Record,
}

/// What the workers of one extraction share: the progress so far, and the
/// packed frames decoded last.
struct Shared {
    progress: std::sync::Mutex<Progress>,
    packs: PackCache,
}

impl Lockbox {
    /// Every entry below `prefix`, as (path relative to it, record).
    pub(crate) fn extraction_list(
        &self,
        prefix: &str,
    ) -> Result<impl Iterator<Item = Result<(String, Record)>> + '_> {
        let p = normalize(prefix, true)?.to_string();
        let strip = if p.is_empty() { 0 } else { p.len() + 1 };
        Ok(self.subtree(&to_key(&p))?.map(move |item| {
            let (k, r) = item?;
            // Validated again (`key_path_owned` refuses any key that is not a
            // normalized path): a hostile archive may carry names `put`
            // refuses. What follows the prefix is then valid too.
            let mut rel = key_path_owned(k)?;
            if rel.len() <= strip || !rel.is_char_boundary(strip) {
                return Err(Error::corrupt("entry outside its prefix", 0));
            }
            rel.drain(..strip);
            Ok((rel, r))
        }))
    }

    fn check_limits(&self, o: &ExtractOptions) -> Result<()> {
        let (mut files, mut total) = (0u64, 0u64);
        for item in self.extraction_list(&o.prefix)? {
            let (rel, r) = item?;
            files += 1;
            if files > o.max_files {
                return Err(limit("entries to extract".into(), o.max_files));
            }
            if r.kind == EntryKind::File {
                if r.len > o.max_file_bytes {
                    return Err(limit(format!("size of {rel}"), o.max_file_bytes));
                }
                total = total.saturating_add(r.len);
                if total > o.max_total_bytes {
                    return Err(limit("bytes to extract".into(), o.max_total_bytes));
                }
            }
        }
        Ok(())
    }

    /// Extracts the tree (or `opts.prefix`) into `dest`, following every
    /// rule of requirements §4 (see the module docs).
    pub fn extract_to_directory(
        &self,
        dest: impl AsRef<Path>,
        opts: &ExtractOptions,
    ) -> Result<ExtractStats> {
        self.extract_to_directory_with_progress(dest, opts, |_| {})
    }

    /// [`extract_to_directory`](Lockbox::extract_to_directory) with a
    /// progress callback (files and bytes done, and totals).
    pub fn extract_to_directory_with_progress(
        &self,
        dest: impl AsRef<Path>,
        opts: &ExtractOptions,
        progress: impl Fn(&Progress) + Sync,
    ) -> Result<ExtractStats> {
        let started = Instant::now();
        self.check_limits(opts)?;
        let dest = dest.as_ref();
        let staging = match fs::symlink_metadata(dest) {
            Ok(m) if m.file_type().is_dir() => None,
            Ok(_) => {
                return Err(unsafe_path(
                    &dest.display().to_string(),
                    "destination exists and is not a directory",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let name = dest.file_name().ok_or_else(|| {
                    unsafe_path(&dest.display().to_string(), "destination has no name")
                })?;
                let mut tmp = name.to_os_string();
                let mut r = [0u8; 6];
                crate::crypto::seal::fill_random(&mut r)?;
                tmp.push(format!(
                    ".lockbox-extract-{}",
                    r.iter().map(|b| format!("{b:02x}")).collect::<String>()
                ));
                let t = dest.with_file_name(tmp);
                fs::create_dir(&t)?;
                Some(t)
            }
            Err(e) => return Err(Error::Io(e)),
        };
        let root = staging.clone().unwrap_or_else(|| dest.to_path_buf());
        let result = self.extract_into(&root, opts, &progress);
        match (&staging, result) {
            (Some(t), Ok(mut stats)) => {
                if let Err(e) = fs::rename(t, dest) {
                    let _ = fs::remove_dir_all(t);
                    return Err(Error::Io(e));
                }
                stats.duration = started.elapsed();
                Ok(stats)
            }
            (Some(t), Err(e)) => {
                let _ = fs::remove_dir_all(t);
                Err(e)
            }
            (None, Ok(mut stats)) => {
                stats.duration = started.elapsed();
                Ok(stats)
            }
            (None, Err(e)) => Err(e),
        }
    }

    fn extract_into(
        &self,
        root: &Path,
        o: &ExtractOptions,
        progress: &(impl Fn(&Progress) + Sync),
    ) -> Result<ExtractStats> {
        let mut stats = ExtractStats::default();
        let mut dirs = Dirs {
            root: root.to_path_buf(),
            known: HashSet::new(),
            created: 0,
        };
        let mut symlinks: Vec<(String, String)> = Vec::new();
        let mut dir_times: Vec<(String, SystemTime)> = Vec::new();
        let mut jobs: Vec<Job> = Vec::new();
        let mode = |m: u32| {
            if o.restore_modes {
                Some(m & 0o777)
            } else {
                None
            }
        };
        let threads = match o.threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8),
            n => n,
        };
        let done = Shared {
            progress: std::sync::Mutex::new(Progress::default()),
            packs: PackCache::default(),
        };
        for item in self.extraction_list(&o.prefix)? {
            let (rel, rec) = item?;
            match rec.kind {
                EntryKind::Dir => {
                    dirs.ensure(&rel, mode(rec.mode))?;
                    if o.restore_mtimes {
                        dir_times.push((rel, system_time(rec.mtime, rec.mtime_nanos)));
                    }
                }
                EntryKind::Symlink => {
                    let target = match &rec.content {
                        crate::format::entry::Content::Inline(t) => String::from_utf8(t.clone())
                            .map_err(|_| unsafe_path(&rel, "symlink target is not UTF-8"))?,
                        _ => return Err(Error::corrupt("symlink without a target", 0)),
                    };
                    if !o.allow_escaping_symlinks && resolve_inside(&rel, &target).is_none() {
                        return Err(unsafe_path(
                            &rel,
                            "symlink target leaves the destination (allow_escaping_symlinks is off)",
                        ));
                    }
                    if let Some((parent, _)) = rel.rsplit_once('/') {
                        dirs.ensure(parent, None)?;
                    }
                    symlinks.push((rel, target));
                }
                EntryKind::File => {
                    if let Some((parent, _)) = rel.rsplit_once('/') {
                        dirs.ensure(parent, None)?;
                    }
                    jobs.push(Job { rel, rec });
                    if jobs.len() >= CHUNK {
                        self.write_jobs(
                            root,
                            std::mem::take(&mut jobs),
                            o,
                            threads,
                            &mut stats,
                            &done,
                            progress,
                        )?;
                    }
                }
            }
        }
        self.write_jobs(root, jobs, o, threads, &mut stats, &done, progress)?;
        // Symlinks last: no file or directory above was written through one.
        // A target that passes through another symlink (of the archive or
        // already in the destination) cannot be judged lexically: refused.
        if !o.allow_escaping_symlinks {
            let links: HashSet<&str> = symlinks.iter().map(|(r, _)| r.as_str()).collect();
            for (rel, target) in &symlinks {
                for dir in resolve_inside(rel, target).unwrap_or_default() {
                    let on_disk = fs::symlink_metadata(root.join(&dir))
                        .is_ok_and(|m| m.file_type().is_symlink());
                    if links.contains(dir.as_str()) || on_disk {
                        return Err(unsafe_path(
                            rel,
                            "symlink target passes through another symlink (allow_escaping_symlinks is off)",
                        ));
                    }
                }
            }
        }
        for (rel, target) in symlinks {
            let path = root.join(&rel);
            if o.overwrite {
                remove_existing(&path)?;
            }
            make_symlink(&target, &path)?;
            stats.symlinks += 1;
        }
        // Directory times last, deepest first: writing inside changes them.
        for (rel, t) in dir_times.into_iter().rev() {
            File::open(root.join(&rel))?.set_modified(t)?;
        }
        stats.dirs = dirs.created;
        Ok(stats)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_jobs(
        &self,
        root: &Path,
        jobs: Vec<Job>,
        o: &ExtractOptions,
        threads: usize,
        stats: &mut ExtractStats,
        done: &Shared,
        progress: &(impl Fn(&Progress) + Sync),
    ) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        // Files whose bytes share a packed frame are written together, where
        // the first of them comes, so each frame is decoded once, by the
        // worker that writes all of them; groups are then spread over the
        // workers as they free up. (Deduplicated files in other directories
        // share packs far from their own: left in place, they made a pass
        // over a Python tree decode 1,264 frames for 594.)
        let mut first: HashMap<u64, usize> = HashMap::new();
        let mut order: Vec<(usize, Job)> = jobs
            .into_iter()
            .enumerate()
            .map(|(i, j)| match &j.rec.content {
                Content::Packed { frame, .. } => (*first.entry(frame.offset).or_insert(i), j),
                _ => (i, j),
            })
            .collect();
        order.sort_by_key(|(g, _)| *g);
        let jobs: Vec<Job> = order.into_iter().map(|(_, j)| j).collect();
        let mut groups: Vec<&[Job]> = Vec::new();
        let mut start = 0;
        for i in 1..=jobs.len() {
            let same = i < jobs.len() && same_pack(&jobs[i - 1].rec, &jobs[i].rec);
            if !same {
                groups.push(&jobs[start..i]);
                start = i;
            }
        }
        let write = |g: &&[Job]| self.write_files(root, g, o, done, progress);
        let results: Vec<Result<(u64, u64)>> = if threads <= 1 || jobs.len() < 16 {
            groups.iter().map(write).collect()
        } else if threads == rayon::current_num_threads() {
            groups.par_iter().map(write).collect()
        } else {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| Error::Io(io::Error::other(e.to_string())))?
                .install(|| groups.par_iter().map(write).collect())
        };
        for r in results {
            let (files, bytes) = r?;
            stats.files += files;
            stats.bytes += bytes;
        }
        Ok(())
    }

    /// Writes a run of files (one worker).
    fn write_files(
        &self,
        root: &Path,
        jobs: &[Job],
        o: &ExtractOptions,
        done: &Shared,
        progress: &(impl Fn(&Progress) + Sync),
    ) -> Result<(u64, u64)> {
        let (mut files, mut bytes) = (0u64, 0u64);
        for job in jobs {
            let path = root.join(&job.rel);
            if o.overwrite {
                remove_existing(&path)?;
            }
            let mut oo = OpenOptions::new();
            oo.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                oo.mode(if o.restore_modes {
                    job.rec.mode & 0o777
                } else {
                    0o644
                });
            }
            let f = oo.open(&path).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => Error::AlreadyExists(job.rel.clone()),
                _ => Error::Io(e),
            })?;
            let len = job.rec.len;
            self.check_plausible_len(&job.rec)?;
            if len >= PREALLOCATE_FROM {
                preallocate(&f, len)?;
            }
            // Straight from the decoded frame to the file: one positional
            // write per frame, no intermediate buffer.
            match &job.rec.content {
                Content::Packed { frame, offset } => {
                    let (bytes, at) = done.packs.member(&self.store, frame, *offset, len)?;
                    write_all_at(&f, &bytes[at], 0)?;
                }
                _ => self.visit_record(&job.rec, |at, bytes| Ok(write_all_at(&f, bytes, at)?))?,
            }
            if o.restore_mtimes {
                f.set_modified(system_time(job.rec.mtime, job.rec.mtime_nanos))?;
            }
            files += 1;
            bytes += len;
            let mut d = done.progress.lock().unwrap_or_else(|e| e.into_inner());
            d.files += 1;
            d.bytes += len;
            progress(&d);
        }
        Ok((files, bytes))
    }
}

fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Err(Error::AlreadyExists(path.display().to_string())),
        Ok(_) => Ok(fs::remove_file(path)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(e)),
    }
}

#[cfg(unix)]
fn make_symlink(target: &str, path: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => Error::AlreadyExists(path.display().to_string()),
        _ => Error::Io(e),
    })
}

#[cfg(not(unix))]
fn make_symlink(_target: &str, path: &Path) -> Result<()> {
    Err(Error::Unsupported("symlinks are extracted on Unix only")).map_err(|e| {
        let _ = path;
        e
    })
}

#[cfg(unix)]
fn write_all_at(f: &File, data: &[u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, data, at)
}

#[cfg(not(unix))]
fn write_all_at(f: &File, data: &[u8], at: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = f;
    f.seek(SeekFrom::Start(at))?;
    f.write_all(data)
}

/// Reserves the file's blocks up front (a real allocation where the
/// filesystem supports it, else just the length).
fn preallocate(f: &File, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if rustix::fs::fallocate(f, rustix::fs::FallocateFlags::empty(), 0, len).is_ok() {
        return Ok(());
    }
    f.set_len(len)
}
