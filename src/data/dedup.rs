//! Duplicate small contents stored once.
//!
//! Every content small enough to be packed is hashed with a keyed BLAKE3
//! (a random key per handle, never stored) when it is staged (by the
//! import's workers, or inline by `put`). A content whose hash matches one
//! staged earlier in the same session (since the last commit or rollback)
//! whose pack is still in memory (the open pack and the queue of full
//! ones: up to 17 packs, 17 MiB under `BulkImport`) gets the same locator:
//! the same bytes of the same pack. Sharing packed bytes needs no
//! reference counts: the pack-reference tree names every member of a
//! frame, a frame is freed only when none is left, and a repack copies
//! each live member's bytes, so a deleted duplicate never takes the
//! others' bytes with it (`space.rs`, `relocate.rs`).
//!
//! A hash match is never trusted alone: the bytes are compared in memory
//! before the locator is reused, so a collision, however unlikely, costs
//! nothing but a missed share.
//!
//! Not covered yet: duplicates of contents whose pack was written already
//! (comparing them means decoding a frame of up to 1 MiB per match, which
//! doubled the import time of a 46k-file tree; trusting the keyed hash
//! instead needs the staleness of an entry tracked through pack
//! compaction), contents stored in earlier commits (a persisted index of
//! hashes, removed with their frames so no hash of deleted content
//! outlives it) and framed (large) files (their frames are freed with
//! their record, so sharing them needs reference counts).

use std::collections::HashMap;

use crate::crypto::seal::fill_random;
use crate::data::pack::Member;
use crate::error::Result;

pub struct Dedup {
    key: [u8; 32],
    first: HashMap<[u8; 32], Member>,
}

impl Dedup {
    pub fn new() -> Result<Dedup> {
        let mut key = [0u8; 32];
        fill_random(&mut key)?;
        Ok(Dedup {
            key,
            first: HashMap::new(),
        })
    }

    /// The keyed hash of `data`.
    pub fn hash(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.key, data).as_bytes()
    }

    /// The key the hashes are made with, for workers that hash ahead.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The member that first stored content of this hash, if any.
    pub fn first(&self, hash: &[u8; 32]) -> Option<&Member> {
        self.first.get(hash)
    }

    /// Notes that `member` stored content of this hash (the latest copy
    /// is the one most likely still in memory).
    pub fn note(&mut self, hash: [u8; 32], member: Member) {
        self.first.insert(hash, member);
    }

    /// Forgets the session (after a commit or a rollback).
    pub fn clear(&mut self) {
        self.first.clear();
    }
}

impl Drop for Dedup {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}
