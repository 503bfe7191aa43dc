//! Options and reports: [`Builder`], [`Profile`], and the `*Stats` types.

use std::path::Path;
use std::time::Duration;

use crate::crypto::keys::Key;
use crate::crypto::slots::KdfParams;
use crate::error::Result;
use crate::format::{DEFAULT_FRAME_SIZE, DEFAULT_NODE_CAPACITY};
use crate::lockbox::{Lockbox, Place};
use crate::storage::backend::Backend;

/// zstd level of metadata pages and of data frames unless the profile or
/// the builder chooses another.
pub(crate) const DEFAULT_LEVEL: i32 = 3;

/// How the cache behaves; the caller chooses, lockbox never guesses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Profile {
    /// Mixed reads and writes (default): metadata cached, frames decoded per read.
    #[default]
    Interactive,
    /// Large imports (`add_path` of a whole tree): new file data goes
    /// straight to disk and is never cached (RSS stays bounded however much
    /// is imported), and new data is cut into frames 16 times the header's
    /// frame size (1 MiB by default), small files packed as many to a frame,
    /// compressed at zstd level 2 unless
    /// [`Builder::compression_level`] says otherwise: compression close to a
    /// solid `tar.zst` at level 3, at a quarter less CPU, at the price of
    /// decoding up to one such frame to read a small range of that data
    /// later.
    BulkImport,
    /// Repeated reads: decoded frames are kept in the bounded cache, so
    /// reads of nearby ranges skip decryption and decompression.
    ReadMostly,
    /// Full or repeated extraction: like `ReadMostly`.
    ExtractMany,
}

impl Profile {
    pub(crate) fn caches_frames(self) -> bool {
        matches!(self, Profile::ReadMostly | Profile::ExtractMany)
    }

    /// zstd level of new data frames when the builder does not set one.
    /// Level 2 on 1 MiB frames: on a 46k-file Python tree 4 % larger than
    /// level 3 (still the size of its `tar.zst` at level 3) and 29 %
    /// faster to compress (`zstd -b2 -B1M`: 534 vs 413 MB/s).
    pub(crate) fn frame_level(self) -> i32 {
        match self {
            Profile::BulkImport => 2,
            _ => DEFAULT_LEVEL,
        }
    }
}

/// Configures how a lockbox is created or opened.
#[derive(Clone, Debug)]
pub struct Builder {
    pub(crate) profile: Profile,
    pub(crate) cache_bytes: u64,
    pub(crate) kdf: KdfParams,
    pub(crate) read_only: bool,
    pub(crate) mmap: bool,
    /// `None`: [`DEFAULT_LEVEL`] for metadata, the profile's level for data.
    pub(crate) level: Option<i32>,
    pub(crate) node_capacity: u32,
    pub(crate) frame_size: u32,
    pub(crate) relocation_batch: Option<u64>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            profile: Profile::Interactive,
            cache_bytes: 64 * 1024 * 1024,
            kdf: KdfParams::default(),
            read_only: false,
            mmap: true,
            level: None,
            node_capacity: DEFAULT_NODE_CAPACITY,
            frame_size: DEFAULT_FRAME_SIZE,
            relocation_batch: None,
        }
    }
}

impl Builder {
    /// The cache profile (default `Interactive`).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }
    /// Bytes of decoded pages and frames the cache may hold (default 64 MiB).
    pub fn cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }
    /// Argon2id parameters for passphrase slots created by this builder.
    pub fn kdf(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }
    /// Open read-only: a shared lock, no changes, memory-mapped reads.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
    /// Whether read-only handles map the file (default true); see the
    /// storage docs for what happens if another program truncates it.
    pub fn mmap(mut self, mmap: bool) -> Self {
        self.mmap = mmap;
        self
    }
    /// zstd level for new frames and pages (default 3, and 2 for data
    /// written under [`Profile::BulkImport`]).
    pub fn compression_level(mut self, level: i32) -> Self {
        self.level = Some(level);
        self
    }
    /// Logical capacity of a B-tree node for a new lockbox (test knob).
    #[doc(hidden)]
    pub fn node_capacity(mut self, bytes: usize) -> Self {
        self.node_capacity = u32::try_from(bytes).unwrap_or(u32::MAX);
        self
    }

    /// Leaves every repack to relocation commits, even one small enough to
    /// do inside the commit itself, and sizes each relocation batch to
    /// about `bytes` of new packs, at least one frame (test knob: so small
    /// test workloads run several relocation commits; see `relocate.rs`).
    #[doc(hidden)]
    pub fn relocation_batch(mut self, bytes: u64) -> Self {
        self.relocation_batch = Some(bytes);
        self
    }

    /// Creates a new lockbox file; `AlreadyExists` if the path exists.
    pub fn create(self, path: impl AsRef<Path>, key: Key) -> Result<Lockbox> {
        Lockbox::create_with(self, Place::File(path.as_ref()), key)
    }
    /// Opens an existing lockbox file.
    pub fn open(self, path: impl AsRef<Path>, key: Key) -> Result<Lockbox> {
        Lockbox::open_with(self, Place::File(path.as_ref()), key)
    }
    /// Creates a lockbox held in memory (see [`Lockbox::image`]).
    pub fn create_in_memory(self, key: Key) -> Result<Lockbox> {
        Lockbox::create_with(self, Place::Memory(Vec::new()), key)
    }
    /// Creates a lockbox on a caller-supplied backend (crash and
    /// fault-injection tests). The backend must be empty.
    #[doc(hidden)]
    pub fn create_on(self, backend: Box<dyn Backend>, key: Key) -> Result<Lockbox> {
        Lockbox::create_with(self, Place::Backend(backend), key)
    }
    /// Opens a lockbox on a caller-supplied backend.
    #[doc(hidden)]
    pub fn open_on(self, backend: Box<dyn Backend>, key: Key) -> Result<Lockbox> {
        Lockbox::open_with(self, Place::Backend(backend), key)
    }
    /// Opens an in-memory copy of a lockbox image.
    pub fn open_bytes(self, bytes: Vec<u8>, key: Key) -> Result<Lockbox> {
        Lockbox::open_with(self, Place::Memory(bytes), key)
    }
}

/// What a commit did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Sequence number of the commit now durable (unchanged if nothing was
    /// staged): the last relocation commit's, when there were any, so it
    /// equals [`Lockbox::sequence`](crate::Lockbox::sequence).
    pub sequence: u64,
    /// Metadata pages written by the commit itself (nodes, index pages,
    /// packs), relocation commits included.
    pub pages_written: u64,
    /// Bytes written by the commit itself, including the commit slots and
    /// the relocation commits.
    pub bytes_written: u64,
    /// Relocation commits run after the changes' own commit, to repack the
    /// packed frames it left holding deleted members (each a complete
    /// commit that changes no content).
    pub relocations: u64,
    /// Entries and variables set or removed.
    pub entries_changed: u64,
    /// Wall time of the commit.
    pub duration: Duration,
}

/// What [`Lockbox::verify`] checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Sequence number of the verified commit.
    pub sequence: u64,
    /// TOC entries.
    pub entries: u64,
    /// Variables.
    pub variables: u64,
    /// Height of the TOC tree (0 when empty).
    pub toc_height: u32,
    /// Height of the variables tree.
    pub vars_height: u32,
    /// Sealed regions authenticated.
    pub regions: u64,
    /// Bytes in those regions.
    pub region_bytes: u64,
    /// File-data bytes read back and checked.
    pub data_bytes: u64,
    /// Bytes in the free-space index (zeroed, reusable).
    pub free_bytes: u64,
    /// Bytes freed by the last commit (zeroed, reusable by the next).
    pub pending_bytes: u64,
    /// Packed frames the last commit left to repack: `0` unless a crash
    /// or an error cut its relocation commits short and no writable open
    /// has finished them yet (their deleted members' bytes are still in
    /// the file, sealed).
    pub repack_pending: u64,
}

/// Progress of a long operation, passed to a callback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Entries done.
    pub files: u64,
    /// Entries in all, when known.
    pub files_total: Option<u64>,
    /// Bytes done.
    pub bytes: u64,
    /// Bytes in all, when known.
    pub bytes_total: Option<u64>,
}
