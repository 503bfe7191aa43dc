#![doc = include_str!("../README.md")]
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod btree;
mod commit;
mod compact;
mod crypto;
mod data;
mod error;
mod extract;
mod extract_mem;
mod format;
mod import;
mod keyslots;
mod lockbox;
mod options;
mod par;
mod path;
mod relocate;
mod space;
mod staged;
mod storage;
mod toc;
mod vars;
mod verify;

pub use compact::CompactStats;
pub use crypto::keys::Key;
pub use crypto::slots::KdfParams;
pub use error::{Error, Result};
pub use extract::{ExtractOptions, ExtractStats};
pub use import::{ImportOptions, ImportStats, Skipped};
pub use lockbox::Lockbox;
pub use options::{Builder, CommitStats, Profile, Progress, VerifyReport};
pub use storage::backend::IoStats;
pub use storage::cache::CacheStats;
pub use toc::{Entry, EntryKind};

/// Internals exposed for the crate's own crash, fault-injection, hostile
/// archive and fuzz tests. Not part of the stable API.
#[doc(hidden)]
pub mod testing;

/// A `Lockbox` can be shared across threads for reads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Lockbox>();
};
