//! `extract_all`: the whole tree (or a prefix) handed to a callback, in
//! order, without touching the filesystem.
//!
//! A continuous pipeline. The caller's thread plans the entries ahead of
//! the one it delivers and starts decoding the frames they need on the
//! worker threads, up to 8 MiB or 16 frames ahead: each packed frame
//! once however many members follow, every frame of files up to 4 MiB.
//! It hands each entry to the callback as soon as its frames are decoded
//! and drops a frame when the last planned entry that needs it has been
//! delivered. There is no barrier between batches, so the workers always
//! have frames to decode while the callback runs. A small file is handed
//! over as a slice of its decoded frame.
//!
//! A dropped frame waits among the recent ones (the newest
//! `RECENT_BYTES`; older ones lend their buffers to new frames). A member
//! planned later that shares a packed frame still there (a deduplicated
//! file, usually a few directories after its first copy) takes it back
//! instead of decoding it again: on a 46k-file Python tree 70 of 562
//! frames were decoded twice per pass, 29 now, and a pass reads 4.5 %
//! fewer bytes, for 8 MiB more memory. In time it is a wash when the
//! archive is cached (the larger set of buffers to decode into costs
//! about what the decodes saved); a cold archive has 7.5 MB less to read
//! from the disk (not measured).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ahash::AHashMap as HashMap;

use crate::data::frames::frame_of;
use crate::error::{Error, Result};
use crate::extract::{ExtractStats, limit};
use crate::format::entry::{Content, EntryKind, Record};
use crate::format::ptr::Ptr;
use crate::lockbox::Lockbox;
use crate::par::Slot;
use crate::toc::{Entry, entry};

/// Frames decoding or decoded ahead of the entry being delivered, and
/// their bytes at most (plus one file's): enough for every core, bounded
/// memory.
const AHEAD_FRAMES: usize = 16;
const AHEAD_BYTES: u64 = 8 << 20;
/// Files up to this size have all their frames decoded ahead; larger
/// ones are read when their turn comes (`read_at` decodes in parallel).
const AHEAD_FILE: u64 = 4 << 20;
/// Bytes of delivered frames kept for members planned later that share
/// them (deduplicated files).
const RECENT_BYTES: u64 = 8 << 20;

/// A frame decoding on the workers, and how many planned entries still
/// need it.
struct Decoding {
    slot: Arc<Slot<Result<Vec<u8>>>>,
    ptr: Ptr,
    users: usize,
}

/// An entry waiting for delivery, with the (global) indexes of the frames
/// holding its bytes, in order.
struct Planned {
    rel: String,
    rec: Record,
    frames: Range<usize>,
}

/// The frames in flight: a window of consecutive global indexes.
struct Window {
    frames: VecDeque<Decoding>,
    /// Global index of `frames[0]`.
    base: usize,
    bytes: u64,
    /// Packed frames in the window, by (offset, tag): decoded once.
    packs: HashMap<(u64, [u8; 16]), usize>,
}

impl Window {
    fn get(&self, i: usize) -> Result<&Decoding> {
        i.checked_sub(self.base)
            .and_then(|k| self.frames.get(k))
            .ok_or_else(|| Error::corrupt("internal: frame left the window", 0))
    }

    fn full(&self) -> bool {
        self.bytes >= AHEAD_BYTES || self.frames.len() >= AHEAD_FRAMES
    }

    /// Drops the frames at the front that no planned entry needs, keeping
    /// their buffers (and, for packed frames, bytes) in `recent`.
    fn release(&mut self, recent: &Mutex<Recent>) {
        while self.frames.front().is_some_and(|d| d.users == 0) {
            if let Some(d) = self.frames.pop_front() {
                let key = (d.ptr.offset, d.ptr.tag);
                let packed = self.packs.get(&key) == Some(&self.base);
                if packed {
                    self.packs.remove(&key);
                }
                if let Some(Ok(buf)) = d.slot.take() {
                    lock(recent).keep(packed.then_some(key), buf);
                }
                self.bytes -= d.ptr.raw_len as u64;
            }
            self.base += 1;
        }
    }
}

type FrameKey = (u64, [u8; 16]);

/// Frames delivered already, oldest first: packed ones with their key, to
/// be taken back by a later member that shares them. The newest
/// `RECENT_BYTES` are kept; older ones give their buffers to new frames.
#[derive(Default)]
struct Recent {
    frames: VecDeque<(Option<FrameKey>, Vec<u8>)>,
    bytes: u64,
}

impl Recent {
    fn keep(&mut self, key: Option<FrameKey>, buf: Vec<u8>) {
        self.bytes += buf.len() as u64;
        self.frames.push_back((key, buf));
        // Buffers kept beyond the recent bytes are spares, as many as the
        // window may ask for; more are dropped.
        while self.frames.len() > 2 * AHEAD_FRAMES {
            self.pop();
        }
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let (_, b) = self.frames.pop_front()?;
        self.bytes -= b.len() as u64;
        Some(b)
    }

    /// The decoded bytes of packed frame `key`, if still here.
    fn take(&mut self, key: FrameKey) -> Option<Vec<u8>> {
        let i = self.frames.iter().position(|(k, _)| *k == Some(key))?;
        let (_, b) = self.frames.remove(i)?;
        self.bytes -= b.len() as u64;
        Some(b)
    }

    /// A buffer to decode into: the oldest one, unless the frames kept are
    /// all recent.
    fn buffer(&mut self) -> Vec<u8> {
        let oldest = self.frames.front().map_or(0, |(_, b)| b.len() as u64);
        if self.bytes.saturating_sub(oldest) < RECENT_BYTES {
            return Vec::new();
        }
        self.pop().unwrap_or_default()
    }
}

fn lock(recent: &Mutex<Recent>) -> std::sync::MutexGuard<'_, Recent> {
    recent.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first `len` bytes of `buf`, for a file's bytes to overwrite
/// whole. `buf` keeps every byte it was filled with, so zeros are written
/// only where it grows past its longest file so far (clearing and
/// zero-filling it for every file larger than 4 MiB showed as 30 % of the
/// calling thread's samples in a pass over a Python tree; the pass's CPU
/// time fell by 0.6 %, its time within noise).
fn first_bytes(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len {
        // A new buffer rather than a longer one: the old bytes need no
        // copy, and a large zeroed allocation comes zeroed from the system
        // (no pass writing zeros over it, which cost a tree pass ~2 %).
        *buf = Vec::new();
        *buf = vec![0; len];
    }
    &mut buf[..len]
}

/// Runs `f` on a decoded frame's bytes, or returns its decoding error.
fn with_bytes<R>(d: &Decoding, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
    match d.slot.with(|r| r.as_ref().ok().map(|b| f(b))) {
        Some(Some(r)) => r,
        Some(None) => Err(d
            .slot
            .take()
            .and_then(|r| r.err())
            .unwrap_or_else(|| Error::corrupt("internal: frame not decoded", 0))),
        None => Err(Error::corrupt("internal: frame taken", 0)),
    }
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
        let mut entries = self.extraction_list(prefix)?;
        let mut w = Window {
            frames: VecDeque::new(),
            base: 0,
            bytes: 0,
            packs: HashMap::new(),
        };
        let mut planned: VecDeque<Planned> = VecDeque::new();
        // The frames of the entry being planned (one list for all entries).
        let mut ptrs: Vec<Ptr> = Vec::new();
        let recent: Mutex<Recent> = Mutex::new(Recent::default());
        rayon::in_place_scope(|s| -> Result<()> {
            let mut more = true;
            loop {
                // Plan ahead while the window has room (and at least the
                // entry to deliver next).
                while more && (planned.is_empty() || !w.full()) {
                    let Some(item) = entries.next() else {
                        more = false;
                        break;
                    };
                    let (rel, rec) = item?;
                    let start = w.base + w.frames.len();
                    let mut first = None;
                    self.frames_ahead(&rec, &mut ptrs)?;
                    for ptr in ptrs.drain(..) {
                        let key = (ptr.offset, ptr.tag);
                        let packed = matches!(rec.content, Content::Packed { .. });
                        if let Some(&i) = w.packs.get(&key).filter(|_| packed) {
                            w.frames[i - w.base].users += 1;
                            first = Some(i);
                            continue;
                        }
                        let slot = Arc::new(Slot::default());
                        let kept = if packed {
                            lock(&recent).take(key)
                        } else {
                            None
                        };
                        match kept {
                            Some(bytes) => slot.fill(Ok(bytes)),
                            None => {
                                let job = slot.clone();
                                let recent = &recent;
                                s.spawn(move |_| {
                                    let buf = lock(recent).buffer();
                                    job.fill(self.store.frame_into(&ptr, buf));
                                });
                            }
                        }
                        if packed {
                            w.packs.insert(key, w.base + w.frames.len());
                        }
                        w.bytes += ptr.raw_len as u64;
                        w.frames.push_back(Decoding {
                            slot,
                            ptr,
                            users: 1,
                        });
                    }
                    let frames = match first {
                        Some(i) => i..i + 1,
                        None => start..w.base + w.frames.len(),
                    };
                    planned.push_back(Planned { rel, rec, frames });
                }
                let Some(p) = planned.pop_front() else {
                    return Ok(());
                };
                let frames = p.frames.clone();
                self.deliver(p, &w, &mut f, &mut stats, &mut buf)?;
                for i in frames {
                    if let Some(d) = i.checked_sub(w.base).and_then(|k| w.frames.get_mut(k)) {
                        d.users = d.users.saturating_sub(1);
                    }
                }
                w.release(&recent);
            }
        })?;
        stats.duration = started.elapsed();
        Ok(stats)
    }

    /// The frames decoded ahead for `rec`, into `out`: its packed frame, or
    /// every frame of a file up to `AHEAD_FILE`; none otherwise.
    fn frames_ahead(&self, rec: &Record, out: &mut Vec<Ptr>) -> Result<()> {
        out.clear();
        if matches!(rec.content, Content::Frames { .. }) && rec.len > AHEAD_FILE {
            return Ok(());
        }
        self.frames_of_file(rec, out)
    }

    /// Appends the data frames holding `rec`'s bytes to `out`, in order:
    /// its packed frame, or every frame of its own; none for anything else.
    pub(crate) fn frames_of_file(&self, rec: &Record, out: &mut Vec<Ptr>) -> Result<()> {
        match &rec.content {
            _ if rec.kind != EntryKind::File => {}
            Content::Packed { frame, .. } => out.push(*frame),
            Content::Frames {
                frame_size,
                depth,
                root,
            } => {
                let n = rec.content.check_layout(rec.len)?.unwrap_or(0);
                let layout = (rec.len, *frame_size as u64, n);
                for i in 0..n {
                    out.push(frame_of(&self.store, (*depth, root), layout, i)?);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Hands one planned entry to `f`, its frames taken from `w`.
    fn deliver(
        &self,
        p: Planned,
        w: &Window,
        f: &mut impl FnMut(&Entry, &[u8]) -> Result<()>,
        stats: &mut ExtractStats,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Planned { rel, rec, frames } = p;
        let e = entry(rel, &rec);
        match rec.kind {
            EntryKind::File => {
                // Also checks the content layout against the length.
                self.check_plausible_len(&rec)?;
                let len = usize::try_from(rec.len)
                    .map_err(|_| limit("file larger than memory".into(), rec.len))?;
                let short = || Error::corrupt("content shorter than its length", 0);
                match (&rec.content, frames.len()) {
                    (Content::Packed { offset, .. }, 1) => {
                        with_bytes(w.get(frames.start)?, |b| {
                            let bytes = b
                                .get(*offset as usize..)
                                .and_then(|b| b.get(..len))
                                .ok_or_else(short)?;
                            f(&e, bytes)
                        })?;
                    }
                    (Content::Frames { .. }, 1) => {
                        with_bytes(w.get(frames.start)?, |b| {
                            if b.len() != len {
                                return Err(short());
                            }
                            f(&e, b)
                        })?;
                    }
                    (Content::Frames { .. }, n) if n > 1 => {
                        let out = first_bytes(buf, len);
                        let mut at = 0;
                        for i in frames {
                            with_bytes(w.get(i)?, |b| {
                                let end = at + b.len();
                                out.get_mut(at..end).ok_or_else(short)?.copy_from_slice(b);
                                at = end;
                                Ok(())
                            })?;
                        }
                        if at != len {
                            return Err(short());
                        }
                        f(&e, out)?;
                    }
                    _ => {
                        // Inline, empty, or too large to decode ahead.
                        let out = first_bytes(buf, len);
                        if self.read_record(&rec, 0, out)? != len {
                            return Err(Error::corrupt("file shorter than its length", 0));
                        }
                        f(&e, out)?;
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
        Ok(())
    }
}
