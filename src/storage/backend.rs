//! The one seam between lockbox and the bytes it keeps. Every read, write,
//! sync and length change goes through a [`Backend`], so tests can wrap one
//! to count, fail or cut operations.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Result;

/// Positional byte storage.
#[allow(clippy::len_without_is_empty)]
pub trait Backend: Send + Sync {
    /// Fills `buf` from `offset`; a read past the end is an error
    /// (`UnexpectedEof`).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Writes all of `data` at `offset`, growing the storage if needed.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()>;
    /// Makes every completed write durable.
    fn sync(&self) -> Result<()>;
    /// A hint: start making the writes completed so far durable in the
    /// background, where the backend can, so that the next `sync` has
    /// less to wait for. That `sync` still makes everything durable and
    /// reports any failure. The default does nothing.
    fn start_sync(&self) {}
    /// Current length in bytes.
    fn len(&self) -> Result<u64>;
    /// Truncates or extends.
    fn set_len(&self, len: u64) -> Result<()>;
}

/// I/O counters of a handle, since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Read calls on the backend.
    pub reads: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Write calls.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Syncs.
    pub syncs: u64,
}

/// A backend wrapper that counts operations.
pub struct Counted {
    inner: Box<dyn Backend>,
    reads: AtomicU64,
    bytes_read: AtomicU64,
    writes: AtomicU64,
    bytes_written: AtomicU64,
    syncs: AtomicU64,
}

impl Counted {
    pub fn new(inner: Box<dyn Backend>) -> Counted {
        Counted {
            inner,
            reads: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> IoStats {
        IoStats {
            reads: self.reads.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
        }
    }
}

impl Backend for Counted {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes_read
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.write_at(offset, data)
    }
    fn sync(&self) -> Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync()
    }
    fn start_sync(&self) {
        self.inner.start_sync()
    }
    fn len(&self) -> Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> Result<()> {
        self.inner.set_len(len)
    }
}
