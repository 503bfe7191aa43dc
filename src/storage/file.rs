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
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use memmap2::Mmap;

use super::backend::Backend;
use crate::error::{Error, Result};

pub struct FileBackend {
    file: File,
    map: Option<Mmap>,
    /// Bytes written since the last sync began (a hint for `start_sync`).
    unsynced: AtomicU64,
    background: Mutex<Background>,
}

/// `start_sync` starts one when this many bytes wait: the data a large
/// import writes reaches the disk while it goes on, and the commit's own
/// sync has only the rest to wait for (on the 46k-file tree, 150 MB: the
/// commit's sync took 33-37 ms of its 83-92 ms). Small commits never pay
/// for a thread.
const BACKGROUND_SYNC: u64 = 16 << 20;

/// The sync running on a thread of its own, and the failure of an
/// earlier one, which the next `sync` reports: after a failed `fdatasync`
/// the next one on the same open file may succeed without the lost
/// writes, so the failure must not be dropped.
#[derive(Default)]
struct Background {
    running: Option<JoinHandle<io::Result<()>>>,
    failed: Option<io::Error>,
}

fn joined(h: JoinHandle<io::Result<()>>) -> io::Result<()> {
    h.join()
        .unwrap_or_else(|_| Err(io::Error::other("the background sync thread panicked")))
}

fn lock_error(e: TryLockError) -> Error {
    match e {
        TryLockError::WouldBlock => Error::Locked,
        TryLockError::Error(e) => Error::Io(e),
    }
}

impl FileBackend {
    fn new(file: File, map: Option<Mmap>) -> FileBackend {
        FileBackend {
            file,
            map,
            unsynced: AtomicU64::new(0),
            background: Mutex::new(Background::default()),
        }
    }

    fn background(&self) -> std::sync::MutexGuard<'_, Background> {
        self.background.lock().unwrap_or_else(|e| e.into_inner())
    }

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
        Ok(FileBackend::new(file, None))
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
        Ok(FileBackend::new(file, map))
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

impl Drop for FileBackend {
    fn drop(&mut self) {
        // No thread outlives the handle: its descriptor shares the open
        // file, and with it the lock, which another handle may want as
        // soon as this one is gone. (Its result is of no use now: a
        // handle dropped without a sync promised nothing.)
        if let Some(h) = self.background().running.take() {
            let _ = joined(h);
        }
    }
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
        pwrite(&self.file, offset, data)?;
        self.unsynced
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let (running, failed) = {
            let mut bg = self.background();
            (bg.running.take(), bg.failed.take())
        };
        if let Some(h) = running {
            joined(h)?;
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
        self.unsynced.store(0, Ordering::Relaxed);
        Ok(self.file.sync_data()?)
    }

    fn start_sync(&self) {
        if self.unsynced.load(Ordering::Relaxed) < BACKGROUND_SYNC {
            return;
        }
        let mut bg = self.background();
        if bg.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Some(Err(e)) = bg.running.take().map(joined) {
            bg.failed.get_or_insert(e);
        }
        // A second descriptor of the same open file: its `fdatasync`
        // covers every write made through this one.
        let Ok(file) = self.file.try_clone() else {
            return;
        };
        self.unsynced.store(0, Ordering::Relaxed);
        bg.running = std::thread::Builder::new()
            .name("lockbox-sync".into())
            .spawn(move || file.sync_data())
            .ok();
    }

    fn len(&self) -> Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        Ok(self.file.set_len(len)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_sync_runs_past_its_threshold_and_sync_joins_it() {
        let dir = std::env::temp_dir().join(format!("lockbox-bgsync-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let be = FileBackend::create(&dir).unwrap();
        let chunk = vec![0x5Au8; 1 << 20];
        // Below the threshold: no thread.
        be.write_at(0, &chunk).unwrap();
        be.start_sync();
        assert!(be.background().running.is_none());
        // Past it: one thread, and the count starts again.
        for i in 1..=(BACKGROUND_SYNC >> 20) {
            be.write_at(i << 20, &chunk).unwrap();
        }
        be.start_sync();
        assert!(be.background().running.is_some());
        assert_eq!(be.unsynced.load(Ordering::Relaxed), 0);
        // A write after it started, then the real sync: joins the thread
        // and syncs the rest.
        be.write_at(BACKGROUND_SYNC + (1 << 20), &chunk).unwrap();
        be.sync().unwrap();
        let bg = be.background();
        assert!(bg.running.is_none() && bg.failed.is_none());
        drop(bg);
        let mut back = vec![0u8; 1 << 20];
        be.read_at(BACKGROUND_SYNC + (1 << 20), &mut back).unwrap();
        assert_eq!(back, chunk);
        // Dropped with a sync running: joined, no thread left behind.
        for i in 0..=(BACKGROUND_SYNC >> 20) {
            be.write_at(i << 20, &chunk).unwrap();
        }
        be.start_sync();
        drop(be);
        std::fs::remove_file(&dir).unwrap();
    }
}
