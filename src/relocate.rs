//! Relocation commits: repacking after the commit point.
//!
//! Redaction needs every packed frame that holds a deleted or replaced
//! member to go: its live members are copied into a new pack and the old
//! frame is freed and zeroed. Done inside the user's commit, a change that
//! touches most packs (a random 30 % churn of small files touches nearly
//! all of them) writes a second copy of nearly all packed data while the
//! first is still reachable from the previous commit, so the file peaks
//! near twice its live size and the holes stay.
//!
//! So the user's commit only names such frames (its redaction list's
//! `repack` part), and `commit()` then runs *relocation commits*: each
//! takes a batch of those frames, copies their live members into new packs
//! (placed best fit into the space the previous step freed), repoints
//! their records and pack references, and commits normally, listing the
//! frames it emptied for zeroing and the rest as still pending. No
//! relocation commit changes what the lockbox holds, so a crash between
//! any two leaves the user's commit, logically. The file then peaks at
//! about its live size plus the new data plus one batch.
//!
//! A commit whose frames to repack fit in one batch and in 4 MiB (a few
//! files deleted or replaced: the usual case) repacks them itself
//! (`repack_now`), as one
//! batch: a relocation commit would rewrite the same tree paths again and
//! sync three more times, for no lower peak.
//!
//! The last commit's redaction mark (format.md §6) is written only once
//! nothing is pending, so a crash in between makes the next writable open
//! redo the redaction and finish the relocation (`finish_redaction`).

use std::collections::BTreeSet;

use ahash::AHashMap as HashMap;

use crate::btree;
use crate::crypto::seal::Kind;
use crate::data::pack::Member;
use crate::error::{Error, Result};
use crate::format::entry::{Content, Record, VarRecord};
use crate::format::ptr::Ptr;
use crate::lockbox::Lockbox;
use crate::options::CommitStats;

/// The least a relocation batch may write when there is less free space:
/// `1 / MIN_BATCH_SHARE` of the file, within `MIN_BATCH..=MAX_MIN_BATCH`.
/// A larger batch means fewer relocation commits (each rewrites the TOC
/// leaves and pack references of the members it moves, and pays for a
/// commit's syncs); a smaller one, less growth when there is no free space
/// yet (what a batch writes past the free space stays as holes later).
const MIN_BATCH_SHARE: u64 = 32;
const MIN_BATCH: u64 = 256 << 10;
const MAX_MIN_BATCH: u64 = 4 << 20;

/// Records a relocation batch restages at most (as `compact` commits every
/// 50,000 entries): the staged overlay, not the frames, is what a batch
/// holds in memory.
const MAX_BATCH_ENTRIES: usize = 50_000;

/// The most a commit repacks itself (sealed frame bytes), however much
/// free space there is: beyond that, saving one relocation commit is worth
/// little, and the commit's overlay would grow with every member moved.
const MAX_INLINE: u64 = 4 << 20;

impl Lockbox {
    /// Runs relocation commits until no packed frame is left to repack.
    /// Adds their pages and bytes to `stats` and sets its sequence to the
    /// last durable commit. Needs the allocator loaded (a writable handle
    /// after its first change, or `finish_redaction`).
    pub(crate) fn relocate_pending(&mut self, stats: &mut CommitStats) -> Result<()> {
        while !self.repack_pending.is_empty() {
            let pending = self.repack_pending.len();
            let before = self.store.io_stats().bytes_written;
            let r = self.stage_relocation().and_then(|()| self.commit_staged());
            let s = r.inspect_err(|_| self.poisoned = true)?;
            stats.pages_written += s.pages_written;
            stats.bytes_written += self.store.io_stats().bytes_written - before;
            stats.sequence = self.committed.seq;
            stats.relocations += 1;
            if self.repack_pending.len() >= pending {
                // Each relocation commit frees its whole batch and adds
                // nothing: anything else is a damaged list or a bug, and
                // must not loop for ever.
                self.poisoned = true;
                return Err(Error::corrupt("relocation made no progress", 0));
            }
        }
        Ok(())
    }

    /// How many new bytes the next batch may write: what the free space
    /// now available can take in pack-sized pieces (a free extent's
    /// remainder smaller than a pack is left for tree nodes), or at least
    /// a small share of the file, so a file with no free space yet makes
    /// progress, growing by at most that much. Sized by free space, a
    /// batch's new packs go into space that is already free, so relocation
    /// does not grow the file; and each batch frees more than it writes
    /// (its dead members), so the batches grow.
    /// `unit` is the typical sealed size of a pack.
    pub(crate) fn relocation_budget(&self, unit: u64) -> u64 {
        if let Some(n) = self.builder.relocation_batch {
            return n;
        }
        let free = self
            .store
            .with_allocator(|a| a.usable_bytes(unit))
            .unwrap_or(0);
        let floor = (self.committed.data_end / MIN_BATCH_SHARE).clamp(MIN_BATCH, MAX_MIN_BATCH);
        floor.max(free)
    }

    /// Whether a commit repacks `frames` (packed frames left with live and
    /// dead members) itself: they fit in one relocation batch, and in
    /// [`MAX_INLINE`], and no test knob asks for relocation commits.
    pub(crate) fn repack_inline(&self, frames: &[Ptr]) -> bool {
        if frames.is_empty() || self.builder.relocation_batch.is_some() {
            return false;
        }
        let bytes: u64 = frames.iter().map(|p| p.len as u64).sum();
        let unit = bytes / frames.len() as u64;
        bytes <= MAX_INLINE.min(self.relocation_budget(unit))
    }

    /// Stages a relocation: every live member of the next batch of frames
    /// (found through the pack-reference tree) is copied into the open
    /// pack and its record restaged with the new location. The commit then
    /// finds those frames with no member left and frees them.
    ///
    /// Frames are taken from the end of the file down (what they leave at
    /// the tail is trimmed off) until the estimated size of the new packs
    /// reaches the budget, at least one frame.
    fn stage_relocation(&mut self) -> Result<()> {
        let n = self.repack_pending.len().max(1) as u64;
        let budget =
            self.relocation_budget(self.repack_pending.iter().map(|f| f.1).sum::<u64>() / n);
        // New bytes the commit will write: the members' new packs, and the
        // TOC and variable leaves that hold their records (each rewritten
        // once however many of its records change).
        let mut estimate = 0u64;
        let mut leaves: BTreeSet<u64> = BTreeSet::new();
        let pending: Vec<(u64, u64)> = self.repack_pending.iter().rev().copied().collect();
        for (at, len) in pending {
            if estimate >= budget || self.toc.len() + self.vars.len() >= MAX_BATCH_ENTRIES {
                break;
            }
            let mut members = Vec::new();
            for (tag, key) in self.pack_members(at)? {
                let missing = || Error::corrupt("pack reference to a missing entry", at);
                let (kind, tree) = if tag == b'T' {
                    (Kind::TocNode, &self.committed.toc)
                } else {
                    (Kind::VarNode, &self.committed.vars)
                };
                let (value, leaf) =
                    btree::get_in_leaf(&self.store, kind, tree, &key)?.ok_or_else(missing)?;
                let value = value.ok_or_else(missing)?;
                if leaves.insert(leaf.offset) {
                    estimate += leaf.len as u64;
                }
                members.push(if kind == Kind::TocNode {
                    Moved::Toc(key, Record::decode(&value, leaf.offset)?)
                } else {
                    Moved::Var(key, VarRecord::decode(&value, leaf.offset)?)
                });
            }
            let (frame, live) = self.move_members((at, len), members)?;
            // Sealed bytes the live members will take, at this frame's
            // compression ratio.
            estimate += (live as u128 * frame.len as u128 / (frame.raw_len as u128).max(1)) as u64;
        }
        Ok(())
    }

    /// Repacks `frames` inside the commit being planned, because they fit
    /// in one relocation batch: a separate relocation commit would cost a
    /// second rewrite of the same tree paths and three more syncs for no
    /// lower peak. Every live member, committed or staged (renamed in this
    /// commit), moves into the open pack; the frames are then freed.
    pub(crate) fn repack_now(&mut self, frames: &[Ptr]) -> Result<()> {
        // Staged users of every frame, found in one pass.
        let mut users = self.staged_users();
        for frame in frames {
            let at = frame.offset;
            let mut members = Vec::new();
            for (tag, key) in self.pack_members(at)? {
                let missing = || Error::corrupt("pack reference to a missing entry", at);
                // Staged ones are found below, if still in this frame.
                if tag == b'T' && !self.toc.contains_key(&key) {
                    let r = self.old_toc(&key)?.ok_or_else(missing)?;
                    members.push(Moved::Toc(key, r));
                } else if tag == b'V' && !self.vars.contains_key(&key) {
                    let r = self.old_var(&key)?.ok_or_else(missing)?;
                    members.push(Moved::Var(key, r));
                }
            }
            let (toc, vars) = users.remove(&(at, frame.tag)).unwrap_or_default();
            for k in toc {
                if let Some(Some(r)) = self.toc.get(&k) {
                    members.push(Moved::Toc(k.clone(), r.clone()));
                }
            }
            for k in vars {
                if let Some(Some(r)) = self.vars.get(&k) {
                    members.push(Moved::Var(k.clone(), r.clone()));
                }
            }
            self.move_members((at, frame.len as u64), members)?;
        }
        Ok(())
    }

    /// Copies `members` out of the frame at `(at, len)` into the open pack
    /// and stages their records with the new locations. Returns the frame's
    /// pointer (taken from a member's record) and the bytes moved.
    fn move_members(&mut self, (at, len): (u64, u64), members: Vec<Moved>) -> Result<(Ptr, u64)> {
        let Some(first) = members.first() else {
            return Err(Error::corrupt("frame to repack has no live member", at));
        };
        // Opened through a record's own pointer (reached through
        // authenticated nodes), and decoded once for all its members.
        let frame = packed_in((at, len), first.content())?.0;
        let bytes = self.store.with_frame(&frame, |b| Ok(b.to_vec()))?;
        let mut live = 0u64;
        let mut moved = HashMap::new();
        for m in members {
            let (_, offset) = packed_in((at, len), m.content())?;
            let range = (offset, m.len());
            let data = bytes
                .get(offset as usize..)
                .and_then(|b| b.get(..usize::try_from(m.len()).ok()?))
                .ok_or_else(|| Error::corrupt("packed file beyond its frame", at))?;
            live += data.len() as u64;
            match m {
                Moved::Toc(key, mut r) => {
                    let member = Member::Toc(key.clone());
                    r.content = self.move_range(member, range, data, &mut moved)?;
                    self.toc.insert(key, Some(r));
                }
                Moved::Var(key, mut r) => {
                    let member = Member::Var(key.clone());
                    r.content = self.move_range(member, range, data, &mut moved)?;
                    self.vars.insert(key, Some(r));
                }
            }
        }
        Ok((frame, live))
    }
}

/// A member being moved: its key and committed record.
enum Moved {
    Toc(Vec<u8>, Record),
    Var(Vec<u8>, VarRecord),
}

impl Moved {
    fn content(&self) -> &Content {
        match self {
            Moved::Toc(_, r) => &r.content,
            Moved::Var(_, r) => &r.content,
        }
    }

    fn len(&self) -> u64 {
        match self {
            Moved::Toc(_, r) => r.len,
            Moved::Var(_, r) => r.len,
        }
    }
}

/// The member's frame pointer and offset in it; the frame must be the one
/// at `(at, len)`.
fn packed_in((at, len): (u64, u64), content: &Content) -> Result<(Ptr, u32)> {
    match content {
        Content::Packed { frame: f, offset } if f.offset == at && f.len as u64 == len => {
            Ok((*f, *offset))
        }
        Content::Packed { .. } => Err(Error::corrupt("pack reference to another frame", at)),
        _ => Err(Error::corrupt("pack reference to unpacked content", at)),
    }
}
