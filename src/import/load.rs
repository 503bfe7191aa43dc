//! The I/O side of an import: regular files opened, stat'ed, read and
//! hashed on the I/O threads (`par::io_pool`), a batch at a time, ahead of
//! the writer that packs them.
//!
//! Files are opened relative to their directory's descriptor where the
//! platform allows it (Linux: `openat`, one path component to resolve
//! instead of the whole path), never following a symlink and never
//! blocking on a FIFO that replaced a file since the listing. A batch is
//! cut into chunks of [`CHUNK_FILES`] files, each loaded in order by one
//! task into one buffer rather than one per file (a file's buffer was
//! allocated on an I/O thread and freed on the writer's, which cost glibc
//! a locked free each); the writer hands the buffers back once it stored
//! their files, and the I/O threads read into them again
//! (`data::bufs::Buffers`).

use std::ffi::OsString;
use std::fs::{File, Metadata};
#[cfg(not(unix))]
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use crate::data::bufs::Buffers;
use crate::data::dedup::ContentHasher;
use crate::error::{Error, Result};
use crate::par::{io_pool, par_map_owned};

/// Regular files loaded together by the I/O threads.
pub(super) const BATCH_FILES: usize = 256;
/// Files one task of a batch loads in order, into one buffer: few enough
/// that a batch keeps every I/O thread busy to its end, enough that the
/// tasks' scheduling and buffers cost little per file.
const CHUNK_FILES: usize = 16;
/// Files smaller than this are always read whole by the I/O threads (a batch
/// holds at most 256 × 64 KiB of them), into their chunk's buffer.
const LOAD_SMALL: u64 = 64 << 10;
/// Larger files up to this size are read whole by the I/O threads too while
/// the batch's budget lasts, each into a buffer of its own; the rest are
/// streamed by the writer. (On a 46k-file Python tree, files of 64 KiB and
/// more hold more than half the bytes: read by the writer alone, they kept
/// it from packing.)
const LOAD_MAX: u64 = 2 << 20;
/// Bytes one batch may hold (its small files alone hold at most as much).
const LOAD_BUDGET: u64 = 16 << 20;

/// Bytes of buffers kept for reuse ([`Buffers`]): one batch's budget.
pub(super) const KEEP_BYTES: usize = LOAD_BUDGET as usize;
/// Capacity a chunk's buffer starts with when none is kept.
const CHUNK_START: usize = 16 << 10;

/// What the I/O threads read whole, and which bytes they hash.
pub(super) struct LoadRules {
    /// Bytes the batch may still hold.
    budget: AtomicU64,
    /// Contents longer than this are stored apart from their record (and
    /// deduplicated): only those are hashed.
    hash_above: u64,
    hasher: ContentHasher,
    buffers: Arc<Buffers>,
}

impl LoadRules {
    pub(super) fn new(hash_above: u64, hasher: ContentHasher, buffers: Arc<Buffers>) -> LoadRules {
        LoadRules {
            budget: AtomicU64::new(LOAD_BUDGET),
            hash_above,
            hasher,
            buffers,
        }
    }

    /// Whether a file of `len` bytes is read whole (taking its share of
    /// the budget): always when small, while the budget lasts up to
    /// `LOAD_MAX`.
    fn read_whole(&self, len: u64) -> bool {
        if len >= LOAD_MAX {
            return false;
        }
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                b.checked_sub(len).or((len < LOAD_SMALL).then_some(0))
            })
            .is_ok()
    }
}

/// Directory descriptors an import holds open at most ([`DirFds`]): the
/// walk's open directories and those of the files in the batches loading.
/// (A tree of one file per directory would otherwise hold one per file of
/// three batches, 768, near the usual limit of 1,024 descriptors a process
/// may open: the application's own opens, and the I/O threads' opens of
/// the files themselves, would fail.)
const MAX_DIR_FDS: usize = 64;

/// How many directory descriptors an import holds; past `MAX_DIR_FDS`, a
/// directory's files are opened by path.
pub(super) type DirFds = Arc<std::sync::atomic::AtomicUsize>;

/// A directory being imported: its path, and (Linux) a descriptor its
/// files are opened from.
pub(super) struct SourceDir {
    path: PathBuf,
    #[cfg(target_os = "linux")]
    fd: Option<(std::os::fd::OwnedFd, DirFds)>,
}

impl SourceDir {
    /// The directory at `path`, listed already; without a descriptor (its
    /// files then opened by path) if it cannot be opened or the import
    /// holds `MAX_DIR_FDS` already (`held`).
    pub(super) fn open(path: PathBuf, held: &DirFds) -> SourceDir {
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{Mode, OFlags};
            if held.fetch_add(1, Ordering::Relaxed) >= MAX_DIR_FDS {
                held.fetch_sub(1, Ordering::Relaxed);
                return SourceDir { path, fd: None };
            }
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            match rustix::fs::open(&path, flags, Mode::empty()) {
                Ok(fd) => SourceDir {
                    path,
                    fd: Some((fd, held.clone())),
                },
                Err(_) => {
                    held.fetch_sub(1, Ordering::Relaxed);
                    SourceDir { path, fd: None }
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = held;
            SourceDir { path }
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The directory at `path`, its files opened by path (a file imported
    /// on its own).
    pub(super) fn by_path(path: PathBuf) -> SourceDir {
        SourceDir {
            path,
            #[cfg(target_os = "linux")]
            fd: None,
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for SourceDir {
    fn drop(&mut self) {
        if let Some((_, held)) = &self.fd {
            held.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A file to import: its directory and name.
pub(super) struct Source {
    pub dir: Arc<SourceDir>,
    pub name: OsString,
}

impl Source {
    /// Its path, for reports and errors.
    pub(super) fn path(&self) -> PathBuf {
        self.dir.path.join(&self.name)
    }

    /// Opens it for reading: a symlink that replaced it is not followed,
    /// and a FIFO does not block the open (its metadata then says it is
    /// not a regular file).
    pub(super) fn open(&self) -> std::io::Result<File> {
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{Mode, OFlags};
            let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
            let fd = match &self.dir.fd {
                Some((dir, _)) => {
                    rustix::fs::openat(dir, self.name.as_os_str(), flags, Mode::empty())
                }
                None => rustix::fs::open(self.path(), flags, Mode::empty()),
            };
            Ok(File::from(fd?))
        }
        #[cfg(not(target_os = "linux"))]
        File::open(self.path())
    }
}

/// Where a loaded file's bytes are.
pub(super) enum Body {
    /// Not read: too large to read whole, streamed by the writer.
    Streamed,
    /// In its chunk's buffer.
    Chunk(Range<usize>),
    /// In a buffer of its own (a larger file read whole).
    Own(Vec<u8>),
}

/// One regular file opened, stat'ed and (if small) read by an I/O thread.
pub(super) struct Loaded {
    pub key: Vec<u8>,
    /// Its metadata and bytes.
    pub data: std::io::Result<(Metadata, Body)>,
    /// The bytes' deduplication hash, computed on the I/O thread too.
    pub hash: Option<[u8; 32]>,
    pub source: Source,
}

/// Files of a batch loaded in order by one task.
pub(super) struct Chunk {
    /// The bytes of its files read into [`Body::Chunk`] ranges.
    pub buf: Vec<u8>,
    pub files: Vec<Loaded>,
}

impl Body {
    /// The bytes of a file of the chunk whose buffer is `buf`, if it was
    /// read whole.
    pub(super) fn bytes<'a>(&'a self, buf: &'a [u8]) -> Option<&'a [u8]> {
        match self {
            Body::Streamed => None,
            Body::Chunk(r) => Some(&buf[r.clone()]),
            Body::Own(v) => Some(v),
        }
    }
}

/// Opens a file, takes its metadata from the open file (the system call a
/// stat before the open would cost anyway, but off the writer), and reads
/// it whole if `rules` say so: into `buf` if small.
fn load(
    source: &Source,
    rules: &LoadRules,
    buf: &mut Vec<u8>,
) -> std::io::Result<(Metadata, Body)> {
    let f = source.open()?;
    let meta = f.metadata()?;
    if !meta.is_file() || !rules.read_whole(meta.len()) {
        return Ok((meta, Body::Streamed));
    }
    let len = meta.len() as usize;
    // Read with the length known: one `read` per small file, nothing
    // probed past it. Like tar, a file is stored with the length it had
    // when it was opened; one that shrank since is reported as unreadable.
    let shrank = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            std::io::Error::new(e.kind(), "the file shrank while it was imported")
        }
        _ => e,
    };
    if (len as u64) < LOAD_SMALL {
        let start = buf.len();
        buf.resize(start + len, 0);
        if let Err(e) = read_all(&f, &mut buf[start..]) {
            buf.truncate(start);
            return Err(shrank(e));
        }
        Ok((meta, Body::Chunk(start..start + len)))
    } else {
        let mut own = rules.buffers.take_len(len);
        if let Err(e) = read_all(&f, &mut own) {
            rules.buffers.give(own);
            return Err(shrank(e));
        }
        Ok((meta, Body::Own(own)))
    }
}

/// Fills `buf` from the start of `f`. Positional reads where the platform
/// has them: a plain `read` of a file whose descriptor table is shared by
/// threads takes the file's position lock first (1 % of a small-file
/// import's samples).
fn read_all(f: &File, buf: &mut [u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(f, buf, 0)
    }
    #[cfg(not(unix))]
    {
        let mut f = f;
        f.read_exact(buf)
    }
}

/// Loads `files` in order into one chunk, with the content hashes of what
/// is stored apart from its record (keyed by `rules.hasher`, see
/// `data::dedup`).
fn load_chunk(files: Vec<(Vec<u8>, Source)>, rules: &LoadRules) -> Chunk {
    let mut chunk = Chunk {
        buf: {
            let mut b = rules.buffers.take(CHUNK_START);
            b.clear();
            b
        },
        files: Vec::with_capacity(files.len()),
    };
    for (key, source) in files {
        let data = load(&source, rules, &mut chunk.buf);
        let hash = match &data {
            Ok((_, body)) => body
                .bytes(&chunk.buf)
                .filter(|d| d.len() as u64 > rules.hash_above)
                .map(|d| rules.hasher.hash(d)),
            Err(_) => None,
        };
        chunk.files.push(Loaded {
            key,
            data,
            hash,
            source,
        });
    }
    chunk
}

/// Loads `batch` in chunks on the current pool's threads, keeping order.
fn load_batch(batch: Vec<(Vec<u8>, Source)>, rules: &LoadRules) -> Vec<Chunk> {
    let mut chunks = Vec::with_capacity(batch.len().div_ceil(CHUNK_FILES));
    let mut rest = batch.into_iter();
    loop {
        let chunk: Vec<_> = rest.by_ref().take(CHUNK_FILES).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    par_map_owned(chunks, |c| load_chunk(c, rules))
}

/// A batch of files loading on the I/O threads while the writer stores the
/// one before.
pub(super) enum Loading {
    Ready(Vec<Chunk>),
    Pending(mpsc::Receiver<Vec<Chunk>>),
}

impl Loading {
    /// Starts loading `batch` on the I/O threads (`par::io_pool`). Loads
    /// it at once when called on a worker thread itself, which must not
    /// wait for work queued behind it.
    pub(super) fn start(batch: Vec<(Vec<u8>, Source)>, rules: LoadRules) -> Loading {
        let pool = match io_pool() {
            Some(p) if rayon::current_thread_index().is_none() => p,
            _ => return Loading::Ready(load_batch(batch, &rules)),
        };
        let (tx, rx) = mpsc::sync_channel(1);
        pool.spawn(move || {
            // The receiver is gone only if the import stopped early.
            let _ = tx.send(load_batch(batch, &rules));
        });
        Loading::Pending(rx)
    }

    pub(super) fn finish(self) -> Result<Vec<Chunk>> {
        match self {
            Loading::Ready(v) => Ok(v),
            Loading::Pending(rx) => rx.recv().map_err(|_| {
                Error::Io(std::io::Error::other(
                    "a worker thread stopped while loading files",
                ))
            }),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Read;

    use super::*;

    fn source(dir: &Arc<SourceDir>, name: &str) -> Source {
        Source {
            dir: dir.clone(),
            name: name.into(),
        }
    }

    /// A file is opened from its directory's descriptor; a symlink or a
    /// FIFO that took a file's place after the listing is neither followed
    /// nor waited on.
    #[test]
    fn open_neither_follows_nor_blocks() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), b"bytes").unwrap();
        std::os::unix::fs::symlink("f", tmp.path().join("link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            tmp.path().join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let held = DirFds::default();
        let dir = Arc::new(SourceDir::open(tmp.path().to_path_buf(), &held));
        assert!(dir.fd.is_some());
        let mut s = String::new();
        source(&dir, "f")
            .open()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "bytes");
        let e = source(&dir, "link").open().unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::LOOP.raw_os_error())
        );
        let f = source(&dir, "fifo").open().unwrap();
        assert!(!f.metadata().unwrap().is_file());
        // Loaded, it is reported (by the writer) as not a regular file.
        let rules = LoadRules::new(
            0,
            ContentHasher::new(&[1; 32]),
            Arc::new(Buffers::new(KEEP_BYTES)),
        );
        let chunk = load_chunk(vec![(b"k".to_vec(), source(&dir, "fifo"))], &rules);
        let (meta, body) = chunk.files[0].data.as_ref().unwrap();
        assert!(!meta.is_file() && matches!(body, Body::Streamed));

        // Without a descriptor (a file imported on its own): the same.
        let by_path = Arc::new(SourceDir::by_path(tmp.path().to_path_buf()));
        assert!(source(&by_path, "link").open().is_err());
        assert!(source(&by_path, "f").open().is_ok());
    }

    /// At most `MAX_DIR_FDS` directory descriptors are held; past that a
    /// directory's files are opened by path, and a dropped directory frees
    /// its slot.
    #[test]
    fn directory_descriptors_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), b"x").unwrap();
        let held = DirFds::default();
        let open = || Arc::new(SourceDir::open(tmp.path().to_path_buf(), &held));
        let dirs: Vec<_> = (0..MAX_DIR_FDS).map(|_| open()).collect();
        assert!(dirs.iter().all(|d| d.fd.is_some()));
        let over = open();
        assert!(over.fd.is_none());
        assert!(source(&over, "f").open().is_ok(), "opened by path");
        assert_eq!(held.load(Ordering::Relaxed), MAX_DIR_FDS);
        drop(dirs);
        assert_eq!(held.load(Ordering::Relaxed), 0);
        assert!(open().fd.is_some());
    }

    /// Small files share their chunk's buffer; larger ones read whole get
    /// their own; a file that cannot be read leaves the buffer as it was.
    #[test]
    fn chunk_holds_small_files_in_one_buffer() {
        let tmp = tempfile::tempdir().unwrap();
        let big = vec![7u8; LOAD_SMALL as usize];
        std::fs::write(tmp.path().join("a"), b"alpha").unwrap();
        std::fs::write(tmp.path().join("b"), &big).unwrap();
        std::fs::write(tmp.path().join("c"), b"gamma!").unwrap();
        let dir = Arc::new(SourceDir::open(
            tmp.path().to_path_buf(),
            &DirFds::default(),
        ));
        let names = ["a", "missing", "b", "c"];
        let files = names
            .iter()
            .map(|n| (n.as_bytes().to_vec(), source(&dir, n)));
        let rules = LoadRules::new(
            0,
            ContentHasher::new(&[1; 32]),
            Arc::new(Buffers::new(KEEP_BYTES)),
        );
        let chunk = load_chunk(files.collect(), &rules);
        assert_eq!(chunk.buf, b"alphagamma!");
        let bytes: Vec<Option<&[u8]>> = chunk
            .files
            .iter()
            .map(|l| l.data.as_ref().ok().and_then(|(_, b)| b.bytes(&chunk.buf)))
            .collect();
        let want: [Option<&[u8]>; 4] = [Some(b"alpha"), None, Some(&big), Some(b"gamma!")];
        assert_eq!(bytes, want);
        assert!(chunk.files[1].data.is_err());
        assert!(matches!(chunk.files[2].data, Ok((_, Body::Own(_)))));
        for l in &chunk.files {
            let d = l.data.as_ref().ok().and_then(|(_, b)| b.bytes(&chunk.buf));
            assert_eq!(l.hash, d.map(|d| rules.hasher.hash(d)));
        }
    }
}
