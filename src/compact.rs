//! `compact()`: rewrite the live content into a new file next to the old
//! one, then rename it into place atomically. Key slots, the archive id and
//! the master key are kept (no passphrase is needed); sequence numbers go
//! on from the old file's.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::data::pack::Member;
use crate::data::packs::PackCache;
use crate::error::{Error, Result};
use crate::format::entry::{Content, Record, VarRecord};
use crate::lockbox::{Lockbox, Place};
use crate::options::Progress;
use crate::staged::Merged;

/// Staged entries per intermediate commit of the new file (bounds memory).
const BATCH: usize = 50_000;

/// What [`Lockbox::compact`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// File length before.
    pub bytes_before: u64,
    /// File length after.
    pub bytes_after: u64,
    /// Entries and variables copied.
    pub entries: u64,
    /// Wall time.
    pub duration: Duration,
}

/// Streams one entry's bytes out of a lockbox.
struct ContentReader<'a> {
    lb: &'a Lockbox,
    rec: &'a Record,
    pos: u64,
    /// The lockbox error behind a failed read, so it is reported as itself
    /// (`Corrupt`), not as the I/O error `Read` has to return.
    failed: Option<Error>,
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.lb.read_record(self.rec, self.pos, buf) {
            Ok(n) => {
                self.pos += n as u64;
                Ok(n)
            }
            Err(e) => {
                let io = std::io::Error::other(e.to_string());
                self.failed = Some(e);
                Err(io)
            }
        }
    }
}

impl Lockbox {
    /// Rewrites the lockbox into a new file holding only its live content,
    /// atomically (new file, fsync, rename over the old one, fsync of the
    /// directory). Staged changes are committed first. The content is
    /// packed and compressed as the handle's current [`Profile`] writes
    /// new data: under [`Profile::BulkImport`] in 1 MiB frames (the
    /// smallest file; small reads then decode more), otherwise in the
    /// header's frame size.
    ///
    /// [`Profile`]: crate::Profile
    /// [`Profile::BulkImport`]: crate::Profile::BulkImport
    pub fn compact(&mut self) -> Result<CompactStats> {
        self.compact_with_progress(|_| {})
    }

    /// [`compact`](Lockbox::compact), calling `progress` after each entry.
    pub fn compact_with_progress(
        &mut self,
        mut progress: impl FnMut(&Progress),
    ) -> Result<CompactStats> {
        self.check_writable()?;
        if self.custom_backend {
            return Err(Error::Unsupported(
                "compact needs a lockbox file or an in-memory lockbox, not a custom backend",
            ));
        }
        if self.has_changes() {
            self.commit()?;
        }
        let started = Instant::now();
        let bytes_before = self.store.backend().len()?;
        let tmp = self.path.as_ref().map(|p| {
            let mut name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
            name.push(".compact-tmp");
            p.with_file_name(name)
        });
        if let Some(t) = &tmp {
            // A leftover from an interrupted compaction is garbage.
            let _ = std::fs::remove_file(t);
        }
        let place = match &tmp {
            Some(t) => Place::File(t),
            None => Place::Memory(Vec::new()),
        };
        let mut new = Lockbox::initialize(
            self.builder.clone(),
            place,
            self.header.clone(),
            self.slots.clone(),
            self.master.duplicate(),
            self.committed.seq + 1,
        )?;
        // The copy is written as this handle writes new data now (its
        // profile, not the one it was opened with): under `BulkImport` in
        // 1 MiB frames and packs, the smallest file. (Compacting the 155 MB
        // archive of a tree imported under `BulkImport` from a handle set
        // to it after opening gave 184 MB: 64 KiB packs.)
        new.set_profile(self.profile);
        let copied = self.copy_into(&mut new, &mut progress);
        let copied = copied.and_then(|n| new.commit().map(|_| n));
        let entries = match copied {
            Ok(n) => n,
            Err(e) => {
                drop(new);
                if let Some(t) = &tmp {
                    let _ = std::fs::remove_file(t);
                }
                return Err(e);
            }
        };
        let mut dir_sync = Ok(());
        if let (Some(t), Some(p)) = (&tmp, &self.path) {
            if let Err(e) = std::fs::rename(t, p) {
                drop(new);
                let _ = std::fs::remove_file(t);
                return Err(Error::Io(e));
            }
            // From here the new file is in place: switch to it whatever
            // happens, so later commits go where the path points.
            new.path = Some(p.clone());
            dir_sync = crate::storage::file::sync_parent_dir(p);
        }
        let bytes_after = new.store.backend().len()?;
        *self = new;
        dir_sync?;
        Ok(CompactStats {
            bytes_before,
            bytes_after,
            entries,
            duration: started.elapsed(),
        })
    }

    fn copy_into(&self, new: &mut Lockbox, progress: &mut impl FnMut(&Progress)) -> Result<u64> {
        let frame = self.header.frame_size as u64;
        let mut p = Progress {
            files: 0,
            files_total: Some(self.committed.toc.count + self.committed.vars.count),
            bytes: 0,
            bytes_total: None,
        };
        // Deduplicated files share packs far from their own place in the
        // tree: the packs decoded last are kept, so each is decoded once.
        let packs = PackCache::default();
        for item in self.subtree(&[])? {
            let (key, mut rec) = item?;
            // A damaged source is refused, not copied into the new file.
            crate::toc::key_path(&key)?;
            rec.content = match &rec.content {
                Content::Packed { frame: f, offset } => {
                    self.check_plausible_len(&rec)?;
                    let (bytes, at) = packs.member(&self.store, f, *offset, rec.len)?;
                    new.store_bytes(Member::Toc(key.clone()), &bytes[at])?
                }
                Content::Frames { .. } if rec.len < frame => {
                    let mut data = vec![0u8; rec.len as usize];
                    if self.read_record(&rec, 0, &mut data)? != data.len() {
                        return Err(Error::corrupt("file shorter than its length", 0));
                    }
                    new.store_bytes(Member::Toc(key.clone()), &data)?
                }
                Content::Frames { .. } => {
                    let mut r = ContentReader {
                        lb: self,
                        rec: &rec,
                        pos: 0,
                        failed: None,
                    };
                    match new.store_reader(Member::Toc(key.clone()), &mut r) {
                        Ok((c, _)) => c,
                        Err(e) => return Err(r.failed.take().unwrap_or(e)),
                    }
                }
                c => c.clone(),
            };
            p.bytes += rec.len;
            new.toc.insert(key, Some(rec));
            self.tick(new, &mut p, progress)?;
        }
        let vars = Merged::new(
            &self.store,
            crate::crypto::seal::Kind::VarNode,
            &self.committed.vars,
            &self.vars,
            &[],
            None,
            VarRecord::decode,
        )?;
        for item in vars {
            let (key, rec) = item?;
            let data = self.var_bytes(&rec)?;
            let content = new.store_bytes(Member::Var(key.clone()), &data)?;
            p.bytes += rec.len;
            new.vars.insert(
                key,
                Some(VarRecord {
                    len: rec.len,
                    content,
                }),
            );
            self.tick(new, &mut p, progress)?;
        }
        Ok(p.files)
    }

    fn tick(
        &self,
        new: &mut Lockbox,
        p: &mut Progress,
        progress: &mut impl FnMut(&Progress),
    ) -> Result<()> {
        p.files += 1;
        progress(p);
        if new.toc.len() + new.vars.len() >= BATCH {
            new.commit()?;
        }
        Ok(())
    }
}
