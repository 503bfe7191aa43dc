//! The content index: packed contents of earlier commits by keyed hash, so
//! that a content committed once is not stored again (`data::dedup` covers
//! contents staged in one session).
//!
//! It lives in the pack-reference tree, beside the member references
//! (docs/format.md §10):
//! - the reference of a packed member of at least `INDEX_MIN` bytes whose
//!   hash was known when it was staged carries that hash's *hint* (the
//!   first 16 bytes of its keyed BLAKE3 under the content-hash subkey) and
//!   its range: `hint[16] ‖ offset u32 ‖ len u32`. Other members have an
//!   empty value.
//! - an index entry `0xFF ‖ hint[16]` → `frame offset u64 ‖ offset u32 ‖
//!   len u32` names one range of a packed frame whose bytes have that hint.
//!   Member keys start with their frame's offset, big-endian, whose first
//!   byte is 0 (regions lie below 2^56), so index entries sort after every
//!   member and never fall inside a frame's key range.
//!
//! Each commit keeps one invariant, which `verify` checks: every index
//! entry names a range that a live member carrying the same hint uses. So
//! the commit that drops the last such member (deleted, replaced, or moved
//! by a repack, which re-points the entry) also removes the entry, and no
//! hint of deleted content outlives it. Not every hinted range has an
//! entry: two ranges with one hint share one entry (the latest staged).
//!
//! A hit is trusted as `data::dedup` trusts a written pack: 128 bits of a
//! keyed BLAKE3 under a key no one else holds cannot be collided on
//! purpose, and by chance only after about 2^64 contents. Contents under
//! `INDEX_MIN` are shared within a session only: an entry and a hint cost
//! about 60 bytes, a sizeable part of what a small compressed file takes.
//!
//! Commit-time restaging (repacks, relocation) never looks the index up: a
//! member moving out of a frame must not be pointed back into it.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::btree;
use crate::btree::apply::Change;
use crate::crypto::seal::Kind;
use crate::error::{Error, Result};
use crate::format::entry::Content;
use crate::format::ptr::Ptr;
use crate::lockbox::Lockbox;

/// First byte of an index entry's key.
pub const INDEX_PREFIX: u8 = 0xFF;
/// Smallest content the index holds.
pub const INDEX_MIN: usize = 4096;
/// Bytes of a member reference's value when it carries a hint.
pub const MEMBER_VALUE_LEN: usize = 24;

/// The first 16 bytes of a content's keyed hash.
pub type Hint = [u8; 16];

pub fn hint_of(hash: &[u8; 32]) -> Hint {
    let mut h = [0u8; 16];
    h.copy_from_slice(&hash[..16]);
    h
}

/// A range of a packed frame: `len` bytes at `offset` of the frame at
/// file offset `frame`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Range {
    pub frame: u64,
    pub offset: u32,
    pub len: u32,
}

impl Range {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&self.frame.to_le_bytes());
        v.extend_from_slice(&self.offset.to_le_bytes());
        v.extend_from_slice(&self.len.to_le_bytes());
        v
    }

    /// `None` unless exactly 16 bytes.
    pub fn decode(v: &[u8]) -> Option<Range> {
        let v: &[u8; 16] = v.try_into().ok()?;
        Some(Range {
            frame: u64::from_le_bytes(v[..8].try_into().ok()?),
            offset: u32::from_le_bytes(v[8..12].try_into().ok()?),
            len: u32::from_le_bytes(v[12..].try_into().ok()?),
        })
    }
}

/// The key of the index entry for `h`.
pub fn index_key(h: &Hint) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(INDEX_PREFIX);
    k.extend_from_slice(h);
    k
}

/// The hint of an index entry's key; `None` if `key` is not one.
pub fn index_hint(key: &[u8]) -> Option<Hint> {
    match key.split_first() {
        Some((&INDEX_PREFIX, h)) => h.try_into().ok(),
        _ => None,
    }
}

/// A member reference's value: its hint and range within its frame.
pub fn member_value(h: &Hint, offset: u32, len: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(MEMBER_VALUE_LEN);
    v.extend_from_slice(h);
    v.extend_from_slice(&offset.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v
}

/// A member reference's hint and range: `Some(None)` for an empty value,
/// `None` if malformed.
pub fn decode_member_value(v: &[u8]) -> Option<Option<(Hint, u32, u32)>> {
    if v.is_empty() {
        return Some(None);
    }
    let v: &[u8; MEMBER_VALUE_LEN] = v.try_into().ok()?;
    Some(Some((
        v[..16].try_into().ok()?,
        u32::from_le_bytes(v[16..20].try_into().ok()?),
        u32::from_le_bytes(v[20..].try_into().ok()?),
    )))
}

/// A committed member reference of one frame: tag, key, hint and range.
pub type MemberRef = (u8, Vec<u8>, Option<(Hint, u32, u32)>);

/// Committed member references by frame offset, each frame read once per
/// commit (`Lockbox::refs_of`).
pub type RefsByFrame = HashMap<u64, Vec<MemberRef>>;

/// A staged record's content, by tag and key, with its length.
pub type NewContent<'a> = (u8, &'a [u8], &'a Content, u64);
/// A staged key's committed content (tag, key, content and length).
pub type OldContent<'a> = (u8, &'a [u8], Option<(Content, u64)>);

/// What a commit does to the index: the values of its new member
/// references (by position in the commit's `news`; absent means empty)
/// and the index changes.
pub struct IndexPlan {
    pub values: HashMap<usize, Vec<u8>>,
    pub changes: Vec<Change>,
}

impl Lockbox {
    /// A committed copy of `len` bytes with keyed hash `hash`, from the
    /// index: the locator of its bytes, or `None`.
    pub(crate) fn indexed_copy(&mut self, hash: &[u8; 32], len: usize) -> Result<Option<Content>> {
        if len < INDEX_MIN || self.committed.packs.root.is_none() {
            return Ok(None);
        }
        let key = index_key(&hint_of(hash));
        let Some(v) = btree::get(&self.store, Kind::PackNode, &self.committed.packs, &key)? else {
            return Ok(None);
        };
        let r = Range::decode(&v).ok_or_else(|| Error::corrupt("bad content-index entry", 0))?;
        if r.len as usize != len {
            return Ok(None);
        }
        let frame = match self.dedup.committed_frame(r.frame) {
            Some(f) => f,
            None => {
                let f = self.committed_frame(r.frame)?;
                self.dedup.note_committed_frame(f);
                f
            }
        };
        if r.offset as u64 + r.len as u64 > frame.raw_len as u64 {
            return Err(Error::corrupt(
                "content-index entry beyond its frame",
                frame.offset,
            ));
        }
        Ok(Some(Content::Packed {
            frame,
            offset: r.offset,
        }))
    }

    /// The pointer of the committed packed frame at `at`, from the record
    /// of its first member.
    fn committed_frame(&self, at: u64) -> Result<Ptr> {
        let missing = || Error::corrupt("content-index entry names no packed frame", at);
        let (tag, key) = self
            .pack_members(at)?
            .into_iter()
            .next()
            .ok_or_else(missing)?;
        let content = if tag == b'T' {
            self.old_toc(&key)?.map(|r| r.content)
        } else {
            self.old_var(&key)?.map(|r| r.content)
        };
        match content {
            Some(Content::Packed { frame, .. }) if frame.offset == at => Ok(frame),
            _ => Err(missing()),
        }
    }

    /// The committed member references of the frame at `at`, with their
    /// values decoded.
    fn member_refs(&self, at: u64) -> Result<Vec<MemberRef>> {
        self.pack_refs(at)?
            .into_iter()
            .map(|(tag, key, v)| {
                let h = decode_member_value(&v)
                    .ok_or_else(|| Error::corrupt("bad pack reference value", at))?;
                Ok((tag, key, h))
            })
            .collect()
    }

    /// Works out the index side of a commit. `news` are the staged records
    /// (tag, key, content, length), `olds` the committed contents of every
    /// staged key; `generation` is the commit's; `refs` the frames' member
    /// references read so far in this commit.
    pub(crate) fn plan_index(
        &self,
        news: &[NewContent],
        olds: &[OldContent],
        generation: u64,
        refs: &mut RefsByFrame,
    ) -> Result<IndexPlan> {
        let session = self.dedup.written_ranges(INDEX_MIN);
        let mut values = HashMap::new();
        let mut changes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        // Hinted ranges that new members use.
        let mut live: HashSet<(Hint, Range)> = HashSet::new();
        for (i, (_, _, c, len)) in news.iter().enumerate() {
            let (Content::Packed { frame, offset }, Ok(len32)) = (c, u32::try_from(*len)) else {
                continue;
            };
            if (*len as usize) < INDEX_MIN {
                continue;
            }
            let r = Range {
                frame: frame.offset,
                offset: *offset,
                len: len32,
            };
            let h = if frame.generation == generation {
                session.get(&r).copied()
            } else {
                // A committed range (renamed, or shared through the index):
                // the hint its committed members carry.
                self.refs_of(refs, frame.offset)?
                    .iter()
                    .find_map(|(_, _, v)| v.filter(|v| (v.1, v.2) == (r.offset, r.len)))
                    .map(|v| v.0)
            };
            if let Some(h) = h {
                values.insert(i, member_value(&h, r.offset, r.len));
                changes.insert(index_key(&h), Some(r.encode()));
                live.insert((h, r));
            }
        }
        // Hinted ranges that lose a member: the entry goes unless another
        // member carrying the hint keeps the range.
        for (tag, key, old) in olds {
            let Some((Content::Packed { frame, .. }, len)) = old else {
                continue;
            };
            if (*len as usize) < INDEX_MIN {
                continue;
            }
            let members = self.refs_of(refs, frame.offset)?;
            let Some((h, offset, len)) = members
                .iter()
                .find(|(t, k, _)| t == tag && k == key)
                .and_then(|m| m.2)
            else {
                continue;
            };
            let r = Range {
                frame: frame.offset,
                offset,
                len,
            };
            let kept = live.contains(&(h, r))
                || members
                    .iter()
                    .any(|(t, k, v)| *v == Some((h, offset, len)) && !self.is_staged(*t, k));
            if kept {
                continue;
            }
            let ikey = index_key(&h);
            let current = match changes.get(&ikey) {
                Some(v) => v.clone(),
                None => btree::get(&self.store, Kind::PackNode, &self.committed.packs, &ikey)?,
            };
            if current.as_deref().and_then(Range::decode) == Some(r) {
                changes.insert(ikey, None);
            }
        }
        Ok(IndexPlan {
            values,
            changes: changes.into_iter().collect(),
        })
    }

    /// The committed member references of the frame at `at`, read once.
    pub(crate) fn refs_of<'a>(
        &self,
        refs: &'a mut RefsByFrame,
        at: u64,
    ) -> Result<&'a [MemberRef]> {
        match refs.entry(at) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => Ok(e.insert(self.member_refs(at)?)),
        }
    }

    fn is_staged(&self, tag: u8, key: &[u8]) -> bool {
        if tag == b'T' {
            self.toc.contains_key(key)
        } else {
            self.vars.contains_key(key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip_and_refuse_bad_lengths() {
        let r = Range {
            frame: 0x0102_0304_0506,
            offset: 7,
            len: 4096,
        };
        assert_eq!(Range::decode(&r.encode()), Some(r));
        assert_eq!(Range::decode(&r.encode()[..15]), None);
        let h = [9u8; 16];
        assert_eq!(index_hint(&index_key(&h)), Some(h));
        assert_eq!(index_hint(&[INDEX_PREFIX; 3]), None);
        assert_eq!(index_hint(&[0u8; 17]), None);
        let v = member_value(&h, 3, 5000);
        assert_eq!(decode_member_value(&v), Some(Some((h, 3, 5000))));
        assert_eq!(decode_member_value(&[]), Some(None));
        assert_eq!(decode_member_value(&v[1..]), None);
    }
}
