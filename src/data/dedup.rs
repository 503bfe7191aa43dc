//! Duplicate contents stored once.
//!
//! Every content stored apart from its record is hashed with a keyed BLAKE3
//! (keyed by the content-hash subkey, derived from the master key) when it
//! is staged (by the import's I/O threads, or inline by `put`). A content whose hash matches
//! one staged earlier in the same session (since the last commit or
//! rollback) gets the same locator: the same bytes of the same pack.
//! Sharing packed bytes needs no reference counts: the pack-reference tree
//! names every member of a frame, a frame is freed only when none is left,
//! and a repack copies each live member's bytes, so a deleted duplicate
//! never takes the others' bytes with it (`space.rs`, `relocate.rs`).
//!
//! A copy needs no owner to be shared, only its bytes where they were
//! put: while that pack is in memory the bytes there are compared (they
//! may belong to a member deleted since: sharing identical bytes is still
//! right, and the new member keeps them alive). Once the pack is written,
//! the frame it became holds at the noted offset exactly the bytes that
//! were noted, unless the pack was rewritten without its dead members
//! before its write (offsets moved): such packs are not remembered. There
//! the keyed hash is trusted (BLAKE3-256 under a key no one else knows: a
//! collision takes about 2^128 work and cannot be aimed), rather than
//! decoding a frame of up to 1 MiB per match (which doubled the import
//! time of a 46k-file tree).
//!
//! Framed (large) contents are hashed too, whole (loaded files on the I/O
//! threads, streams as they are read): a second copy gets the first's
//! locator, its root. A copy put from memory is found before anything is
//! written; a streamed one only once its frames are written, which are
//! then left unreferenced and freed by the commit. Sharing frames needs a
//! count of users: each entry with a `Frames` locator has a reference under
//! its root in the pack-reference tree, and the commit frees the frames
//! only with their last user (`space.rs`). Nothing frees a session's
//! frames before the commit, so a noted root stays valid until then.
//!
//! Contents of earlier commits are found through the content index
//! (`data::index`), which the commit fills from what this module noted.

use std::collections::HashMap;

use crate::data::index::{Hint, Target, hint_of};
use crate::data::unchanged::Recent;
use crate::format::entry::Content;
use crate::format::ptr::Ptr;

/// Where a content was stored: at `offset` of pack `pack_id`, `len`
/// bytes.
#[derive(Clone, Copy)]
pub struct Noted {
    pub pack_id: u64,
    pub offset: u32,
    pub len: u32,
}

pub struct Dedup {
    key: [u8; 32],
    first: HashMap<[u8; 32], Noted>,
    /// Packs of this session written unchanged, by id: their frame.
    written: HashMap<u64, Ptr>,
    /// Committed packed frames found through the content index, by offset.
    committed: HashMap<u64, Ptr>,
    /// Framed contents written in this session, by keyed hash: locator
    /// and length.
    framed: HashMap<[u8; 32], (Content, u64)>,
    /// The committed frame and references compared last
    /// (`data::unchanged`).
    pub recent: Recent,
    /// Contents found stored already, since the handle opened.
    pub hits: Hits,
}

/// How many stored contents were found already stored (counters that only
/// grow: `add_path` reports the difference).
#[derive(Clone, Copy, Default)]
pub struct Hits {
    /// At their own path, committed (`data::unchanged`).
    pub unchanged: u64,
    /// Elsewhere: earlier in the session, or through the content index.
    pub shared: u64,
}

impl Dedup {
    /// Hashes under `key`, the content-hash subkey.
    pub fn new(key: &[u8; 32]) -> Dedup {
        Dedup {
            key: *key,
            first: HashMap::new(),
            written: HashMap::new(),
            committed: HashMap::new(),
            framed: HashMap::new(),
            recent: Recent::default(),
            hits: Hits::default(),
        }
    }

    /// The keyed hash of `data`.
    pub fn hash(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.key, data).as_bytes()
    }

    /// The key the hashes are made with, for workers that hash ahead.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// Where content of this hash was first stored, if anywhere.
    pub fn first(&self, hash: &[u8; 32]) -> Option<&Noted> {
        self.first.get(hash)
    }

    /// Notes where content of this hash was stored (the latest copy wins:
    /// it is the one most likely still where it was put).
    pub fn note(&mut self, hash: [u8; 32], noted: Noted) {
        self.first.insert(hash, noted);
    }

    /// Notes that pack `pack_id` was written as `frame` with its members
    /// at the offsets they had in memory.
    pub fn pack_written(&mut self, pack_id: u64, frame: Ptr) {
        self.written.insert(pack_id, frame);
    }

    /// The frame pack `pack_id` was written as, unchanged, if it was.
    pub fn frame_of(&self, pack_id: u64) -> Option<&Ptr> {
        self.written.get(&pack_id)
    }

    /// A committed frame the content index led to earlier, by offset.
    pub fn committed_frame(&self, at: u64) -> Option<Ptr> {
        self.committed.get(&at).copied()
    }

    pub fn note_committed_frame(&mut self, frame: Ptr) {
        self.committed.insert(frame.offset, frame);
    }

    /// A framed content of this session with this hash and length.
    pub fn framed(&self, hash: &[u8; 32], len: u64) -> Option<&Content> {
        self.framed
            .get(hash)
            .filter(|(_, l)| *l == len)
            .map(|(c, _)| c)
    }

    /// Notes a framed content written in this session (its frames stay
    /// where they are until the commit: nothing frees them before).
    pub fn note_framed(&mut self, hash: [u8; 32], content: Content, len: u64) {
        self.framed.insert(hash, (content, len));
    }

    /// Where contents of at least `min` bytes noted in this session lie
    /// (ranges of written packs, framed roots), with their hints.
    pub fn written_targets(&self, min: usize) -> ahash::AHashMap<Target, Hint> {
        let packed = self
            .first
            .iter()
            .filter(|(_, n)| n.len as usize >= min)
            .filter_map(|(hash, n)| {
                let frame = self.written.get(&n.pack_id)?;
                Some((Target::packed(frame.offset, n.offset, n.len), hint_of(hash)))
            });
        let framed = self.framed.iter().filter_map(|(hash, (c, len))| match c {
            Content::Frames { root, .. } if *len >= min as u64 => {
                Some((Target::framed(root.offset, *len), hint_of(hash)))
            }
            _ => None,
        });
        packed.chain(framed).collect()
    }

    /// Forgets the session (after a commit or a rollback).
    pub fn clear(&mut self) {
        self.first.clear();
        self.written.clear();
        self.committed.clear();
        self.framed.clear();
        self.recent.clear();
    }
}

impl Drop for Dedup {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}
