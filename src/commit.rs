//! Commit, redaction and rollback.
//!
//! A commit: work out freed space and repack (`space.rs`), write the pack,
//! tree nodes, free-space index and redaction list, sync, write the
//! inactive commit slot, sync (the commit point). Then redact: write the
//! other slot with the same record so no slot reaches the old state, zero
//! every region in the redaction list, trim the file, sync. A crash after
//! the commit point leaves the redaction to the next writable open
//! (`finish_redaction`), which redoes it; it is idempotent.

use std::time::Instant;

use crate::btree::apply::{Applier, Change};
use crate::crypto::seal::Kind;
use crate::error::{Error, Result};
use crate::format::commit::CommitRecord;
use crate::format::entry::{Content, Record, VarRecord};
use crate::format::{REDACT_DIRTY, REDACT_MARK};
use crate::lockbox::{Lockbox, now};
use crate::options::CommitStats;
use crate::space::{RedactList, SpacePlan, merge_extents};
use crate::staged::Overlay;

impl Lockbox {
    /// Makes every staged change durable and visible, atomically: new
    /// pages are written and synced, then the inactive commit slot is
    /// written and synced. A crash at any point leaves the old or the new
    /// commit, never a mix. When it returns, the space the changes freed
    /// has been overwritten with zeros and no commit slot reaches it.
    ///
    /// A commit that leaves packed frames holding dead members next to
    /// live ones is followed by relocation commits that move the live
    /// members and free those frames (`relocate.rs`); they change no
    /// content, and [`CommitStats`] covers them all.
    pub fn commit(&mut self) -> Result<CommitStats> {
        self.guarded(|lb| lb.commit_inner())
    }

    fn commit_inner(&mut self) -> Result<CommitStats> {
        let started = Instant::now();
        let mut stats = CommitStats {
            sequence: self.committed.seq,
            ..Default::default()
        };
        if self.has_changes() {
            stats = self.commit_staged()?;
        }
        // Normally nothing is pending before a user commit (the last one
        // relocated everything, or the open did); a list that says
        // otherwise is worked off here as well.
        if let Err(e) = self.relocate_pending(&mut stats) {
            self.poisoned = true;
            return Err(match e {
                e @ Error::RedactionPending { .. } => e,
                e => Error::RedactionPending {
                    sequence: self.committed.seq,
                    source: Box::new(e),
                },
            });
        }
        stats.duration = started.elapsed();
        Ok(stats)
    }

    /// One complete commit of what is staged: pages, commit point,
    /// redaction, release of the freed space. A failure before the commit
    /// point is returned as is; after it, as `RedactionPending`. Either
    /// poisons the handle.
    pub(crate) fn commit_staged(&mut self) -> Result<CommitStats> {
        let r = self.commit_pages();
        if r.is_err() {
            // Pages may be half written: only a reopen knows what is durable.
            self.poisoned = true;
        }
        let (mut stats, rec, redact, taken) = r?;
        match self.write_commit_slot(rec) {
            Ok(n) => stats.bytes_written += n,
            Err(e) => {
                self.poisoned = true;
                taken.restore(self);
                return Err(e);
            }
        }
        drop(taken);
        // Durable: this commit's allocations are no longer the session's.
        self.store.with_allocator(|a| a.session.clear());
        self.toc.clear();
        self.vars.clear();
        self.session_packs.clear();
        self.stream_bufs.clear();
        self.dedup.clear();
        self.repack_pending = redact.repack.clone();
        match self.redact(&redact) {
            Ok(n) => stats.bytes_written += n,
            Err(e) => {
                self.poisoned = true;
                return Err(Error::RedactionPending {
                    sequence: self.committed.seq,
                    source: Box::new(e),
                });
            }
        }
        self.store.with_allocator(|a| {
            a.committed();
            for (o, l) in redact.all() {
                a.release(o, l);
            }
            a.committed_extra();
        });
        Ok(stats)
    }

    /// Plans the space, then writes every page of the commit and syncs:
    /// everything before the commit point. The staged entries are taken
    /// out for the writing and put back if it fails.
    fn commit_pages(&mut self) -> Result<(CommitStats, CommitRecord, RedactList, Taken)> {
        let stats = CommitStats {
            sequence: self.next_gen(),
            entries_changed: (self.toc.len() + self.vars.len()) as u64,
            ..Default::default()
        };
        // What was written before this commit (data frames) goes to the
        // disk while the commit plans and writes its pages.
        self.store.backend().start_sync();
        let plan = self.plan_space()?;
        let pending = |c: &Content| matches!(c, Content::Pending { .. });
        if self.toc.values().flatten().any(|r| pending(&r.content))
            || self.vars.values().flatten().any(|r| pending(&r.content))
        {
            return Err(Error::corrupt(
                "internal: staged content not written before commit",
                0,
            ));
        }
        let (taken, changes) = Taken::from(self);
        match self.write_pages(plan, changes, stats) {
            Ok((stats, rec, redact)) => Ok((stats, rec, redact, taken)),
            Err(e) => {
                taken.restore(self);
                Err(e)
            }
        }
    }

    fn write_pages(
        &mut self,
        plan: SpacePlan,
        (mut toc_changes, mut var_changes): (Vec<Change>, Vec<Change>),
        mut stats: CommitStats,
    ) -> Result<(CommitStats, CommitRecord, RedactList)> {
        let generation = self.next_gen();
        let cap = self.header.node_capacity as usize;
        let before = self.store.io_stats();
        let SpacePlan {
            mut freed,
            mut plain,
            mut pack_changes,
            repack,
        } = plan;
        let apply = |kind: Kind,
                     root,
                     changes: &mut [Change],
                     stats: &mut CommitStats,
                     freed: &mut Vec<(u64, u64)>| {
            let mut a = Applier::new(&self.store, kind, generation, cap);
            let r = a.apply(root, changes)?;
            stats.pages_written += a.pages_written;
            freed.extend(a.freed.iter().map(|p| (p.offset, p.len as u64)));
            self.store.forget(&a.freed);
            Ok::<_, Error>(r)
        };
        let toc = apply(
            Kind::TocNode,
            &self.committed.toc,
            &mut toc_changes,
            &mut stats,
            &mut freed,
        )?;
        let vars = apply(
            Kind::VarNode,
            &self.committed.vars,
            &mut var_changes,
            &mut stats,
            &mut freed,
        )?;
        let packs = apply(
            Kind::PackNode,
            &self.committed.packs,
            &mut pack_changes,
            &mut stats,
            &mut freed,
        )?;
        let (free, old_free_pages, pages, _) = self.apply_free_index(generation, cap)?;
        stats.pages_written += pages;
        plain.extend(old_free_pages.iter().map(|p| (p.offset, p.len as u64)));
        let freed = RedactList {
            zero: merge_extents(freed),
            plain: merge_extents(plain),
            repack,
        };
        let redact = if freed.is_empty() {
            None
        } else {
            self.store.set_tail_only(true);
            let r = self
                .store
                .write_region(Kind::RedactList, generation, &freed.encode());
            self.store.set_tail_only(false);
            stats.pages_written += 1;
            Some(r?)
        };
        self.store.take_written();
        self.store.backend().sync()?;
        stats.bytes_written += self.store.io_stats().bytes_written - before.bytes_written;
        let rec = CommitRecord {
            seq: generation,
            data_end: self.store.tail(),
            toc,
            vars,
            time: now().0,
            packs,
            free,
            redact,
        };
        Ok((stats, rec, freed))
    }

    /// After the commit point: the other slot gets the same record, the
    /// freed extents are zeroed, the file is trimmed to the committed end.
    /// Returns bytes written.
    fn redact(&mut self, list: &RedactList) -> Result<u64> {
        let other = 1 - self.active_slot;
        let mut n = self.put_commit_slot(other, &self.committed.clone())?;
        self.other_seq = Some(self.committed.seq);
        let end = self.committed.data_end;
        for (o, l) in list.all() {
            let l = l.min(end.saturating_sub(o));
            if l > 0 {
                self.store.zero(o, l)?;
                n += l;
            }
        }
        let be = self.store.backend();
        if be.len()? > end {
            be.set_len(end)?;
        }
        be.sync()?;
        if !list.repack.is_empty() {
            // Frames still hold dead members until the relocation commits
            // have moved their live ones: the mark must not say this
            // commit is finished, so a crash before then makes the next
            // writable open redo this and run them (`finish_redaction`).
            // The dirty state (if any) stays as it is.
            return Ok(n);
        }
        // Only once the zeros are durable may the mark say so. It is not
        // synced here: if it is lost, the next writable open redoes this
        // (idempotent); the next write into free space syncs it anyway.
        be.write_at(REDACT_MARK, &self.committed.seq.to_le_bytes())?;
        self.store.set_clean();
        Ok(n)
    }

    /// On a writable open: finishes the last commit's redaction if a crash
    /// may have cut it short (the marker does not name this commit, or the
    /// other slot still holds an older one).
    pub(crate) fn finish_redaction(&mut self) -> Result<()> {
        let mut mark = [0u8; 8];
        self.store.backend().read_at(REDACT_MARK, &mut mark)?;
        let mark = u64::from_le_bytes(mark);
        let done = mark == self.committed.seq && self.other_seq == Some(self.committed.seq);
        if done {
            let be = self.store.backend();
            if be.len()? > self.committed.data_end {
                // Pages of a commit that never reached its commit point.
                be.set_len(self.committed.data_end)?;
                be.sync()?;
            }
            return Ok(());
        }
        let mut list = self.redact_list()?;
        if mark == REDACT_DIRTY {
            // A writer used free space and stopped before committing or
            // rolling back: any free extent may hold its bytes.
            list.zero.extend(self.free_extents()?);
        }
        self.redact(&list)?;
        if !list.repack.is_empty() {
            // A crash cut the relocation commits short: packed frames
            // still hold dead members. Finish them now, so no completed
            // writable open leaves deleted bytes behind.
            self.ensure_allocator()?;
            let mut stats = CommitStats::default();
            self.relocate_pending(&mut stats).map_err(|e| match e {
                Error::RedactionPending { source, .. } => *source,
                e => e,
            })?;
        }
        Ok(())
    }

    /// Drops every staged change. Space this handle took from the free
    /// list is zeroed again and returned; the file is trimmed.
    pub fn rollback(&mut self) {
        self.toc.clear();
        self.vars.clear();
        self.pack.discard();
        self.session_packs.clear();
        self.stream_bufs.clear();
        self.dedup.clear();
        self.store.take_written();
        if self.poisoned {
            // After a failed write nothing on disk is touched: the last
            // durable commit (perhaps newer than this handle thinks, after
            // `RedactionPending`) is for the next open to recover.
            return;
        }
        let used = self
            .store
            .with_allocator(|a| std::mem::take(&mut a.session))
            .unwrap_or_default();
        self.store.with_allocator(|a| a.rollback());
        self.store.set_tail(self.committed.data_end);
        if self.read_only {
            return;
        }
        let end = self.committed.data_end;
        let r = (|| -> Result<()> {
            for (o, l) in used {
                self.store.zero(o, l)?;
            }
            let be = self.store.backend();
            if be.len()? > end {
                be.set_len(end)?;
            }
            if self.store.is_dirty() {
                be.sync()?;
                be.write_at(REDACT_MARK, &self.committed.seq.to_le_bytes())?;
                self.store.set_clean();
            }
            be.sync()
        })();
        if r.is_err() {
            self.poisoned = true;
        }
    }
}

impl Drop for Lockbox {
    /// Dropping a handle with staged changes rolls them back, so bytes it
    /// wrote into free space are zeroed again.
    fn drop(&mut self) {
        if !self.read_only && !self.poisoned && (self.has_changes() || self.store.is_dirty()) {
            self.rollback();
        }
    }
}

/// The staged entries while a commit writes them. Their keys move into the
/// tree changes, which the B-tree consumes; a copy of the keys packed in one
/// buffer and the records themselves stay here, so a commit that fails
/// before or at its commit point puts the entries back (a poisoned handle still
/// reads what was staged) without a copy of each key on the way.
pub(crate) struct Taken {
    keys: Vec<u8>,
    /// End of each key in `keys`: files first, then variables.
    ends: Vec<usize>,
    toc: Vec<Option<Record>>,
    vars: Vec<Option<VarRecord>>,
}

impl Taken {
    /// Takes the staged entries out of `lb`; returns them and the TOC and
    /// variable tree changes they make.
    fn from(lb: &mut Lockbox) -> (Taken, (Vec<Change>, Vec<Change>)) {
        let bytes = lb.toc.keys().chain(lb.vars.keys()).map(Vec::len).sum();
        let (mut keys, mut ends) = (Vec::with_capacity(bytes), Vec::new());
        let (toc_changes, toc) = take_overlay(&mut lb.toc, Record::encode, &mut keys, &mut ends);
        let (var_changes, vars) =
            take_overlay(&mut lb.vars, VarRecord::encode, &mut keys, &mut ends);
        let t = Taken {
            keys,
            ends,
            toc,
            vars,
        };
        (t, (toc_changes, var_changes))
    }

    /// Puts the entries back into `lb`'s overlays.
    fn restore(self, lb: &mut Lockbox) {
        let key = |i: usize| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            self.keys[start..self.ends[i]].to_vec()
        };
        let files = self.toc.len();
        let toc = self.toc.into_iter().enumerate();
        lb.toc = toc.map(|(i, v)| (key(i), v)).collect();
        let vars = self.vars.into_iter().enumerate();
        lb.vars = vars.map(|(i, v)| (key(files + i), v)).collect();
    }
}

/// Moves `overlay`'s entries out: their tree changes (keys moved, records
/// encoded) and their records; each key's bytes are appended to `keys`
/// and its end to `ends`.
fn take_overlay<V>(
    overlay: &mut Overlay<V>,
    encode: fn(&V) -> Vec<u8>,
    keys: &mut Vec<u8>,
    ends: &mut Vec<usize>,
) -> (Vec<Change>, Vec<Option<V>>) {
    let mut changes = Vec::with_capacity(overlay.len());
    let mut records = Vec::with_capacity(overlay.len());
    for (k, v) in std::mem::take(overlay) {
        keys.extend_from_slice(&k);
        ends.push(keys.len());
        changes.push((k, v.as_ref().map(encode)));
        records.push(v);
    }
    (changes, records)
}
