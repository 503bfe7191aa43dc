//! Unchanged contents keep their place: storing for an entry exactly the
//! bytes its committed record already holds (a tree imported again in
//! place, a `put` of the same bytes) points the staged record at the
//! committed locator. Nothing is written, and the packed frame it lies in
//! is not touched, so it is not repacked either (without this, re-storing
//! the small files of an unchanged tree left every old pack with dead
//! members next to the large ones found through the content index, and
//! the commit rewrote them all).
//!
//! Identity is established by the hint of the keyed hash when the
//! committed reference carries one (contents of 4 KiB or more: trusted as
//! the content index is, `data::index`), else, for packed contents, by
//! comparing the bytes. The last few frames compared against are kept
//! decoded (an import of the same tree meets members in the order they
//! were packed, now and then alternating with an older pack that holds
//! duplicates), as are the last frame's member references; `add_path`
//! starts decoding the frames a batch will need on the worker threads when
//! it queues the batch for loading, so the writer finds them ready. Framed
//! contents without a hint are not compared (that would decode the whole
//! file); they are stored again, or found through the index.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Seek, SeekFrom};

use crate::data::frames::fill;
use crate::data::index::{self, Hint, INDEX_MIN, MemberRef, hint_of};
use crate::data::pack::Member;
use crate::error::Result;
use crate::format::entry::Content;
use crate::format::ptr::Ptr;
use crate::lockbox::Lockbox;
use crate::space::FrameKey;
use crate::storage::store::Decoding;

/// Bytes of frames decoding ahead of the comparisons at most.
const AHEAD_BYTES: u64 = 16 << 20;
/// Decoded frames kept for the comparisons.
const RECENT_FRAMES: usize = 4;

/// The committed frame and member references compared last (one of
/// each), and the frames decoding ahead for comparisons to come. Valid
/// until the next commit or rollback, which clear them.
#[derive(Default)]
pub struct Recent {
    refs: Option<(u64, Vec<MemberRef>)>,
    /// The last `RECENT_FRAMES` frames compared against, oldest first (a
    /// directory's files may alternate between two packs: duplicates of
    /// files stored earlier).
    frames: VecDeque<(FrameKey, Vec<u8>)>,
    ahead: VecDeque<(FrameKey, u64, Decoding)>,
}

impl Recent {
    pub fn clear(&mut self) {
        self.refs = None;
        self.frames.clear();
        self.ahead.clear();
    }
}

impl Lockbox {
    /// The committed locator of `member` if it holds exactly the content of
    /// `len` bytes with keyed hash `hash` (whose bytes, `data`, are given
    /// when in memory).
    pub(crate) fn unchanged_copy(
        &mut self,
        member: &Member,
        len: u64,
        hash: &[u8; 32],
        data: Option<&[u8]>,
    ) -> Result<Option<Content>> {
        let Some((content, hint)) = self.committed_candidate(member, len)? else {
            return Ok(None);
        };
        let same = match (hint, &content, data) {
            (Some(h), _, _) => h == hint_of(hash),
            (None, Content::Packed { frame, offset }, Some(data)) => {
                let bytes = self.recent_frame(frame)?;
                let at = *offset as usize;
                bytes.get(at..).and_then(|b| b.get(..data.len())) == Some(data)
            }
            _ => false,
        };
        if !same {
            return Ok(None);
        }
        self.dedup.hits.unchanged += 1;
        Ok(Some(content))
    }

    /// For a file of `len` bytes that would be streamed into `member`:
    /// when `member`'s committed content has that length and a hint, the
    /// file is hashed first (read once, nothing written) and that content
    /// is kept if it is the same; otherwise the file is rewound to be
    /// stored. (Streaming it would write its frames before the hash is
    /// known, only for the commit to free them.)
    pub(crate) fn unchanged_file(
        &mut self,
        member: &Member,
        len: u64,
        f: &mut File,
    ) -> Result<Option<Content>> {
        let Some((content, Some(h))) = self.committed_candidate(member, len)? else {
            return Ok(None);
        };
        if len < INDEX_MIN as u64 {
            // Hints are of BLAKE3 hashes, made of contents this long only
            // (`ContentHasher`): a shorter one's cannot match.
            return Ok(None);
        }
        let mut hasher = self.dedup.hasher().stream();
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0u64;
        loop {
            let n = fill(f, &mut buf)?;
            hasher.update(&buf[..n]);
            read += n as u64;
            if n < buf.len() {
                break;
            }
        }
        if read == len && hint_of(hasher.finalize().as_bytes()) == h {
            self.dedup.hits.unchanged += 1;
            return Ok(Some(content));
        }
        f.seek(SeekFrom::Start(0))?;
        Ok(None)
    }

    /// `member`'s committed content if it is stored apart from its record
    /// and `len` bytes long, with the hint its reference carries (contents
    /// of at least `INDEX_MIN` bytes whose hash was known).
    fn committed_candidate(
        &mut self,
        member: &Member,
        len: u64,
    ) -> Result<Option<(Content, Option<Hint>)>> {
        let (tag, key) = match member {
            Member::Toc(k) => (b'T', k),
            Member::Var(k) => (b'V', k),
        };
        let Some((content, old_len)) = self.old_content(tag, key)? else {
            return Ok(None);
        };
        if old_len != len {
            return Ok(None);
        }
        let Some((_, target)) = index::target_of(&content, len) else {
            return Ok(None);
        };
        let mut hint = None;
        if len >= INDEX_MIN as u64 {
            hint = self
                .recent_refs(target.frame)?
                .iter()
                .find(|(t, k, _)| *t == tag && k == key)
                .and_then(|m| m.2)
                .filter(|(_, tail)| *tail == target.tail)
                .map(|(h, _)| h);
        }
        Ok(Some((content, hint)))
    }

    /// Starts decoding, on the worker threads, the committed packed frames
    /// that comparing new contents for `keys` byte for byte will need (a
    /// small packed file at the same path), so that the writer finds them
    /// decoded: `add_path` calls this as it queues a batch of files for
    /// loading, two batches before it stores them. At most `AHEAD_BYTES`
    /// are decoding or decoded ahead; beyond that, or on any error (the
    /// comparison then decodes, and reports, itself), it stops.
    pub(crate) fn decode_ahead<'k>(&mut self, keys: impl Iterator<Item = &'k [u8]>) {
        if self.committed.toc.root.is_none() {
            return;
        }
        for key in keys {
            let Ok(Some((Content::Packed { frame, .. }, len))) = self.old_content(b'T', key) else {
                continue;
            };
            if len >= INDEX_MIN as u64 {
                continue; // compared through its hint
            }
            let recent = &self.dedup.recent;
            let fk = frame.cache_key();
            if recent.frames.iter().any(|f| f.0 == fk) || recent.ahead.iter().any(|a| a.0 == fk) {
                continue;
            }
            let held: u64 = recent.ahead.iter().map(|a| a.1).sum();
            if held + frame.raw_len as u64 > AHEAD_BYTES {
                return;
            }
            match self.store.start_decode(&frame) {
                Ok(Some(d)) => self
                    .dedup
                    .recent
                    .ahead
                    .push_back((fk, frame.raw_len as u64, d)),
                _ => return,
            }
        }
    }

    /// The committed member references of the frame (or root) at `at`.
    fn recent_refs(&mut self, at: u64) -> Result<&[MemberRef]> {
        if self.dedup.recent.refs.as_ref().map(|r| r.0) != Some(at) {
            let refs = self.member_refs(at)?;
            self.dedup.recent.refs = Some((at, refs));
        }
        Ok(self.dedup.recent.refs.as_ref().map_or(&[], |r| &r.1))
    }

    /// The plaintext of the committed packed frame `frame`.
    fn recent_frame(&mut self, frame: &Ptr) -> Result<&[u8]> {
        let key = frame.cache_key();
        let recent = &mut self.dedup.recent;
        let i = match recent.frames.iter().position(|f| f.0 == key) {
            Some(i) => i,
            None => {
                // Decoded ahead? Frames queued before it were not needed
                // (their files changed) and are dropped.
                let ahead = match recent.ahead.iter().position(|a| a.0 == key) {
                    Some(i) => recent.ahead.drain(..=i).next_back().map(|a| a.2.finish()),
                    None => None,
                };
                let spare = match recent.frames.len() >= RECENT_FRAMES {
                    true => recent.frames.pop_front().map(|f| f.1),
                    false => None,
                };
                let bytes = match ahead {
                    Some(Ok(bytes)) => bytes,
                    _ => self.store.frame_into(frame, spare.unwrap_or_default())?,
                };
                self.dedup.recent.frames.push_back((key, bytes));
                self.dedup.recent.frames.len() - 1
            }
        };
        Ok(&self.dedup.recent.frames[i].1)
    }
}
