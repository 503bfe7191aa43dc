//! The file backend: positional reads and writes (`pread`/`pwrite`, no
//! seek), advisory locking, and memory-mapped reads for read-only handles.
//!
//! This module holds the crate's only `unsafe` code: creating the mapping.
//!
//! **If the file changes underneath.** Lockbox's own handles cannot change
//! a file while a read-only handle maps it: a writer holds an exclusive
//! advisory lock and a read-only handle a shared one, so they exclude each
//! other. Another program that ignores the lock and writes the file makes
//! reads through the mapping see its bytes; those fail authentication and
//! come back as `Error::Corrupt`, never as wrong data. A program that
//! *truncates* a mapped file can make a read fault with `SIGBUS`, as with
//! any mapping; handles that must survive that open with
//! `Builder::mmap(false)` and read with `pread` instead.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;

use memmap2::Mmap;

use super::backend::Backend;
use crate::error::{Error, Result};

pub struct FileBackend {
    file: File,
    map: Option<Mmap>,
}

fn lock_error(e: TryLockError) -> Error {
    match e {
        TryLockError::WouldBlock => Error::Locked,
        TryLockError::Error(e) => Error::Io(e),
    }
}

impl FileBackend {
    /// Creates a new file (error if it exists) and locks it for writing.
    pub fn create(path: &Path) -> Result<FileBackend> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => Error::AlreadyExists(path.display().to_string()),
                _ => Error::Io(e),
            })?;
        file.try_lock().map_err(lock_error)?;
        Ok(FileBackend { file, map: None })
    }

    /// Opens an existing file: for writing with an exclusive lock, or
    /// read-only with a shared lock (and a mapping when `mmap`).
    pub fn open(path: &Path, read_only: bool, mmap: bool) -> Result<FileBackend> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::NotFound(path.display().to_string()),
                _ => Error::Io(e),
            })?;
        if read_only {
            file.try_lock_shared().map_err(lock_error)?;
        } else {
            file.try_lock().map_err(lock_error)?;
        }
        let map = if read_only && mmap && file.metadata()?.len() > 0 {
            // SAFETY: the mapping is read-only and lives no longer than
            // `file`. Lockbox writers are excluded by the shared lock taken
            // above; the module docs state what happens if another program
            // modifies or truncates the file while it is mapped.
            Some(unsafe { Mmap::map(&file)? })
        } else {
            None
        };
        Ok(FileBackend { file, map })
    }
}

/// Makes a new file's directory entry durable (a no-op where directories
/// cannot be opened for syncing).
pub fn sync_parent_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(unix)]
fn pread(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(unix)]
fn pwrite(file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, data, offset)
}

#[cfg(windows)]
fn pread(file: &File, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_read(buf, offset)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end",
            ));
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(windows)]
fn pwrite(file: &File, mut offset: u64, mut data: &[u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !data.is_empty() {
        let n = file.seek_write(data, offset)?;
        data = &data[n..];
        offset += n as u64;
    }
    Ok(())
}

impl Backend for FileBackend {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if let Some(map) = &self.map {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            if let Some(src) = start
                .checked_add(buf.len())
                .and_then(|end| map.get(start..end))
            {
                buf.copy_from_slice(src);
                return Ok(());
            }
        }
        Ok(pread(&self.file, offset, buf)?)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        Ok(pwrite(&self.file, offset, data)?)
    }

    fn sync(&self) -> Result<()> {
        Ok(self.file.sync_data()?)
    }

    fn len(&self) -> Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        Ok(self.file.set_len(len)?)
    }
}
