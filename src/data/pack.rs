//! Small files packed many to a frame, so they compress together and cost
//! one region instead of one each. The open pack lives in memory until it
//! fills; a full pack starts compressing on the worker threads at once
//! (while the writer goes on packing) and waits in a short queue until it
//! is written, in order, once a few newer packs have closed. Entries
//! staged into a pack point at it with `Content::Pending` until it is
//! written.

use std::sync::Arc;

use crate::storage::store::{Compressing, Store};

/// Whose bytes a pack holds: a TOC entry or a variable, by key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Member {
    Toc(Vec<u8>),
    Var(Vec<u8>),
}

/// One pack: its bytes and who put bytes in it, where: (member, offset,
/// length). A member whose staged content no longer points at that offset
/// of this pack has died (replaced, deleted or renamed away).
pub struct Pack {
    /// Identifies this pack among the handle's packs.
    pub id: u64,
    /// Shared with its compression while that runs.
    pub buf: Arc<Vec<u8>>,
    pub members: Vec<(Member, u32, u32)>,
    /// Its compression, started when it closed; `None` if not started or
    /// if `buf` changed since (then it is compressed when written).
    pub compressing: Option<Compressing>,
}

impl Pack {
    fn new(id: u64) -> Pack {
        Pack {
            id,
            buf: Arc::new(Vec::new()),
            members: Vec::new(),
            compressing: None,
        }
    }
}

/// Closed packs left compressing while older ones are written: enough to
/// keep every worker busy, few enough that little waits for the commit.
const KEEP_COMPRESSING: usize = 4;

/// The open pack and the queue of full ones.
pub struct Packer {
    open: Pack,
    closed: Vec<Pack>,
    /// Target raw size of one pack.
    pub target: usize,
    /// The buffer of a pack written already, for the next one to fill
    /// (its pages are mapped: a fresh 1 MiB buffer per pack cost an import
    /// of 10,000 small files 256 page faults a pack).
    spare: Vec<u8>,
}

impl Packer {
    pub fn new(target: usize) -> Packer {
        Packer {
            open: Pack::new(1),
            closed: Vec::new(),
            target,
            spare: Vec::new(),
        }
    }

    /// Whether `len` more bytes fit in the open pack without passing the
    /// target frame size.
    pub fn fits(&self, len: usize) -> bool {
        self.open.buf.len() + len <= self.target
    }

    /// Appends `data` for `member` to the open pack; returns the pack's id
    /// and the offset of the data in it.
    pub fn add(&mut self, member: Member, data: &[u8]) -> (u64, u32) {
        // The open pack's buffer is never shared: this does not copy.
        let buf = Arc::make_mut(&mut self.open.buf);
        if buf.capacity() == 0 {
            *buf = std::mem::take(&mut self.spare);
            buf.clear();
            buf.reserve_exact(self.target);
        }
        let off = buf.len() as u32;
        buf.extend_from_slice(data);
        self.open.members.push((member, off, data.len() as u32));
        (self.open.id, off)
    }

    /// The bytes of pack `id`, if it is still in memory.
    pub fn buf(&self, id: u64) -> Option<&[u8]> {
        self.find(id).map(|p| p.buf.as_slice())
    }

    /// Notes that `member` now (also) uses `len` bytes at `offset` of pack
    /// `id` (a rename).
    pub fn add_member(&mut self, id: u64, member: Member, offset: u32, len: u32) {
        if self.open.id == id {
            self.open.members.push((member, offset, len));
        } else if let Some(p) = self.closed.iter_mut().find(|p| p.id == id) {
            p.members.push((member, offset, len));
        }
    }

    fn find(&self, id: u64) -> Option<&Pack> {
        if self.open.id == id {
            return Some(&self.open);
        }
        self.closed.iter().find(|p| p.id == id)
    }

    /// Closes the open pack (if it holds anything), starts compressing it
    /// on `store`'s workers, and starts the next.
    pub fn close(&mut self, store: &Store) {
        if !self.open.buf.is_empty() {
            let next = Pack::new(self.open.id + 1);
            let mut full = std::mem::replace(&mut self.open, next);
            full.compressing = store.start_frame(full.buf.clone());
            self.closed.push(full);
        }
    }

    /// How many closed packs to write now: those beyond the newest
    /// `KEEP_COMPRESSING` (older ones have had the time of that many packs
    /// being filled to compress, so the writer seldom waits; the newest
    /// keep every worker busy). The count depends only on how many packs
    /// closed, never on timing, so the writes a change makes are the same
    /// in every run (crash tests replay them operation by operation).
    pub fn ready(&self) -> usize {
        self.closed.len().saturating_sub(KEEP_COMPRESSING)
    }

    /// Takes the first `n` closed packs, to be written.
    pub fn take_closed(&mut self, n: usize) -> Vec<Pack> {
        let n = n.min(self.closed.len());
        self.closed.drain(..n).collect()
    }

    /// Takes back the buffer of a pack that was written (if nothing else
    /// holds it), for the next pack.
    pub fn recycle(&mut self, buf: Arc<Vec<u8>>) {
        if let Ok(b) = Arc::try_unwrap(buf)
            && b.capacity() >= self.spare.capacity()
        {
            self.spare = b;
        }
    }

    /// Puts back packs taken by [`Packer::take_closed`] whose write failed.
    pub fn restore_closed(&mut self, mut packs: Vec<Pack>) {
        packs.append(&mut self.closed);
        self.closed = packs;
    }

    /// Drops every pack in memory (rollback). Ids are never reused, so a
    /// stale `Pending` can never name a later pack.
    pub fn discard(&mut self) {
        let next = self
            .closed
            .iter()
            .map(|p| p.id)
            .chain([self.open.id])
            .max()
            .unwrap_or(0)
            + 1;
        self.closed.clear();
        self.open = Pack::new(next);
    }
}
