//! The context every scenario gets: the configuration, the directory the
//! archives live in, how to create / reopen an archive on the configured
//! backend, and the list of scratch directories removed at the end.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lockbox::{Key, Lockbox};

use crate::BoxResult;
use crate::config::{Backend, Config};
use crate::fsutil::remove_if_exists;
use crate::rss::clock;

pub struct Ctx {
    pub cfg: Config,
    pub dir: PathBuf,
    /// Directories of many small files, removed at the end of the run: on
    /// some filesystems (ext4 without a journal) creating files right after
    /// many were deleted is far slower, so no phase deletes them mid-run.
    pub scratch: std::cell::RefCell<Vec<PathBuf>>,
}

/// The key used for every archive of the run (raw key: no KDF cost in the figures).
pub fn key() -> Key {
    Key::raw([0x42; 32])
}

impl Ctx {
    /// Removes `p` at the end of the run.
    pub fn remove_at_end(&self, p: &Path) {
        self.scratch.borrow_mut().push(p.to_path_buf());
    }

    pub fn archive_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("perf-{name}.lbox"))
    }

    /// Removes the archive file of `name` (if any: none in memory).
    pub fn remove_archive(&self, name: &str) -> std::io::Result<()> {
        remove_if_exists(&self.archive_path(name))
    }

    /// Creates a fresh archive for scenario `name` on the configured backend.
    pub fn create(&self, name: &str) -> BoxResult<Lockbox> {
        match self.cfg.backend {
            Backend::File => {
                let path = self.archive_path(name);
                remove_if_exists(&path)?;
                Ok(Lockbox::create(&path, key())?)
            }
            Backend::Memory => Ok(Lockbox::builder().create_in_memory(key())?),
        }
    }

    /// Closes `lb` and opens the same archive again. Only the open itself is
    /// timed (not the drop, not copying an in-memory image out).
    pub fn reopen(&self, lb: Lockbox, name: &str) -> BoxResult<(Lockbox, Duration)> {
        match self.cfg.backend {
            Backend::File => {
                drop(lb);
                let path = self.archive_path(name);
                let t = clock();
                let lb = Lockbox::open(&path, key())?;
                Ok((lb, t.elapsed()))
            }
            Backend::Memory => {
                let image = lb.image()?;
                drop(lb);
                let t = clock();
                let lb = Lockbox::builder().open_bytes(image, key())?;
                Ok((lb, t.elapsed()))
            }
        }
    }

    /// Size of the archive as stored: the file length, or the in-memory image length.
    pub fn stored_bytes(&self, lb: &Lockbox, name: &str) -> BoxResult<u64> {
        match self.cfg.backend {
            Backend::File => Ok(fs::metadata(self.archive_path(name))?.len()),
            Backend::Memory => Ok(lb.image()?.len() as u64),
        }
    }
}
