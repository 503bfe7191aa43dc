//! Duplicate contents stored once.
//!
//! Every content stored apart from its record is hashed when it is staged
//! (by the import's I/O threads, or inline by `put`), by [`ContentHasher`]:
//! a keyed BLAKE3 (keyed by the content-hash subkey, derived from the
//! master key) for contents of `INDEX_MIN` (4 KiB) bytes or more, whose
//! hashes may be kept (as hints, `data::index`); a keyed SHA-256 for
//! smaller ones, whose hashes never leave the session. A content whose hash matches
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
//! the keyed hash is trusted (BLAKE3-256 or SHA-256 under a key no one else
//! knows: a collision takes about 2^128 work and cannot be aimed), rather than
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

use ahash::AHashMap as HashMap;
use ring::digest::{Context, SHA256};
use zeroize::{Zeroize, Zeroizing};

use crate::data::index::{Hint, INDEX_MIN, Target, hint_of};
use crate::data::unchanged::Recent;
use crate::format::entry::Content;
use crate::format::ptr::Ptr;

/// The deduplication hash of contents, for the writer and the import's
/// I/O threads (each hashes with its own clone).
///
/// The hash function depends on the length alone, so equal contents
/// always get equal hashes: contents of `INDEX_MIN` bytes or more get the
/// BLAKE3 keyed by the content-hash subkey (their hints are stored, and
/// streamed contents, always longer than a frame of at least 4 KiB, are
/// hashed with it as they are read); smaller ones get SHA-256 of a secret
/// 64-byte block (derived from the same subkey) followed by the content.
/// Those are kept in memory for the session only, never stored, and
/// on a 1 KiB content SHA-256 (with the SHA extensions, through `ring`)
/// runs at 2.3 x BLAKE3's single-chunk speed (1.8 vs 0.8 GB/s here;
/// BLAKE3 is the faster from 4 KiB on). The prefix block is absorbed
/// once: each hash starts from a copy of that state.
#[derive(Clone)]
pub struct ContentHasher {
    key: Zeroizing<[u8; 32]>,
    small: Context,
}

impl ContentHasher {
    pub fn new(key: &[u8; 32]) -> ContentHasher {
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(
            blake3::keyed_hash(key, b"lockbox session hash of small contents").as_bytes(),
        );
        let mut small = Context::new(&SHA256);
        small.update(&block);
        block.zeroize();
        ContentHasher {
            key: Zeroizing::new(*key),
            small,
        }
    }

    /// The hash of `data`.
    pub fn hash(&self, data: &[u8]) -> [u8; 32] {
        if data.len() >= INDEX_MIN {
            return *blake3::keyed_hash(&self.key, data).as_bytes();
        }
        let mut c = self.small.clone();
        c.update(data);
        let mut out = [0u8; 32];
        out.copy_from_slice(c.finish().as_ref());
        out
    }

    /// A hasher for a content that streams in (always longer than a frame
    /// of at least 4 KiB, so `INDEX_MIN` or more): the keyed BLAKE3 that
    /// [`hash`](Self::hash) gives such a content.
    pub fn stream(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.key)
    }
}

/// Where a content was stored: at `offset` of pack `pack_id`, `len`
/// bytes.
#[derive(Clone, Copy)]
pub struct Noted {
    pub pack_id: u64,
    pub offset: u32,
    pub len: u32,
}

pub struct Dedup {
    hasher: ContentHasher,
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
            hasher: ContentHasher::new(key),
            first: HashMap::new(),
            written: HashMap::new(),
            committed: HashMap::new(),
            framed: HashMap::new(),
            recent: Recent::default(),
            hits: Hits::default(),
        }
    }

    /// The hash of `data` (`ContentHasher::hash`).
    pub fn hash(&self, data: &[u8]) -> [u8; 32] {
        self.hasher.hash(data)
    }

    /// The hasher, for workers that hash ahead and for streamed contents.
    pub fn hasher(&self) -> &ContentHasher {
        &self.hasher
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_by_length() {
        let key = [5u8; 32];
        let h = ContentHasher::new(&key);
        let other = ContentHasher::new(&[6u8; 32]);
        let data: Vec<u8> = (0..INDEX_MIN as u32 + 10)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        // Contents of INDEX_MIN bytes or more: keyed BLAKE3, which the
        // stored hints are made of.
        for len in [INDEX_MIN, INDEX_MIN + 10] {
            let d = &data[..len];
            assert_eq!(h.hash(d), *blake3::keyed_hash(&key, d).as_bytes());
        }
        // Shorter ones: SHA-256 of the secret block and the content; the
        // same for every clone, different under another key.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(
            blake3::keyed_hash(&key, b"lockbox session hash of small contents").as_bytes(),
        );
        for len in [1, 129, 1024, INDEX_MIN - 1] {
            let d = &data[..len];
            let mut c = Context::new(&SHA256);
            c.update(&block);
            c.update(d);
            assert_eq!(h.hash(d)[..], *c.finish().as_ref());
            assert_eq!(h.clone().hash(d), h.hash(d));
            assert_ne!(other.hash(d), h.hash(d));
            assert_ne!(h.hash(d), *blake3::keyed_hash(&key, d).as_bytes());
        }
    }
}
