//! The content index: contents of earlier commits by keyed hash, so that
//! a content committed once is not stored again (`data::dedup` covers
//! contents staged in one session).
//!
//! It lives in the pack-reference tree, beside the member references
//! (docs/format.md §10):
//! - the reference of a content of at least `INDEX_MIN` bytes whose hash
//!   was known when it was staged carries that hash's *hint* (the first 16
//!   bytes of its keyed BLAKE3 under the content-hash subkey) and a tail:
//!   `hint[16] ‖ offset u32 ‖ len u32` for a packed member (its range),
//!   `hint[16] ‖ len u64` for a user of a framed content (whose references
//!   are keyed by the root's offset). Other references have an empty value.
//! - an index entry `0xFF ‖ hint[16]` names one content with that hint:
//!   `frame offset u64 ‖ offset u32 ‖ len u32` (a range of a packed frame)
//!   or `root offset u64 ‖ len u64 ‖ 0x01` (a framed content). Member keys
//!   start with their frame's offset, big-endian, whose first byte is 0
//!   (regions lie below 2^56), so index entries sort after every member
//!   and never fall inside a frame's key range.
//!
//! Each commit keeps one invariant, which `verify` checks: every index
//! entry names a target that a live member carrying the same hint uses. So
//! the commit that drops the last such member (deleted, replaced, or moved
//! by a repack, which re-points the entry) also removes the entry, and no
//! hint of deleted content outlives it. Not every hinted target has an
//! entry: two with one hint share one entry (the latest staged).
//!
//! A hit is trusted as `data::dedup` trusts a written pack: 128 bits of a
//! keyed BLAKE3 under a key no one else holds cannot be collided on
//! purpose, and by chance only after about 2^64 contents. Contents under
//! `INDEX_MIN` are shared within a session only: an entry and a hint cost
//! about 60 bytes, a sizeable part of what a small compressed file takes.
//!
//! Commit-time restaging (repacks, relocation) never looks the index up: a
//! member moving out of a frame must not be pointed back into it.

use ahash::{AHashMap, AHashSet};

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

/// Last byte of an index entry's value that names a framed content.
pub const FRAMED_MARK: u8 = 1;

/// What an index entry or a hinted member reference names: `len` bytes at
/// `offset` of the packed frame at offset `frame`, or a whole framed
/// content of `len` bytes whose root (frame or frame-index page) is at
/// offset `frame`. The 8-byte `tail` is what a member value carries after
/// the hint: `offset u32 ‖ len u32` (packed) or `len u64` (framed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub frame: u64,
    pub tail: [u8; 8],
    pub framed: bool,
}

impl Target {
    pub fn packed(frame: u64, offset: u32, len: u32) -> Target {
        let mut tail = [0u8; 8];
        tail[..4].copy_from_slice(&offset.to_le_bytes());
        tail[4..].copy_from_slice(&len.to_le_bytes());
        Target {
            frame,
            tail,
            framed: false,
        }
    }

    pub fn framed(root: u64, len: u64) -> Target {
        Target {
            frame: root,
            tail: len.to_le_bytes(),
            framed: true,
        }
    }

    /// The target a member reference of the frame or root at `frame`
    /// names with `tail` (members of one offset are all packed or all
    /// framed).
    pub fn of_member(frame: u64, tail: [u8; 8], framed: bool) -> Target {
        Target {
            frame,
            tail,
            framed,
        }
    }

    /// (offset, len) of a packed target.
    pub fn range(&self) -> (u32, u32) {
        let (o, l) = self.tail.split_at(4);
        let word = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or_default());
        (word(o), word(l))
    }

    /// Bytes of the content named.
    pub fn len(&self) -> u64 {
        if self.framed {
            u64::from_le_bytes(self.tail)
        } else {
            self.range().1 as u64
        }
    }

    /// The index entry's value: `frame u64 ‖ tail[8]`, then `FRAMED_MARK`
    /// for a framed content (16 or 17 bytes, little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17);
        v.extend_from_slice(&self.frame.to_le_bytes());
        v.extend_from_slice(&self.tail);
        if self.framed {
            v.push(FRAMED_MARK);
        }
        v
    }

    pub fn decode(v: &[u8]) -> Option<Target> {
        let framed = match v.len() {
            16 => false,
            17 if v[16] == FRAMED_MARK => true,
            _ => return None,
        };
        Some(Target {
            frame: u64::from_le_bytes(v[..8].try_into().ok()?),
            tail: v[8..16].try_into().ok()?,
            framed,
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

/// The hint of an index entry's key, or `None` for a member key.
pub fn index_hint(key: &[u8]) -> Option<Hint> {
    match key.split_first() {
        Some((&INDEX_PREFIX, h)) => h.try_into().ok(),
        _ => None,
    }
}

/// A hinted member reference's value: `hint[16] ‖ tail[8]`.
pub fn member_value(h: &Hint, t: &Target) -> Vec<u8> {
    let mut v = Vec::with_capacity(MEMBER_VALUE_LEN);
    v.extend_from_slice(h);
    v.extend_from_slice(&t.tail);
    v
}

/// A member reference's value: `Some(None)` when empty, `Some(Some(hint,
/// tail))` when hinted, `None` when malformed.
pub fn decode_member_value(v: &[u8]) -> Option<Option<(Hint, [u8; 8])>> {
    if v.is_empty() {
        return Some(None);
    }
    let v: &[u8; MEMBER_VALUE_LEN] = v.try_into().ok()?;
    Some(Some((v[..16].try_into().ok()?, v[16..].try_into().ok()?)))
}

/// A committed member reference: tag, key, and hint with tail if any.
pub type MemberRef = (u8, Vec<u8>, Option<(Hint, [u8; 8])>);

/// Committed member references by frame (or root) offset, read once per
/// commit.
pub type RefsByFrame = AHashMap<u64, Vec<MemberRef>>;

/// A staged entry's new content (tag, key, content and length).
pub type NewContent<'a> = (u8, &'a [u8], &'a Content, u64);
/// A staged key's committed content (tag, key, content and length).
pub type OldContent<'a> = (u8, &'a [u8], Option<(Content, u64)>);

/// The offset the member references of a stored content are keyed by
/// (its packed frame's, or its framed root's), and the target it would be
/// indexed as; `None` for contents held in the record itself.
pub fn target_of(c: &Content, len: u64) -> Option<(&Ptr, Target)> {
    match c {
        Content::Packed { frame, offset } => {
            let len = u32::try_from(len).ok()?;
            Some((frame, Target::packed(frame.offset, *offset, len)))
        }
        Content::Frames { root, .. } => Some((root, Target::framed(root.offset, len))),
        _ => None,
    }
}

/// What a commit does to the index: the values of its new member
/// references (by position in the commit's `news`; absent means empty)
/// and the index changes.
pub struct IndexPlan {
    pub values: AHashMap<usize, Vec<u8>>,
    pub changes: Vec<Change>,
}

impl Lockbox {
    /// A committed copy of `len` bytes with keyed hash `hash`, from the
    /// index: the locator of its bytes (a range of a packed frame, or a
    /// framed content's root), or `None`.
    pub(crate) fn indexed_copy(&mut self, hash: &[u8; 32], len: u64) -> Result<Option<Content>> {
        if len < INDEX_MIN as u64 || self.committed.packs.root.is_none() {
            return Ok(None);
        }
        let key = index_key(&hint_of(hash));
        let Some(v) = btree::get(&self.store, Kind::PackNode, &self.committed.packs, &key)? else {
            return Ok(None);
        };
        let t = Target::decode(&v).ok_or_else(|| Error::corrupt("bad content-index entry", 0))?;
        if t.len() != len {
            return Ok(None);
        }
        if t.framed {
            return match self.first_member_content(t.frame)? {
                c @ Content::Frames { root, .. } if root.offset == t.frame => Ok(Some(c)),
                _ => Err(Error::corrupt(
                    "content-index entry names no framed content",
                    t.frame,
                )),
            };
        }
        let frame = match self.dedup.committed_frame(t.frame) {
            Some(f) => f,
            None => {
                let f = match self.first_member_content(t.frame)? {
                    Content::Packed { frame, .. } if frame.offset == t.frame => frame,
                    _ => {
                        return Err(Error::corrupt(
                            "content-index entry names no packed frame",
                            t.frame,
                        ));
                    }
                };
                self.dedup.note_committed_frame(f);
                f
            }
        };
        let (offset, l) = t.range();
        if offset as u64 + l as u64 > frame.raw_len as u64 {
            return Err(Error::corrupt(
                "content-index entry beyond its frame",
                frame.offset,
            ));
        }
        Ok(Some(Content::Packed { frame, offset }))
    }

    /// The committed content of the first member referenced under `at`
    /// (a packed frame's or a framed root's offset).
    fn first_member_content(&self, at: u64) -> Result<Content> {
        let missing = || Error::corrupt("content-index entry names no member", at);
        let (tag, key) = self
            .pack_members(at)?
            .into_iter()
            .next()
            .ok_or_else(missing)?;
        Ok(self.old_content(tag, &key)?.ok_or_else(missing)?.0)
    }

    /// The committed member references of the frame at `at`, with their
    /// values decoded.
    pub(crate) fn member_refs(&self, at: u64) -> Result<Vec<MemberRef>> {
        self.pack_refs(at)?
            .into_iter()
            .map(|(tag, key, v)| {
                let h = decode_member_value(&v)
                    .ok_or_else(|| Error::corrupt("bad pack reference value", at))?;
                Ok((tag, key, h))
            })
            .collect()
    }

    /// The index's part of a commit: the hinted values of the new member
    /// references (a content hashed this session, or one whose committed
    /// reference carried a hint), an entry for each of their hints, and
    /// the removal of entries whose last user goes.
    pub(crate) fn plan_index(
        &self,
        news: &[NewContent],
        olds: &[OldContent],
        generation: u64,
        refs: &mut RefsByFrame,
    ) -> Result<IndexPlan> {
        let session = self.dedup.written_targets(INDEX_MIN);
        let mut values = AHashMap::new();
        // Index changes by hint (the key is `index_key(hint)`).
        let mut changes: AHashMap<Hint, Option<Vec<u8>>> = AHashMap::new();
        // What the new state keeps hinted, needed only if old contents go.
        let drops = olds
            .iter()
            .any(|(_, _, o)| o.as_ref().is_some_and(|o| o.1 >= INDEX_MIN as u64));
        let mut live: AHashSet<(Hint, Target)> = AHashSet::new();
        for (i, (_, _, c, len)) in news.iter().enumerate() {
            if (*len as usize) < INDEX_MIN {
                continue;
            }
            let Some((at, t)) = target_of(c, *len) else {
                continue;
            };
            let h = if at.generation == generation {
                session.get(&t).copied()
            } else {
                self.refs_of(refs, t.frame)?
                    .iter()
                    .find_map(|(_, _, v)| v.filter(|v| v.1 == t.tail))
                    .map(|v| v.0)
            };
            if let Some(h) = h {
                values.insert(i, member_value(&h, &t));
                changes.insert(h, Some(t.encode()));
                if drops {
                    live.insert((h, t));
                }
            }
        }
        for (tag, key, old) in olds {
            let Some((c, len)) = old else {
                continue;
            };
            if (*len as usize) < INDEX_MIN {
                continue;
            }
            let Some((_, t)) = target_of(c, *len) else {
                continue;
            };
            let members = self.refs_of(refs, t.frame)?;
            let Some((h, tail)) = members
                .iter()
                .find(|(tg, k, _)| tg == tag && k == key)
                .and_then(|m| m.2)
            else {
                continue;
            };
            let t = Target::of_member(t.frame, tail, t.framed);
            let kept = live.contains(&(h, t))
                || members
                    .iter()
                    .any(|(tg, k, v)| *v == Some((h, tail)) && !self.is_staged(*tg, k));
            if kept {
                continue;
            }
            let current = match changes.get(&h) {
                Some(v) => v.clone(),
                None => {
                    let ikey = index_key(&h);
                    btree::get(&self.store, Kind::PackNode, &self.committed.packs, &ikey)?
                }
            };
            if current.as_deref().and_then(Target::decode) == Some(t) {
                changes.insert(h, None);
            }
        }
        Ok(IndexPlan {
            values,
            changes: changes
                .into_iter()
                .map(|(h, v)| (index_key(&h), v))
                .collect(),
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

    pub(crate) fn is_staged(&self, tag: u8, key: &[u8]) -> bool {
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
        let r = Target::packed(0x0102_0304_0506, 7, 4096);
        assert_eq!(r.range(), (7, 4096));
        assert_eq!(r.len(), 4096);
        assert_eq!(Target::decode(&r.encode()), Some(r));
        assert_eq!(Target::decode(&r.encode()[..15]), None);
        let f = Target::framed(0x0a0b_0c0d, 5 << 32);
        assert_eq!(f.len(), 5 << 32);
        assert_eq!(f.encode().len(), 17);
        assert_eq!(Target::decode(&f.encode()), Some(f));
        let mut bad = f.encode();
        bad[16] = 2;
        assert_eq!(Target::decode(&bad), None);
        let h = [9u8; 16];
        assert_eq!(index_hint(&index_key(&h)), Some(h));
        assert_eq!(index_hint(&[INDEX_PREFIX; 3]), None);
        assert_eq!(index_hint(&[0u8; 17]), None);
        let v = member_value(&h, &r);
        assert_eq!(decode_member_value(&v), Some(Some((h, r.tail))));
        assert_eq!(decode_member_value(&[]), Some(None));
        assert_eq!(decode_member_value(&v[1..]), None);
    }
}
