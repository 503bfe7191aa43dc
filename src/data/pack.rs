//! Small files packed many to a frame, so they compress together and cost
//! one region instead of one each. The open pack lives in memory until it
//! fills or the handle commits; entries staged into it point at it with
//! `Content::Pending` until it is written.

use crate::crypto::seal::Kind;
use crate::error::Result;
use crate::format::ptr::Ptr;
use crate::storage::store::Store;

/// Whose bytes a pack holds: a TOC entry or a variable, by key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Member {
    Toc(Vec<u8>),
    Var(Vec<u8>),
}

pub struct Pack {
    /// Identifies this pack among the handle's packs.
    pub id: u64,
    pub buf: Vec<u8>,
    pub members: Vec<Member>,
    pub target: usize,
}

impl Pack {
    pub fn new(target: usize) -> Pack {
        Pack {
            id: 1,
            buf: Vec::new(),
            members: Vec::new(),
            target,
        }
    }

    /// Whether `len` more bytes fit without passing the target frame size.
    pub fn fits(&self, len: usize) -> bool {
        self.buf.len() + len <= self.target
    }

    /// Appends `data` for `member`; returns its offset in the pack.
    pub fn add(&mut self, member: Member, data: &[u8]) -> u32 {
        let off = self.buf.len() as u32;
        self.buf.extend_from_slice(data);
        self.members.push(member);
        off
    }

    /// Writes the pack as one frame and starts the next one. Returns the
    /// written pack's id, its pointer and its members (`None` if empty).
    pub fn flush(
        &mut self,
        store: &Store,
        generation: u64,
    ) -> Result<Option<(u64, Ptr, Vec<Member>)>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let ptr = store.write_region(Kind::Frame, generation, &self.buf)?;
        let id = self.id;
        self.id += 1;
        self.buf.clear();
        Ok(Some((id, ptr, std::mem::take(&mut self.members))))
    }

    /// Drops the open pack (rollback).
    pub fn discard(&mut self) {
        self.id += 1;
        self.buf.clear();
        self.members.clear();
    }
}
