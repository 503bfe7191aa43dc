//! Small files packed many to a frame, so they compress together and cost
//! one region instead of one each. The open pack lives in memory until it
//! fills; full packs wait in a short queue so that several are compressed
//! and sealed at once on the worker threads and written as one run.
//! Entries staged into a pack point at it with `Content::Pending` until it
//! is written.

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
    pub buf: Vec<u8>,
    pub members: Vec<(Member, u32, u32)>,
}

/// Full packs kept before they are written together: enough to keep every
/// worker busy, few enough to bound memory (a few MiB).
const QUEUE_PACKS: usize = 16;

/// The open pack and the queue of full ones.
pub struct Packer {
    open: Pack,
    closed: Vec<Pack>,
    /// Target raw size of one pack.
    pub target: usize,
}

impl Packer {
    pub fn new(target: usize) -> Packer {
        Packer {
            open: Pack {
                id: 1,
                buf: Vec::new(),
                members: Vec::new(),
            },
            closed: Vec::new(),
            target,
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
        if self.open.buf.capacity() == 0 {
            self.open.buf.reserve_exact(self.target);
        }
        let off = self.open.buf.len() as u32;
        self.open.buf.extend_from_slice(data);
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

    /// Closes the open pack (if it holds anything) and starts the next.
    /// Returns whether the queue of closed packs is full.
    pub fn close(&mut self) -> bool {
        if !self.open.buf.is_empty() {
            let next = Pack {
                id: self.open.id + 1,
                buf: Vec::new(),
                members: Vec::new(),
            };
            self.closed.push(std::mem::replace(&mut self.open, next));
        }
        self.closed.len() >= QUEUE_PACKS
    }

    /// Takes the closed packs, to be written.
    pub fn take_closed(&mut self) -> Vec<Pack> {
        std::mem::take(&mut self.closed)
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
        self.open = Pack {
            id: next,
            buf: Vec::new(),
            members: Vec::new(),
        };
    }
}
