//! The [`Lockbox`] handle: opening and creating, the staged state, commit
//! and rollback. File and variable operations live in `toc.rs` and
//! `vars.rs`, verification in `verify.rs`.

use std::path::Path;
use std::time::Instant;

use crate::btree::apply::{Applier, Change};
use crate::crypto::keys::{Key, MasterKey, SubKeys};
use crate::crypto::seal::{self, Kind, Prepared, fill_random};
use crate::crypto::slots::{Slot, SlotTable, TABLE_LEN};
use crate::data::pack::{Member, Pack};
use crate::error::{Error, Result};
use crate::format::commit::{CommitRecord, RECORD_LEN, TreeRoot};
use crate::format::entry::{Content, Record, VarRecord};
use crate::format::header::Header;
use crate::format::{
    COMMIT_SLOT_LEN, COMMIT_SLOTS, DATA_START, HEADER_LEN, MAX_NODE_CAPACITY, MIN_NODE_CAPACITY,
    SLOT_TABLES,
};
use crate::options::{Builder, CommitStats, Profile};
use crate::staged::Overlay;
use crate::storage::backend::{Backend, IoStats};
use crate::storage::cache::CacheStats;
use crate::storage::file::FileBackend;
use crate::storage::memory::MemoryBackend;
use crate::storage::store::Store;

/// Where a lockbox lives.
pub(crate) enum Place<'a> {
    File(&'a Path),
    Memory(Vec<u8>),
    Backend(Box<dyn Backend>),
}

/// An open lockbox.
///
/// Changes are staged in the handle and visible to its own reads at once;
/// [`commit`](Lockbox::commit) makes them durable and visible to other
/// openers atomically. Reads take `&self`; a `Lockbox` is `Send + Sync`.
pub struct Lockbox {
    pub(crate) store: Store,
    pub(crate) header: Header,
    #[allow(dead_code)]
    pub(crate) slots: SlotTable,
    pub(crate) committed: CommitRecord,
    pub(crate) active_slot: usize,
    pub(crate) toc: Overlay<Record>,
    pub(crate) vars: Overlay<VarRecord>,
    pub(crate) pack: Pack,
    pub(crate) read_only: bool,
    pub(crate) poisoned: bool,
    pub(crate) profile: Profile,
}

impl std::fmt::Debug for Lockbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockbox")
            .field("sequence", &self.committed.seq)
            .field("entries", &self.committed.toc.count)
            .field("staged", &(self.toc.len() + self.vars.len()))
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl Lockbox {
    /// Creates a new lockbox file with default options; error if it exists.
    pub fn create(path: impl AsRef<Path>, key: Key) -> Result<Lockbox> {
        Builder::default().create(path, key)
    }

    /// Opens an existing lockbox file for reading and writing.
    pub fn open(path: impl AsRef<Path>, key: Key) -> Result<Lockbox> {
        Builder::default().open(path, key)
    }

    /// A [`Builder`] for options (profile, cache, KDF, read-only, in-memory).
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn create_with(b: Builder, place: Place<'_>, key: Key) -> Result<Lockbox> {
        if !(MIN_NODE_CAPACITY..=MAX_NODE_CAPACITY).contains(&b.node_capacity) {
            return Err(Error::LimitExceeded {
                what: "node capacity outside 1 KiB..1 MiB".into(),
                limit: MAX_NODE_CAPACITY as u64,
            });
        }
        let mut archive_id = [0u8; 16];
        fill_random(&mut archive_id)?;
        let master = MasterKey::random()?;
        let slot = Slot::new(&key, b.kdf, &master, &archive_id)?;
        let path = match &place {
            Place::File(p) => Some(*p),
            _ => None,
        };
        let backend: Box<dyn Backend> = match place {
            Place::File(p) => Box::new(FileBackend::create(p)?),
            Place::Memory(bytes) => Box::new(MemoryBackend::new(bytes)),
            Place::Backend(be) => be,
        };
        let header = Header {
            archive_id,
            node_capacity: b.node_capacity,
            frame_size: b.frame_size,
        };
        let slots = SlotTable {
            seq: 1,
            slots: vec![slot],
        };
        let mut lb = Lockbox::assemble(
            &b,
            backend,
            header,
            slots,
            &master,
            CommitRecord::default(),
            1,
        )?;
        let init = (|| -> Result<()> {
            let be = lb.store.backend();
            be.write_at(0, &lb.header.encode())?;
            be.write_at(SLOT_TABLES[0], &lb.slots.encode())?;
            be.write_at(SLOT_TABLES[1], &vec![0u8; TABLE_LEN])?;
            be.write_at(COMMIT_SLOTS[0], &vec![0u8; (COMMIT_SLOT_LEN * 2) as usize])?;
            be.sync()?;
            lb.committed = CommitRecord {
                seq: 0,
                data_end: DATA_START,
                ..Default::default()
            };
            lb.active_slot = 1;
            lb.write_commit_slot(CommitRecord {
                seq: 1,
                data_end: DATA_START,
                time: now().0,
                ..Default::default()
            })?;
            if let Some(p) = path {
                crate::storage::file::sync_parent_dir(p)?;
            }
            Ok(())
        })();
        if let Err(e) = init {
            if let Some(p) = path {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
        Ok(lb)
    }

    fn assemble(
        b: &Builder,
        backend: Box<dyn Backend>,
        header: Header,
        slots: SlotTable,
        master: &MasterKey,
        committed: CommitRecord,
        active_slot: usize,
    ) -> Result<Lockbox> {
        let store = Store::new(
            backend,
            SubKeys::derive(master),
            header.archive_id,
            b.cache_bytes as usize,
            b.level,
        );
        let pack = Pack::new(header.frame_size as usize);
        let mut lb = Lockbox {
            store,
            header,
            slots,
            committed,
            active_slot,
            toc: Overlay::new(),
            vars: Overlay::new(),
            pack,
            read_only: b.read_only,
            poisoned: false,
            profile: b.profile,
        };
        lb.set_profile(b.profile);
        Ok(lb)
    }

    pub(crate) fn open_with(b: Builder, place: Place<'_>, key: Key) -> Result<Lockbox> {
        let backend: Box<dyn Backend> = match place {
            Place::File(p) => Box::new(FileBackend::open(p, b.read_only, b.mmap)?),
            Place::Memory(bytes) => Box::new(MemoryBackend::new(bytes)),
            Place::Backend(be) => be,
        };
        let len = backend.len()?;
        if len < HEADER_LEN {
            let mut head = vec![0u8; len as usize];
            backend.read_at(0, &mut head)?;
            return Err(match Header::decode(&head) {
                Err(Error::NotALockbox) => Error::NotALockbox,
                _ => Error::corrupt("file truncated inside its header", len),
            });
        }
        let mut head = vec![0u8; HEADER_LEN as usize];
        backend.read_at(0, &mut head)?;
        let header = Header::decode(&head)?;
        if len < DATA_START {
            return Err(Error::corrupt("file truncated before its first page", len));
        }
        let mut tables = vec![0u8; 2 * TABLE_LEN];
        backend.read_at(SLOT_TABLES[0], &mut tables)?;
        let slots = [0, 1]
            .into_iter()
            // A table that fails its checksum or does not parse is skipped:
            // the other copy may be intact.
            .filter_map(|i| {
                SlotTable::decode(&tables[i * TABLE_LEN..(i + 1) * TABLE_LEN], SLOT_TABLES[i])
                    .ok()
                    .flatten()
            })
            .max_by_key(|t| t.seq)
            .ok_or_else(|| Error::corrupt("no valid key slot table", SLOT_TABLES[0]))?;
        // One unwrap attempt per slot. A slot that cannot be tried (KDF
        // parameters over the limits) does not stop the others.
        let mut master = None;
        let mut slot_err = None;
        for slot in &slots.slots {
            match slot.unwrap(&key, &header.archive_id) {
                Ok(Some(m)) => {
                    master = Some(m);
                    break;
                }
                Ok(None) => {}
                Err(e) => slot_err = slot_err.or(Some(e)),
            }
        }
        let master = match (master, slot_err) {
            (Some(m), _) => m,
            (None, Some(e)) => return Err(e),
            (None, None) => return Err(Error::WrongKey),
        };
        let mut lb = Lockbox::assemble(
            &b,
            backend,
            header,
            slots,
            &master,
            CommitRecord::default(),
            0,
        )?;
        lb.load_commit(len)?;
        Ok(lb)
    }

    /// Picks the newest commit slot that authenticates and whose roots read.
    fn load_commit(&mut self, file_len: u64) -> Result<()> {
        let mut candidates = Vec::new();
        for (i, &off) in COMMIT_SLOTS.iter().enumerate() {
            let mut buf = vec![0u8; seal::OVERHEAD + RECORD_LEN];
            self.store.backend().read_at(off, &mut buf)?;
            let aad = seal::aad(
                self.store.archive_id(),
                Kind::Commit,
                off,
                0,
                RECORD_LEN as u32,
            );
            let Ok((0, body)) = seal::open(&self.store.keys().commit, &aad, &mut buf, off) else {
                continue;
            };
            if let Ok(rec) = CommitRecord::decode(body, off) {
                candidates.push((rec, i));
            }
        }
        candidates.sort_by_key(|(r, _)| std::cmp::Reverse(r.seq));
        let mut last_err = Error::corrupt("no commit slot authenticates", COMMIT_SLOTS[0]);
        for (rec, i) in candidates {
            if rec.data_end < DATA_START || rec.data_end > file_len {
                last_err = Error::corrupt(
                    "commit record points past the end of the file",
                    COMMIT_SLOTS[i],
                );
                continue;
            }
            self.store.set_tail(rec.data_end);
            let roots_ok = [(Kind::TocNode, &rec.toc), (Kind::VarNode, &rec.vars)]
                .into_iter()
                .try_for_each(|(kind, t)| match t.root {
                    Some(p) if t.height >= 1 && t.height <= crate::format::MAX_TREE_HEIGHT => self
                        .store
                        .read_node(kind, &p, (t.height - 1) as u8)
                        .map(|_| ()),
                    Some(p) => Err(Error::corrupt("tree height out of range", p.offset)),
                    None => Ok(()),
                });
            match roots_ok {
                Ok(()) => {
                    self.committed = rec;
                    self.active_slot = i;
                    return Ok(());
                }
                Err(e) => {
                    self.store.clear_cache();
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }

    fn write_commit_slot(&mut self, rec: CommitRecord) -> Result<u64> {
        let slot = 1 - self.active_slot;
        let off = COMMIT_SLOTS[slot];
        let mut p = Prepared::new(&rec.encode(), None)?;
        let aad = seal::aad(
            self.store.archive_id(),
            Kind::Commit,
            off,
            0,
            RECORD_LEN as u32,
        );
        p.seal(&self.store.keys().commit, &aad)?;
        self.store.backend().write_at(off, &p.buf)?;
        self.store.backend().sync()?;
        self.committed = rec;
        self.active_slot = slot;
        Ok(p.buf.len() as u64)
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Runs a write; a failure poisons the handle (a failed write or sync
    /// is never retried as if nothing happened).
    pub(crate) fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.check_writable()?;
        let r = f(self);
        if let Err(Error::Io(_)) = &r {
            self.poisoned = true;
        }
        r
    }

    /// Generation of regions written by the commit being staged.
    pub(crate) fn next_gen(&self) -> u64 {
        self.committed.seq + 1
    }

    /// Writes the open pack and points its members at it.
    pub(crate) fn flush_pack(&mut self) -> Result<u64> {
        let generation = self.next_gen();
        let Some((id, ptr, members)) = self.pack.flush(&self.store, generation)? else {
            return Ok(0);
        };
        for m in members {
            let content = match &m {
                Member::Toc(k) => self
                    .toc
                    .get_mut(k)
                    .and_then(|e| e.as_mut())
                    .map(|r| &mut r.content),
                Member::Var(k) => self
                    .vars
                    .get_mut(k)
                    .and_then(|e| e.as_mut())
                    .map(|r| &mut r.content),
            };
            if let Some(c) = content
                && let Content::Pending { pack_id, offset } = *c
                && pack_id == id
            {
                *c = Content::Packed { frame: ptr, offset };
            }
        }
        Ok(ptr.len as u64)
    }

    /// Whether anything is staged.
    pub fn has_changes(&self) -> bool {
        !self.toc.is_empty() || !self.vars.is_empty()
    }

    /// Makes every staged change durable and visible, atomically: new
    /// pages are written and synced, then the inactive commit slot is
    /// written and synced. A crash at any point leaves the old or the new
    /// commit, never a mix.
    pub fn commit(&mut self) -> Result<CommitStats> {
        self.guarded(|lb| lb.commit_inner())
    }

    fn commit_inner(&mut self) -> Result<CommitStats> {
        let started = Instant::now();
        if !self.has_changes() {
            return Ok(CommitStats {
                sequence: self.committed.seq,
                duration: started.elapsed(),
                ..Default::default()
            });
        }
        let r = self.commit_pages();
        if r.is_err() {
            // Pages may be half written: only a reopen knows what is durable.
            self.poisoned = true;
        }
        let (mut stats, rec) = r?;
        stats.bytes_written += self
            .write_commit_slot(rec)
            .inspect_err(|_| self.poisoned = true)?;
        self.toc.clear();
        self.vars.clear();
        stats.duration = started.elapsed();
        Ok(stats)
    }

    fn commit_pages(&mut self) -> Result<(CommitStats, CommitRecord)> {
        let generation = self.next_gen();
        let mut stats = CommitStats {
            sequence: generation,
            entries_changed: (self.toc.len() + self.vars.len()) as u64,
            ..Default::default()
        };
        let pack_bytes = self.flush_pack()?;
        let pending = |c: &Content| matches!(c, Content::Pending { .. });
        if self.toc.values().flatten().any(|r| pending(&r.content))
            || self.vars.values().flatten().any(|r| pending(&r.content))
        {
            return Err(Error::corrupt(
                "internal: staged content not written before commit",
                0,
            ));
        }
        if pack_bytes > 0 {
            stats.pages_written += 1;
            stats.bytes_written += pack_bytes;
        }
        let cap = self.header.node_capacity as usize;
        let toc_changes: Vec<Change> = self
            .toc
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(Record::encode)))
            .collect();
        let mut a = Applier::new(&self.store, Kind::TocNode, generation, cap);
        let toc = a.apply(&self.committed.toc, &toc_changes)?;
        stats.pages_written += a.pages_written;
        stats.bytes_written += a.bytes_written;
        let var_changes: Vec<Change> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(VarRecord::encode)))
            .collect();
        let mut a = Applier::new(&self.store, Kind::VarNode, generation, cap);
        let vars = a.apply(&self.committed.vars, &var_changes)?;
        stats.pages_written += a.pages_written;
        stats.bytes_written += a.bytes_written;
        self.store.backend().sync()?;
        let rec = CommitRecord {
            seq: generation,
            data_end: self.store.tail(),
            toc,
            vars,
            time: now().0,
        };
        Ok((stats, rec))
    }

    /// Drops every staged change.
    pub fn rollback(&mut self) {
        self.toc.clear();
        self.vars.clear();
        self.pack.discard();
        self.store.set_tail(self.committed.data_end);
        // Drop the uncommitted tail; a failure here is harmless (the next
        // write overwrites it) but poisons the handle like any failed write.
        if !self.read_only
            && self
                .store
                .backend()
                .set_len(self.committed.data_end)
                .is_err()
        {
            self.poisoned = true;
        }
    }

    /// Sets the cache profile.
    pub fn set_profile(&mut self, profile: Profile) {
        self.profile = profile;
        self.store.set_cache_frames(profile.caches_frames());
    }

    /// Cache hits, misses and bytes held.
    pub fn cache_stats(&self) -> CacheStats {
        self.store.cache_stats()
    }

    /// Backend operations since this handle was opened.
    pub fn io_stats(&self) -> IoStats {
        self.store.io_stats()
    }

    /// Sequence number of the last durable commit.
    pub fn sequence(&self) -> u64 {
        self.committed.seq
    }

    /// The bytes of the lockbox as of its last commit (staged changes are
    /// not included). For in-memory lockboxes: keep them and reopen with
    /// [`Builder::open_bytes`].
    pub fn image(&self) -> Result<Vec<u8>> {
        let len = self.committed.data_end;
        let mut out = vec![0u8; len as usize];
        self.store.backend().read_at(0, &mut out)?;
        Ok(out)
    }

    pub(crate) fn toc_root(&self) -> &TreeRoot {
        &self.committed.toc
    }
}

/// Now as Unix seconds and nanoseconds.
pub(crate) fn now() -> (i64, u32) {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(_) => (0, 0),
    }
}
