//! `add_path`: import a file or a directory tree.
//!
//! The walk is depth-first in name order (the order of the keys), so
//! memory is bounded by the listings of the open directories and three
//! batches of files, not by the tree. Regular files of a batch are opened,
//! stat'ed and (up to 2 MiB) read on the I/O threads (`load`, on
//! `par::io_pool`: many small files are bound by system calls, so every
//! core issues them), two batches ahead of the one the single writer
//! packs, in order; a full pack compresses on the workers while the writer
//! goes on. Larger files stream through `put_reader`'s pipeline. Symlinks
//! are stored, never followed.

mod load;

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use load::{BATCH_FILES, Body, Chunk, DirFds, LoadRules, Loaded, Loading, Source, SourceDir};

use crate::data::bufs::Buffers;
use crate::data::pack::Member;
use crate::error::{Error, Result};
use crate::format::entry::{Content, EntryKind, INLINE_MAX, MAX_TARGET, Record};
use crate::lockbox::Lockbox;
use crate::options::Progress;
use crate::path::{normalize, to_key};

/// Batches loading ahead of the one being stored (measured on that tree:
/// one ahead left the writer waiting 0.25 s for files, two 0.1 s; four
/// gained nothing more). With the one being stored, at most three batches
/// are in memory: 48 MiB in the worst case, of small files.
const LOAD_AHEAD: usize = 2;

/// How `add_path` treats what it cannot store.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Fail on the first unreadable file or non-UTF-8 name instead of
    /// skipping it and reporting it in [`ImportStats::skipped`].
    pub fail_on_skip: bool,
}

/// A source entry that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The source path.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// What `add_path` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Regular files stored.
    pub files: u64,
    /// Directories stored (empty ones included).
    pub dirs: u64,
    /// Symlinks stored.
    pub symlinks: u64,
    /// File bytes stored (before compression).
    pub bytes: u64,
    /// Of `files`, those whose bytes the lockbox already held at their
    /// path (committed before this call): kept where they are, nothing
    /// written for them. Contents of up to 128 bytes, kept in the record
    /// itself, are not counted here or in `shared`.
    pub unchanged: u64,
    /// Of `files`, those whose bytes equal a content stored elsewhere (in
    /// this import, earlier in this session, or in a commit): stored once
    /// and shared.
    pub shared: u64,
    /// Entries not imported: unreadable files, non-UTF-8 or invalid names,
    /// special files (devices, sockets, FIFOs).
    pub skipped: Vec<Skipped>,
    /// Wall time.
    pub duration: Duration,
}

fn mode_of(meta: &Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o7777
    }
    #[cfg(not(unix))]
    {
        if meta.is_dir() {
            0o755
        } else if meta.permissions().readonly() {
            0o444
        } else {
            0o644
        }
    }
}

/// Device and inode of a file, where the platform has them.
fn file_id(meta: &Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

fn mtime_of(meta: &Metadata) -> (i64, u32) {
    match meta.modified() {
        Ok(t) => match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
                if n == 0 {
                    (-s, 0)
                } else {
                    (-s - 1, 1_000_000_000 - n)
                }
            }
        },
        Err(_) => (0, 0),
    }
}

fn record(kind: EntryKind, meta: &Metadata, len: u64, content: Content) -> Record {
    let (mtime, mtime_nanos) = mtime_of(meta);
    Record {
        kind,
        mode: mode_of(meta),
        mtime,
        mtime_nanos,
        len,
        content,
    }
}

struct Importer<'a, F: FnMut(&Progress)> {
    opts: &'a ImportOptions,
    /// The lockbox's own file (device, inode), never imported into itself.
    own_file: Option<(u64, u64)>,
    stats: ImportStats,
    progress: F,
    done: Progress,
    /// Nothing was under the destination when the import began: what it
    /// stages cannot collide with an entry (names in a directory are
    /// unique), so the per-entry lookups are skipped.
    fresh: bool,
    /// Regular files listed but not yet loaded.
    batch: Vec<(Vec<u8>, Source)>,
    /// Buffers for the I/O threads to read into, handed back once stored.
    buffers: Arc<Buffers>,
    /// Directory descriptors held (`load::SourceDir`).
    dir_fds: DirFds,
    /// Batches loading while the one before them is stored, oldest first.
    loading: std::collections::VecDeque<Loading>,
}

impl<F: FnMut(&Progress)> Importer<'_, F> {
    fn skip(&mut self, path: &Path, reason: impl Into<String>) -> Result<()> {
        let reason = reason.into();
        if self.opts.fail_on_skip {
            return Err(Error::Io(std::io::Error::other(format!(
                "{}: {reason}",
                path.display()
            ))));
        }
        self.stats.skipped.push(Skipped {
            path: path.to_path_buf(),
            reason,
        });
        Ok(())
    }

    fn tick(&mut self, bytes: u64) {
        self.done.files += 1;
        self.done.bytes += bytes;
        (self.progress)(&self.done);
    }
}

/// A directory entry: name, and type if the listing gave it.
type Listed = (OsString, Option<fs::FileType>);

/// A directory being walked: its entries not yet visited, its path in the
/// lockbox, and the directory its files are opened from.
type OpenDir = (std::vec::IntoIter<Listed>, String, Arc<SourceDir>);

/// The entries of `dir`, sorted by name, and `dir` opened for its files to
/// be opened from; `None` (reported) if it cannot be listed.
fn list_dir<F: FnMut(&Progress)>(
    dir: PathBuf,
    at: String,
    imp: &mut Importer<'_, F>,
) -> Result<Option<OpenDir>> {
    match fs::read_dir(&dir) {
        Ok(rd) => {
            let mut names: Vec<Listed> = rd
                .filter_map(|e| e.ok())
                // The type comes with the listing on most file systems: no
                // stat call here.
                .map(|e| (e.file_name(), e.file_type().ok()))
                .collect();
            names.sort_by(|a, b| a.0.cmp(&b.0));
            // A directory changed while it was read may list a name twice:
            // each name is visited once (what lets a fresh import skip the
            // collision checks).
            names.dedup_by(|a, b| a.0 == b.0);
            Ok(Some((
                names.into_iter(),
                at,
                Arc::new(SourceDir::open(dir, &imp.dir_fds)),
            )))
        }
        Err(e) => {
            imp.skip(&dir, format!("cannot list directory: {e}"))?;
            Ok(None)
        }
    }
}

/// `dest` joined with `name`, as a validated archive path.
fn child_path(dest: &str, name: &std::ffi::OsStr) -> std::result::Result<String, String> {
    let name = name.to_str().ok_or("name is not valid UTF-8")?;
    let p = if dest.is_empty() {
        name.to_string()
    } else {
        format!("{dest}/{name}")
    };
    normalize(&p, false).map_err(|e| e.to_string())?;
    Ok(p)
}

impl Lockbox {
    /// Imports a file, or a directory's contents, under the directory
    /// `dest` (`""`: the root): `add_path("src", "code")` stores
    /// `src/a.rs` as `code/a.rs`; a single file keeps its name below
    /// `dest`. Keeps modes, modification times, symlinks (stored, never
    /// followed) and empty directories. What cannot be stored is reported
    /// in [`ImportStats::skipped`].
    pub fn add_path(&mut self, src: impl AsRef<Path>, dest: &str) -> Result<ImportStats> {
        self.add_path_with(src, dest, &ImportOptions::default(), |_| {})
    }

    /// [`add_path`](Lockbox::add_path) with options and a progress
    /// callback, called after each entry (files and bytes so far).
    pub fn add_path_with(
        &mut self,
        src: impl AsRef<Path>,
        dest: &str,
        opts: &ImportOptions,
        progress: impl FnMut(&Progress),
    ) -> Result<ImportStats> {
        let started = Instant::now();
        let hits = self.dedup.hits;
        let src = src.as_ref();
        let dest = normalize(dest, true)?.to_string();
        let own_file = self
            .path
            .as_ref()
            .and_then(|p| fs::metadata(p).ok())
            .and_then(|m| file_id(&m));
        let mut imp = Importer {
            opts,
            own_file,
            stats: ImportStats::default(),
            progress,
            done: Progress::default(),
            fresh: false,
            batch: Vec::new(),
            buffers: Arc::new(Buffers::new(load::KEEP_BYTES)),
            dir_fds: DirFds::default(),
            loading: std::collections::VecDeque::new(),
        };
        self.guarded(|lb| {
            if !dest.is_empty() {
                lb.mkdir(&dest)?;
            }
            let meta = fs::symlink_metadata(src)?;
            // Nothing under `dest` yet: no entry the import makes can
            // collide with one there, or be unchanged from one.
            imp.fresh = !lb.has_children(&to_key(&dest))?;
            if meta.is_dir() {
                lb.import_tree(src, &dest, &mut imp)?;
            } else {
                let name = src.file_name().ok_or_else(|| Error::InvalidPath {
                    path: src.display().to_string(),
                    reason: "source has no file name",
                })?;
                let dir = src.parent().unwrap_or(Path::new("")).to_path_buf();
                let source = Source {
                    dir: Arc::new(SourceDir::by_path(dir)),
                    name: name.to_os_string(),
                };
                match child_path(&dest, name) {
                    Ok(p) => lb.import_entry(source, &p, meta, &mut imp)?,
                    Err(reason) => imp.skip(src, reason)?,
                }
                lb.finish_batches(&mut imp)?;
            }
            Ok(())
        })?;
        imp.stats.unchanged = self.dedup.hits.unchanged - hits.unchanged;
        imp.stats.shared = self.dedup.hits.shared - hits.shared;
        imp.stats.duration = started.elapsed();
        Ok(imp.stats)
    }

    fn import_tree<F: FnMut(&Progress)>(
        &mut self,
        root: &Path,
        dest: &str,
        imp: &mut Importer<'_, F>,
    ) -> Result<()> {
        // Pre-order in name order, descending into a directory where its
        // name comes: exactly the order of the keys (the separator sorts
        // before every name byte), so small files are packed in the order
        // extraction and listing visit them, and a pack is decoded once
        // per pass. Memory: the remaining names of each open directory.
        let mut stack: Vec<OpenDir> = Vec::new();
        if let Some(open) = list_dir(root.to_path_buf(), dest.to_string(), imp)? {
            stack.push(open);
        }
        while let Some((names, at, dir)) = stack.last_mut() {
            let Some((name, ft)) = names.next() else {
                stack.pop();
                continue;
            };
            let p = match child_path(at, &name) {
                Ok(p) => p,
                Err(reason) => {
                    imp.skip(&dir.path().join(&name), reason)?;
                    continue;
                }
            };
            if ft.is_some_and(|t| t.is_file()) {
                // Opened, stat'ed and read by the workers.
                let dir = dir.clone();
                self.queue_file(to_key(&p), &p, Source { dir, name }, imp)?;
                continue;
            }
            let path = dir.path().join(&name);
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    imp.skip(&path, e.to_string())?;
                    continue;
                }
            };
            if meta.is_dir() {
                self.stage_dir(&p, &meta, imp.fresh)?;
                imp.stats.dirs += 1;
                imp.tick(0);
                if let Some(open) = list_dir(path, p, imp)? {
                    stack.push(open);
                }
            } else {
                let dir = dir.clone();
                self.import_entry(Source { dir, name }, &p, meta, imp)?;
            }
        }
        self.finish_batches(imp)
    }

    /// Stages the directory `p` (its parents are checked, and what is
    /// there already, unless `fresh`: nothing is under the import's
    /// destination but what it staged itself).
    fn stage_dir(&mut self, p: &str, meta: &Metadata, fresh: bool) -> Result<()> {
        let key = to_key(p);
        let rec = record(EntryKind::Dir, meta, 0, Content::Empty);
        if fresh {
            self.stage(key, rec);
            return Ok(());
        }
        self.check_parents(&key)?;
        match self.lookup(&key)? {
            Some(r) if r.kind != EntryKind::Dir => return Err(Error::AlreadyExists(p.to_string())),
            Some(r) if r == rec => return Ok(()),
            _ => {}
        }
        self.stage(key, rec);
        Ok(())
    }

    /// Stages `rec` at `key` unless the lockbox holds exactly that record
    /// there, committed and not staged since: an unchanged entry of a tree
    /// imported again costs its commit nothing. (`fresh`: nothing is
    /// under the import's destination, so nothing is unchanged.)
    fn stage_changed(&mut self, key: Vec<u8>, rec: Record, fresh: bool) -> Result<()> {
        if !fresh
            && self.committed.toc.root.is_some()
            && !self.toc.contains_key(&key)
            && self.old_toc(&key)?.as_ref() == Some(&rec)
        {
            return Ok(());
        }
        self.stage(key, rec);
        Ok(())
    }

    fn import_entry<F: FnMut(&Progress)>(
        &mut self,
        source: Source,
        p: &str,
        meta: Metadata,
        imp: &mut Importer<'_, F>,
    ) -> Result<()> {
        let key = to_key(p);
        let ft = meta.file_type();
        if ft.is_symlink() {
            let src = source.path();
            let target = match fs::read_link(&src) {
                Ok(t) => t,
                Err(e) => return imp.skip(&src, format!("cannot read symlink: {e}")),
            };
            let Some(target) = target
                .to_str()
                .filter(|t| !t.is_empty() && t.len() <= MAX_TARGET && !t.contains('\0'))
            else {
                return imp.skip(&src, "symlink target is not valid UTF-8 or too long");
            };
            // Its parent is `dest` (made by `add_path`) or a directory this
            // walk staged, both checked already.
            if !imp.fresh {
                self.check_slot_itself(&key, p)?;
            }
            let t = target.as_bytes().to_vec();
            let len = t.len() as u64;
            let rec = record(EntryKind::Symlink, &meta, len, Content::Inline(t));
            self.stage_changed(key, rec, imp.fresh)?;
            imp.stats.symlinks += 1;
            imp.tick(0);
            return Ok(());
        }
        if !ft.is_file() {
            return imp.skip(&source.path(), "not a regular file, directory or symlink");
        }
        self.queue_file(key, p, source, imp)
    }

    /// Adds a regular file to the batch the workers load.
    fn queue_file<F: FnMut(&Progress)>(
        &mut self,
        key: Vec<u8>,
        p: &str,
        src: Source,
        imp: &mut Importer<'_, F>,
    ) -> Result<()> {
        // Its parent is `dest` (made by `add_path`) or a directory this
        // walk staged, both checked already.
        if !imp.fresh {
            self.check_slot_itself(&key, p)?;
        }
        imp.batch.push((key, src));
        if imp.batch.len() >= BATCH_FILES {
            self.flush_batch(imp)?;
        }
        Ok(())
    }

    /// Starts loading the listed batch of files, and stores the oldest
    /// batches until at most `LOAD_AHEAD` are loading: the I/O threads read
    /// the next files while this thread packs the earlier ones.
    fn flush_batch<F: FnMut(&Progress)>(&mut self, imp: &mut Importer<'_, F>) -> Result<()> {
        let batch = std::mem::take(&mut imp.batch);
        let hasher = self.dedup.hasher().clone();
        let rules = LoadRules::new(INLINE_MAX as u64, hasher, imp.buffers.clone());
        if !batch.is_empty() {
            if !imp.fresh {
                self.decode_ahead(batch.iter().map(|(k, _)| k.as_slice()));
            }
            imp.loading.push_back(Loading::start(batch, rules));
        }
        while imp.loading.len() > LOAD_AHEAD {
            self.store_next(imp)?;
        }
        Ok(())
    }

    /// Waits for the oldest batch being loaded and stores it.
    fn store_next<F: FnMut(&Progress)>(&mut self, imp: &mut Importer<'_, F>) -> Result<()> {
        let Some(next) = imp.loading.pop_front() else {
            return Ok(());
        };
        self.store_loaded(next.finish()?, imp)
    }

    /// Loads and stores every file listed so far.
    fn finish_batches<F: FnMut(&Progress)>(&mut self, imp: &mut Importer<'_, F>) -> Result<()> {
        self.flush_batch(imp)?;
        while !imp.loading.is_empty() {
            self.store_next(imp)?;
        }
        Ok(())
    }

    /// Stores loaded files, in order.
    fn store_loaded<F: FnMut(&Progress)>(
        &mut self,
        chunks: Vec<Chunk>,
        imp: &mut Importer<'_, F>,
    ) -> Result<()> {
        for Chunk { buf, files } in chunks {
            for l in files {
                self.store_one(&buf, l, imp)?;
            }
            imp.buffers.give(buf);
        }
        Ok(())
    }

    /// Stores one loaded file of the chunk whose buffer is `buf`.
    fn store_one<F: FnMut(&Progress)>(
        &mut self,
        buf: &[u8],
        l: Loaded,
        imp: &mut Importer<'_, F>,
    ) -> Result<()> {
        let (meta, body) = match &l.data {
            Ok(d) => d,
            Err(e) => return imp.skip(&l.source.path(), format!("cannot read: {e}")),
        };
        if !meta.is_file() {
            // Replaced by something else since the listing.
            return imp.skip(&l.source.path(), "not a regular file, directory or symlink");
        }
        if imp.own_file.is_some() && file_id(meta) == imp.own_file {
            return imp.skip(&l.source.path(), "this is the lockbox being written");
        }
        let member = Member::Toc(l.key.clone());
        let (content, len) = match body.bytes(buf) {
            Some(d) => (self.store_bytes_hashed(member, d, l.hash)?, d.len() as u64),
            None => match l.source.open() {
                Ok(mut f) => match self.unchanged_file(&member, meta.len(), &mut f)? {
                    Some(c) => (c, meta.len()),
                    None => self.store_reader(member, &mut f)?,
                },
                Err(e) => return imp.skip(&l.source.path(), format!("cannot open: {e}")),
            },
        };
        let rec = record(EntryKind::File, meta, len, content);
        self.stage_changed(l.key, rec, imp.fresh)?;
        if let Ok((_, Body::Own(v))) = l.data {
            imp.buffers.give(v);
        }
        imp.stats.files += 1;
        imp.stats.bytes += len;
        imp.tick(len);
        Ok(())
    }
}
