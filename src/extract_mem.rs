//! `extract_all`: the whole tree (or a prefix) handed to a callback, in
//! order, without touching the filesystem.
//!
//! Entries are taken in chunks of at most 16 frames (8 MiB) of data. The
//! frames a chunk uses (its packed frames, and every frame of its files up
//! to 4 MiB) are decoded together on the worker threads, once each, while
//! the caller's thread hands the previous chunk to the callback: decoding
//! and the callback's work overlap. A small file is handed over as a slice
//! of its decoded frame.

use std::collections::HashSet;
use std::iter::Peekable;
use std::time::Instant;

use rayon::prelude::*;

use crate::data::frames::frame_of;
use crate::error::{Error, Result};
use crate::extract::{CHUNK, ExtractStats, limit};
use crate::format::entry::{Content, EntryKind, Record};
use crate::format::ptr::Ptr;
use crate::lockbox::Lockbox;
use crate::toc::{Entry, entry};

/// Frames decoded ahead together, and their bytes at most (plus one frame
/// or file): enough for every core, bounded memory.
const AHEAD_FRAMES: usize = 16;
const AHEAD_BYTES: u64 = 8 << 20;
/// Files up to this size have all their frames decoded ahead.
const AHEAD_FILE: u64 = 4 << 20;

/// Which decoded frames hold each entry's bytes: per entry of a chunk, a
/// range of `order` (`None`: nothing to decode ahead), which lists indexes
/// of the decoded frames in the order of the entry's bytes.
struct Plan {
    per_entry: Vec<Option<std::ops::Range<usize>>>,
    order: Vec<usize>,
}

/// A chunk of entries with its plan and decoded frames.
struct Ready {
    chunk: Vec<(String, Record)>,
    plan: Plan,
    frames: Vec<Vec<u8>>,
}

impl Lockbox {
    /// Walks the tree (or `prefix`) and hands every entry to `f` with its
    /// bytes (files) or no bytes (directories, symlinks): extraction to
    /// memory. Frames are decoded once per pass, on the worker threads,
    /// while `f` runs.
    pub fn extract_all(
        &self,
        prefix: &str,
        mut f: impl FnMut(&Entry, &[u8]) -> Result<()>,
    ) -> Result<ExtractStats> {
        let started = Instant::now();
        let mut stats = ExtractStats::default();
        let mut buf = Vec::new();
        let mut entries = self.extraction_list(prefix)?.peekable();
        let mut ready: Option<Ready> = None;
        loop {
            let chunk = next_chunk(&mut entries)?;
            let (plan, ptrs) = self.plan_chunk(&chunk)?;
            let mut decoded = None;
            // Decode this chunk on the workers while the previous one goes
            // to the callback on this thread.
            let delivered = rayon::in_place_scope(|s| {
                s.spawn(|_| decoded = Some(self.decode_frames(&ptrs)));
                match ready.take() {
                    Some(r) => self.deliver(r, &mut f, &mut stats, &mut buf),
                    None => Ok(()),
                }
            });
            delivered?;
            let frames =
                decoded.ok_or_else(|| Error::corrupt("internal: frames not decoded", 0))??;
            if chunk.is_empty() {
                break;
            }
            ready = Some(Ready {
                chunk,
                plan,
                frames,
            });
        }
        stats.duration = started.elapsed();
        Ok(stats)
    }

    /// The frames a chunk's files need, each once, and per entry which.
    fn plan_chunk(&self, chunk: &[(String, Record)]) -> Result<(Plan, Vec<Ptr>)> {
        let mut ptrs: Vec<Ptr> = Vec::new();
        let mut slot: std::collections::HashMap<(u64, [u8; 16]), usize> =
            std::collections::HashMap::new();
        let mut add = |p: Ptr| {
            *slot.entry((p.offset, p.tag)).or_insert_with(|| {
                ptrs.push(p);
                ptrs.len() - 1
            })
        };
        let mut plan = Plan {
            per_entry: Vec::with_capacity(chunk.len()),
            order: Vec::with_capacity(chunk.len()),
        };
        for (_, rec) in chunk {
            let start = plan.order.len();
            match &rec.content {
                _ if rec.kind != EntryKind::File => {}
                Content::Packed { frame, .. } => plan.order.push(add(*frame)),
                Content::Frames {
                    frame_size,
                    depth,
                    root,
                } if rec.len <= AHEAD_FILE => {
                    let n = rec.content.check_layout(rec.len)?.unwrap_or(0);
                    let fs = *frame_size as u64;
                    for i in 0..n {
                        let layout = (rec.len, fs, n);
                        plan.order
                            .push(add(frame_of(&self.store, (*depth, root), layout, i)?));
                    }
                }
                _ => {}
            }
            let end = plan.order.len();
            plan.per_entry.push((end > start).then_some(start..end));
        }
        Ok((plan, ptrs))
    }

    /// Decodes `ptrs` on the worker threads.
    fn decode_frames(&self, ptrs: &[Ptr]) -> Result<Vec<Vec<u8>>> {
        ptrs.par_iter()
            .with_max_len(1)
            .map(|p| self.store.frame_owned(p))
            .collect()
    }

    /// Hands a decoded chunk's entries to `f`, in order.
    fn deliver(
        &self,
        r: Ready,
        f: &mut impl FnMut(&Entry, &[u8]) -> Result<()>,
        stats: &mut ExtractStats,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let decoded = r.frames;
        let order = &r.plan.order;
        for ((rel, rec), frames) in r.chunk.into_iter().zip(r.plan.per_entry) {
            let frames = frames.map(|range| &order[range]);
            let e = entry(rel, &rec);
            match rec.kind {
                EntryKind::File => {
                    // Also checks the content layout against the length.
                    self.check_plausible_len(&rec)?;
                    let len = usize::try_from(rec.len)
                        .map_err(|_| limit("file larger than memory".into(), rec.len))?;
                    let short = || Error::corrupt("content shorter than its length", 0);
                    match (&rec.content, frames) {
                        (Content::Packed { offset, .. }, Some([i])) => {
                            let bytes = decoded[*i]
                                .get(*offset as usize..)
                                .and_then(|b| b.get(..len))
                                .ok_or_else(short)?;
                            f(&e, bytes)?;
                        }
                        (_, Some([i])) if decoded[*i].len() == len => f(&e, &decoded[*i])?,
                        (_, Some(many)) => {
                            buf.clear();
                            for i in many {
                                buf.extend_from_slice(&decoded[*i]);
                            }
                            if buf.len() != len {
                                return Err(short());
                            }
                            f(&e, buf)?;
                        }
                        (_, None) => {
                            // Inline, empty, or too large to decode ahead.
                            buf.clear();
                            buf.resize(len, 0);
                            if self.read_record(&rec, 0, buf)? != len {
                                return Err(Error::corrupt("file shorter than its length", 0));
                            }
                            f(&e, buf)?;
                        }
                    }
                    stats.files += 1;
                    stats.bytes += rec.len;
                }
                EntryKind::Dir => {
                    f(&e, &[])?;
                    stats.dirs += 1;
                }
                EntryKind::Symlink => {
                    f(&e, &[])?;
                    stats.symlinks += 1;
                }
            }
        }
        Ok(())
    }
}

/// The frames `rec` adds to a chunk that already decodes the packs at
/// the offsets in `packs`, and their bytes.
fn frames_needed(rec: &Record, packs: &HashSet<u64>) -> (usize, u64) {
    match &rec.content {
        _ if rec.kind != EntryKind::File => (0, 0),
        Content::Packed { frame, .. } if !packs.contains(&frame.offset) => {
            (1, frame.raw_len as u64)
        }
        Content::Frames { frame_size, .. } if rec.len <= AHEAD_FILE => (
            rec.len.div_ceil((*frame_size).max(1) as u64) as usize,
            rec.len,
        ),
        _ => (0, 0),
    }
}

/// The next chunk of entries: up to 16 frames or 8 MiB of data to decode
/// ahead, or `CHUNK` entries, never ending inside a pack (the rest of its
/// members would decode it again in the next chunk), though at most
/// `4 × CHUNK` entries. Empty at the end.
fn next_chunk<I: Iterator<Item = Result<(String, Record)>>>(
    entries: &mut Peekable<I>,
) -> Result<Vec<(String, Record)>> {
    let mut chunk: Vec<(String, Record)> = Vec::new();
    let mut packs: HashSet<u64> = HashSet::new();
    let (mut frames, mut ahead) = (0, 0u64);
    loop {
        let (more, bytes) = match entries.peek() {
            None => break,
            // Taken below, and returned.
            Some(Err(_)) => (0, 0),
            Some(Ok((_, rec))) => frames_needed(rec, &packs),
        };
        let full = frames >= AHEAD_FRAMES || ahead >= AHEAD_BYTES || chunk.len() >= CHUNK;
        if (full && more > 0) || chunk.len() >= 4 * CHUNK {
            break;
        }
        let Some(item) = entries.next() else { break };
        let (rel, rec) = item?;
        if let Content::Packed { frame, .. } = &rec.content
            && rec.kind == EntryKind::File
        {
            packs.insert(frame.offset);
        }
        frames += more;
        ahead += bytes;
        chunk.push((rel, rec));
    }
    Ok(chunk)
}
