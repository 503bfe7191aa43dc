//! The crate's one error type.

use std::io;

/// Everything that can go wrong in lockbox.
///
/// Messages say what happened and what to do about it. Key material never
/// appears in an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused an I/O operation.
    #[error("I/O error: {0} (check the path, permissions and free disk space)")]
    Io(#[from] io::Error),

    /// No key slot of the archive accepts the key that was given.
    #[error("wrong key: no key slot of this lockbox opens with the given passphrase or key")]
    WrongKey,

    /// The file does not start with a lockbox header.
    #[error("not a lockbox file (bad magic or header); check that the path names a .lbox file")]
    NotALockbox,

    /// An authenticated structure failed to verify or parse.
    #[error(
        "lockbox is damaged: {what} at byte offset {offset}; restore the file from a backup \
         (reads of undamaged entries may still work)"
    )]
    Corrupt {
        /// What failed to verify.
        what: String,
        /// Byte offset of the damaged structure in the file.
        offset: u64,
    },

    /// The file was written by a newer format version.
    #[error(
        "unsupported lockbox format version {found} (this build reads version {supported}); \
         upgrade the lockbox crate"
    )]
    UnsupportedVersion {
        /// Version found in the file.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },

    /// No entry at that path.
    #[error("not found: {0:?}")]
    NotFound(String),

    /// A path or variable name that lockbox does not accept.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The target already exists.
    #[error("already exists: {0:?}; delete it first or choose another name")]
    AlreadyExists(String),

    /// The entry is a directory or symlink where a regular file is needed.
    #[error("not a regular file: {0:?}")]
    NotAFile(String),

    /// A path component that must be a directory is a file or symlink.
    #[error("not a directory: {0:?} is a file or symlink, so nothing can be stored below it")]
    NotADirectory(String),

    /// Another handle holds the lock on this file.
    #[error(
        "lockbox is locked by another handle (one writer, or any number of read-only \
         handles, at a time); close the other handle and retry"
    )]
    Locked,

    /// A change was attempted on a read-only handle.
    #[error("this lockbox was opened read-only; open it without read_only(true) to change it")]
    ReadOnly,

    /// A configured or format limit was passed.
    #[error("limit exceeded: {what} (limit {limit})")]
    LimitExceeded {
        /// Which limit.
        what: String,
        /// The limit's value.
        limit: u64,
    },

    /// Key-derivation parameters outside the accepted range.
    #[error("invalid key-derivation parameters: {0}")]
    InvalidKdfParams(String),

    /// The commit is durable, but overwriting the space it freed failed.
    /// The next writable open finishes the redaction.
    #[error(
        "commit {sequence} is durable, but erasing the space it freed failed ({source}); \
         reopen the lockbox for writing to finish erasing it"
    )]
    RedactionPending {
        /// Sequence number of the durable commit.
        sequence: u64,
        /// What failed.
        source: Box<Error>,
    },

    /// The operation is not available for this kind of lockbox.
    #[error("not supported: {0}")]
    Unsupported(&'static str),

    /// The last key slot cannot be removed.
    #[error(
        "refusing to remove the last key: the lockbox could never be opened again; add another key first"
    )]
    LastKey,

    /// An earlier write failed; the handle refuses further changes.
    #[error(
        "an earlier write or sync failed, so this handle refuses further changes; \
         drop it and reopen the lockbox (the last commit is intact)"
    )]
    Poisoned,
}

/// `Result` with lockbox's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn corrupt(what: impl Into<String>, offset: u64) -> Error {
        Error::Corrupt {
            what: what.into(),
            offset,
        }
    }
}
