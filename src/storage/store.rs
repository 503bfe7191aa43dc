//! The store: seals and writes regions, reads and opens them, and keeps the
//! cache of decoded objects. Everything above it speaks in [`Ptr`]s.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::alloc::Allocator;
use super::backend::{Backend, Counted, IoStats};
use super::cache::{Cache, CacheStats, Cached};
use crate::crypto::keys::{SealKey, SubKeys};
use crate::crypto::seal::{self, Kind, Prepared};
use crate::error::{Error, Result};
use crate::format::bytes::{Put, Reader};
use crate::format::node::Node;
use crate::format::ptr::{PTR_LEN, Ptr};
use crate::format::{DATA_START, INDEX_FANOUT};
use crate::par::{Slot, par_map, par_map_owned};

/// Largest sealed region or uncompressed length accepted when reading.
pub const MAX_REGION: u32 = 32 * 1024 * 1024;

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch { cbuf: Vec::new(), out: Vec::new(), memo: None }) };
}

/// Per-thread buffers for opening regions, reused across calls, and a note
/// of which region they hold decoded, so reading the same frame again on
/// this thread (neighbouring small files of one pack, sequential ranges)
/// decrypts and decompresses it once.
struct Scratch {
    cbuf: Vec<u8>,
    out: Vec<u8>,
    memo: Option<Memo>,
}

#[derive(PartialEq, Eq)]
struct Memo {
    archive_id: [u8; 16],
    kind: Kind,
    offset: u64,
    tag: [u8; 16],
    /// Where the plaintext is: `Some(range)` of `cbuf` (stored codec) or
    /// `None` for all of `out`.
    stored: Option<Range<usize>>,
}

impl Memo {
    fn same(&self, id: &[u8; 16], kind: Kind, ptr: &Ptr) -> bool {
        self.archive_id == *id
            && self.kind == kind
            && self.offset == ptr.offset
            && self.tag == ptr.tag
    }
}

/// Regions written together whose average sealed length is under this go
/// out as one buffer and one write; larger ones with a write each.
const RUN_BELOW: u64 = 64 << 10;

pub struct Store {
    backend: Counted,
    keys: SubKeys,
    archive_id: [u8; 16],
    cache: Mutex<Cache>,
    /// End of allocated space as this handle sees it (committed or staged).
    tail: AtomicU64,
    cache_frames: AtomicBool,
    alloc: Mutex<Option<Allocator>>,
    tail_only: AtomicBool,
    /// Whether the dirty mark is on disk (free space may hold uncommitted
    /// bytes since the last commit or rollback).
    dirty: AtomicBool,
    /// Regions written since `take_written` was last called.
    written: Mutex<Vec<(u64, u64)>>,
    /// zstd level of metadata pages.
    pub level: i32,
    /// zstd level of data frames (the profile may choose a faster one).
    pub frame_level: i32,
}

/// A frame being compressed on the worker threads
/// ([`Store::start_frame`]); its result waits here until it is written.
pub struct Compressing(Arc<Slot<Result<Prepared>>>);

impl Compressing {
    /// Waits for the compression to finish and takes its result.
    fn wait(self) -> Result<Prepared> {
        self.0
            .take()
            .unwrap_or_else(|| Err(Error::corrupt("internal: compression taken twice", 0)))
    }
}

/// A frame being opened and decompressed on the worker threads
/// ([`Store::start_decode`]).
pub struct Decoding(Arc<Slot<Result<Vec<u8>>>>);

impl Decoding {
    /// Waits for the frame's plaintext.
    pub fn finish(self) -> Result<Vec<u8>> {
        self.0
            .take()
            .unwrap_or_else(|| Err(Error::corrupt("internal: decoding taken twice", 0)))
    }
}

fn cipher_for(keys: &SubKeys, kind: Kind) -> &SealKey {
    match kind {
        Kind::Frame => &keys.data,
        Kind::Commit => &keys.commit,
        _ => &keys.meta,
    }
}

impl Store {
    pub fn new(
        backend: Box<dyn Backend>,
        keys: SubKeys,
        archive_id: [u8; 16],
        cache_bytes: usize,
        level: i32,
    ) -> Store {
        Store {
            backend: Counted::new(backend),
            keys,
            archive_id,
            cache: Mutex::new(Cache::new(cache_bytes)),
            tail: AtomicU64::new(DATA_START),
            cache_frames: AtomicBool::new(false),
            alloc: Mutex::new(None),
            tail_only: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            written: Mutex::new(Vec::new()),
            level,
            frame_level: level,
        }
    }

    pub fn backend(&self) -> &dyn Backend {
        &self.backend
    }

    pub fn keys(&self) -> &SubKeys {
        &self.keys
    }

    pub fn archive_id(&self) -> &[u8; 16] {
        &self.archive_id
    }

    pub fn io_stats(&self) -> IoStats {
        self.backend.stats()
    }

    pub fn tail(&self) -> u64 {
        self.tail.load(Ordering::Acquire)
    }

    pub fn set_tail(&self, end: u64) {
        self.tail.store(end, Ordering::Release);
    }

    pub fn set_cache_frames(&self, on: bool) {
        self.cache_frames.store(on, Ordering::Relaxed);
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // A panic while holding the lock cannot leave the cache inconsistent
        // in a way that matters (it only holds decoded copies).
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache().stats()
    }

    pub fn clear_cache(&self) {
        self.cache().clear();
    }

    /// Drops superseded regions' decoded copies from the cache, so a long
    /// session of commits does not fill it with old node versions.
    pub fn forget<'a>(&self, ptrs: impl IntoIterator<Item = &'a Ptr>) {
        let mut c = self.cache();
        for p in ptrs {
            c.remove(p);
        }
    }

    // ---- writing ----

    /// The zstd level regions of `kind` are compressed at (`None`: stored).
    fn level_of(&self, kind: Kind) -> Option<i32> {
        match kind {
            Kind::Frame => Some(self.frame_level),
            Kind::TocNode | Kind::VarNode | Kind::FrameIndex => Some(self.level),
            _ => None,
        }
    }

    /// Seals and writes one region at the tail.
    pub fn write_region(&self, kind: Kind, generation: u64, raw: &[u8]) -> Result<Ptr> {
        let prepared = Prepared::new(raw, self.level_of(kind))?;
        let mut ptrs = self.write_prepared(kind, generation, vec![prepared], true)?;
        ptrs.pop()
            .ok_or_else(|| Error::corrupt("no region written", 0))
    }

    /// Compresses `raws` in parallel, then seals and writes them as one
    /// contiguous run at the tail. Returns their pointers in order.
    pub fn write_frames(&self, generation: u64, raws: &[&[u8]]) -> Result<Vec<Ptr>> {
        let level = Some(self.frame_level);
        let prepared = par_map(raws, |raw| Prepared::new(raw, level))
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        self.write_prepared(Kind::Frame, generation, prepared, false)
    }

    /// Starts compressing `raw` as a data frame on the worker threads,
    /// while the caller goes on; [`Store::write_started`] writes it.
    /// `None` when called on a worker thread itself, which must not wait
    /// for work queued behind it.
    pub fn start_frame(&self, raw: Arc<Vec<u8>>) -> Option<Compressing> {
        if rayon::current_thread_index().is_some() {
            return None;
        }
        let level = self.frame_level;
        let slot = Arc::new(Slot::default());
        let job = slot.clone();
        rayon::spawn(move || job.fill(Prepared::new(&raw, Some(level))));
        Some(Compressing(slot))
    }

    /// Like [`Store::write_frames`], for frames whose compression may have
    /// been started already: each is `(started, raw)`, compressed now (in
    /// parallel) where `started` is `None`.
    pub fn write_started(
        &self,
        generation: u64,
        frames: Vec<(Option<Compressing>, &[u8])>,
    ) -> Result<Vec<Ptr>> {
        let level = Some(self.frame_level);
        // Frames not started are compressed on the workers; started ones
        // are waited for here (on a worker, by running queued work).
        let todo: Vec<&[u8]> = frames
            .iter()
            .filter(|(started, _)| started.is_none())
            .map(|(_, raw)| *raw)
            .collect();
        let mut fresh = par_map(&todo, |raw| Prepared::new(raw, level)).into_iter();
        let mut prepared = Vec::with_capacity(frames.len());
        for (started, _) in frames {
            let p = match started {
                Some(c) => c.wait(),
                None => fresh
                    .next()
                    .unwrap_or_else(|| Err(Error::corrupt("internal: frame not compressed", 0))),
            };
            prepared.push(p?);
        }
        self.write_prepared(Kind::Frame, generation, prepared, true)
    }

    /// Places `lens` regions: one contiguous run from free space if one
    /// fits, else each region on its own (free space or the tail). Returns
    /// the offsets and whether they form one run.
    fn place(&self, lens: &[u64]) -> Result<(Vec<u64>, bool)> {
        let total: u64 = lens.iter().sum();
        let mut alloc = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        let tail_only = self.tail_only.load(Ordering::Relaxed);
        let mut offsets = Vec::with_capacity(lens.len());
        let free_space = alloc.as_ref().is_some_and(|a| a.has_free()) && !tail_only;
        if free_space && !self.dirty.swap(true, Ordering::AcqRel) {
            // Before the first write into free space since the last commit:
            // note durably that free space may now hold uncommitted bytes,
            // so an open after a crash zeroes it again.
            let mark = crate::format::REDACT_DIRTY.to_le_bytes();
            if let Err(e) = self
                .backend
                .write_at(crate::format::REDACT_MARK, &mark)
                .and_then(|()| self.backend.sync())
            {
                self.dirty.store(false, Ordering::Release);
                return Err(e);
            }
        }
        let run_start = match alloc.as_mut() {
            Some(a) if !tail_only => a.alloc(total),
            _ => None,
        };
        if let Some(mut at) = run_start {
            for l in lens {
                offsets.push(at);
                at += l;
            }
            return Ok((offsets, true));
        }
        let mut contiguous = true;
        let mut tail = self.tail();
        for &l in lens {
            let from_free = match alloc.as_mut() {
                Some(a) if !tail_only && lens.len() > 1 => a.alloc(l),
                _ => None,
            };
            match from_free {
                Some(off) => {
                    contiguous = false;
                    offsets.push(off);
                }
                None => {
                    offsets.push(tail);
                    tail += l;
                }
            }
        }
        self.set_tail(tail);
        Ok((offsets, contiguous))
    }

    /// Places, seals and writes `prepared`; seals on the worker threads
    /// unless `seal_here` (the workers are busy with queued compression,
    /// and waiting behind it would stall this thread longer than sealing).
    fn write_prepared(
        &self,
        kind: Kind,
        generation: u64,
        mut prepared: Vec<Prepared>,
        seal_here: bool,
    ) -> Result<Vec<Ptr>> {
        let lens: Vec<u64> = prepared.iter().map(|p| p.sealed_len() as u64).collect();
        let (offsets, contiguous) = self.place(&lens)?;
        let cipher = cipher_for(&self.keys, kind);
        let id = self.archive_id;
        let work: Vec<(&mut Prepared, u64)> =
            prepared.iter_mut().zip(offsets.iter().copied()).collect();
        let seal = |(p, off): (&mut Prepared, u64)| {
            let aad = seal::aad(&id, kind, off, generation, p.raw_len);
            p.seal(cipher, &id, &aad)
        };
        let tags = if seal_here {
            work.into_iter().map(seal).collect::<Result<Vec<_>>>()?
        } else {
            par_map_owned(work, seal)
                .into_iter()
                .collect::<Result<Vec<_>>>()?
        };
        let mut ptrs = Vec::with_capacity(prepared.len());
        for ((p, off), tag) in prepared.iter().zip(&offsets).zip(tags) {
            ptrs.push(Ptr {
                offset: *off,
                len: p.buf.len() as u32,
                generation,
                raw_len: p.raw_len,
                tag,
            });
        }
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(offsets.iter().zip(&lens).map(|(&o, &l)| (o, l)));
        // One write for a contiguous run of small regions (metadata pages:
        // fewer calls); large ones (data frames) each with their own, as
        // copying them into one buffer first costs more than the calls.
        let total = lens.iter().sum::<u64>();
        let small = total < RUN_BELOW * prepared.len() as u64;
        if prepared.len() == 1 || !contiguous || !small {
            for (p, off) in prepared.iter().zip(&offsets) {
                self.backend.write_at(*off, &p.buf)?;
            }
        } else {
            let mut run = Vec::with_capacity(total as usize);
            for p in &prepared {
                run.extend_from_slice(&p.buf);
            }
            self.backend.write_at(offsets[0], &run)?;
        }
        if kind == Kind::Frame {
            // Data reaches the disk while the writer goes on (a hint: the
            // commit's sync still makes it durable).
            self.backend.start_sync();
        }
        Ok(ptrs)
    }

    /// Whether free space may hold uncommitted bytes (see `place`).
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// The clean mark was written: free space holds only zeros again.
    pub fn set_clean(&self) {
        self.dirty.store(false, Ordering::Release);
    }

    /// The regions written since the last call, as `(offset, len)`.
    pub fn take_written(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut *self.written.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Installs the allocator (loaded by the lockbox on its first write).
    pub fn set_allocator(&self, a: Option<Allocator>) {
        *self.alloc.lock().unwrap_or_else(|e| e.into_inner()) = a;
    }

    /// Runs `f` on the allocator, if loaded.
    pub fn with_allocator<R>(&self, f: impl FnOnce(&mut Allocator) -> R) -> Option<R> {
        self.alloc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .map(f)
    }

    /// While set, new regions go to the tail only (the free-space index's
    /// own pages and the redaction list, so writing them cannot change the
    /// free set they describe).
    pub fn set_tail_only(&self, on: bool) {
        self.tail_only.store(on, Ordering::Relaxed);
    }

    /// Overwrites `[offset, offset + len)` with zeros, in bounded chunks.
    pub fn zero(&self, offset: u64, len: u64) -> Result<()> {
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            self.backend.write_at(offset + done, &zeros[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    /// Writes a B-tree node and caches its decoded form.
    pub fn write_node(&self, kind: Kind, generation: u64, node: Arc<Node>) -> Result<Ptr> {
        let raw = node.encode();
        let ptr = self.write_region(kind, generation, &raw)?;
        self.cache().insert(&ptr, Cached::Node(node), raw.len());
        Ok(ptr)
    }

    /// Writes B-tree nodes together: encoded and compressed on the worker
    /// threads, then sealed and written as one run; caches their decoded
    /// forms. Returns their pointers in order.
    pub fn write_nodes(
        &self,
        kind: Kind,
        generation: u64,
        nodes: Vec<Arc<Node>>,
    ) -> Result<Vec<Ptr>> {
        let level = self.level_of(kind);
        let mut prepared = Vec::with_capacity(nodes.len());
        let mut raw_lens = Vec::with_capacity(nodes.len());
        for p in par_map(&nodes, |n| {
            let raw = n.encode();
            Prepared::new(&raw, level).map(|p| (p, raw.len()))
        }) {
            let (p, len) = p?;
            prepared.push(p);
            raw_lens.push(len);
        }
        let ptrs = self.write_prepared(kind, generation, prepared, false)?;
        let mut cache = self.cache();
        for ((node, len), ptr) in nodes.into_iter().zip(raw_lens).zip(&ptrs) {
            cache.insert(ptr, Cached::Node(node), len);
        }
        Ok(ptrs)
    }

    /// Writes a frame-index page.
    pub fn write_index(&self, generation: u64, ptrs: &[Ptr]) -> Result<Ptr> {
        let mut raw = Vec::with_capacity(4 + ptrs.len() * PTR_LEN);
        raw.put_u32(ptrs.len() as u32);
        for p in ptrs {
            p.encode(&mut raw);
        }
        self.write_region(Kind::FrameIndex, generation, &raw)
    }

    // ---- reading ----

    fn check_ptr(&self, ptr: &Ptr) -> Result<()> {
        let ok = ptr.offset >= DATA_START
            && ptr.end() <= self.tail()
            && ptr.len as usize >= seal::OVERHEAD
            && ptr.len <= MAX_REGION
            && ptr.raw_len <= MAX_REGION;
        if ok {
            Ok(())
        } else {
            Err(Error::corrupt(
                "pointer outside the allocated area",
                ptr.offset,
            ))
        }
    }

    /// Reads the region at `ptr` into `cbuf` and opens it there: returns
    /// its codec byte and where its body lies in `cbuf`.
    fn read_open(&self, ptr: &Ptr, kind: Kind, cbuf: &mut Vec<u8>) -> Result<(u8, Range<usize>)> {
        let aad = self.read_sealed(ptr, kind, cbuf)?;
        let (codec, body) =
            seal::open(&cipher_for(&self.keys, kind).cipher, &aad, cbuf, ptr.offset)?;
        // The body follows the nonce and the codec byte.
        let start = seal::NONCE_LEN + 1;
        Ok((codec, start..start + body.len()))
    }

    /// Reads `ptr`'s sealed bytes into `cbuf` and checks them against the
    /// pointer's tag; returns the associated data to open them with.
    fn read_sealed(&self, ptr: &Ptr, kind: Kind, cbuf: &mut Vec<u8>) -> Result<[u8; 41]> {
        self.check_ptr(ptr)?;
        // Sized without zeroing what it already holds (the read overwrites
        // it all). The sealed bytes are copied out of the file (or its map)
        // before they are opened: authenticating and decrypting in one pass
        // over a shared map could decrypt bytes another process changed
        // after they were authenticated.
        let n = ptr.len as usize;
        if cbuf.len() < n {
            cbuf.resize(n, 0);
        }
        cbuf.truncate(n);
        self.backend.read_at(ptr.offset, cbuf)?;
        if cbuf[cbuf.len() - seal::TAG_LEN..] != ptr.tag {
            return Err(Error::corrupt(
                "region does not match its pointer (swapped, moved or replayed)",
                ptr.offset,
            ));
        }
        Ok(seal::aad(
            &self.archive_id,
            kind,
            ptr.offset,
            ptr.generation,
            ptr.raw_len,
        ))
    }

    /// Reads data frame `ptr`'s sealed bytes on this thread and starts
    /// opening and decompressing them on the worker threads. `None` on a
    /// worker thread (it must not wait for work queued behind it): the
    /// caller decodes the frame itself.
    pub fn start_decode(&self, ptr: &Ptr) -> Result<Option<Decoding>> {
        if rayon::current_thread_index().is_some() {
            return Ok(None);
        }
        let mut sealed = Vec::new();
        let aad = self.read_sealed(ptr, Kind::Frame, &mut sealed)?;
        let cipher = cipher_for(&self.keys, Kind::Frame).cipher.clone();
        let (offset, raw_len) = (ptr.offset, ptr.raw_len as usize);
        let slot = Arc::new(Slot::default());
        let job = slot.clone();
        rayon::spawn(move || {
            let plain = seal::open(&cipher, &aad, &mut sealed, offset).and_then(|(codec, body)| {
                let mut out = Vec::new();
                seal::decode_into(codec, body, raw_len, &mut out, offset)?;
                Ok(out)
            });
            job.fill(plain);
        });
        Ok(Some(Decoding(slot)))
    }

    /// Reads and opens the region at `ptr`, decodes it (exactly `raw_len`
    /// bytes, in this thread's scratch buffer, or the stored body where it
    /// lies) and hands it to `f`.
    fn open_with<R>(&self, ptr: &Ptr, kind: Kind, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let Scratch { cbuf, out, memo } = &mut *s;
            if let Some(m) = memo
                .as_ref()
                .filter(|m| m.same(&self.archive_id, kind, ptr))
            {
                return match m.stored.clone() {
                    Some(r) => f(&cbuf[r]),
                    None => f(out),
                };
            }
            *memo = None;
            let (codec, body) = self.read_open(ptr, kind, cbuf)?;
            let mut m = Memo {
                archive_id: self.archive_id,
                kind,
                offset: ptr.offset,
                tag: ptr.tag,
                stored: None,
            };
            if codec == seal::CODEC_STORED {
                if body.len() != ptr.raw_len as usize {
                    return Err(Error::corrupt(
                        "stored body length differs from its pointer",
                        ptr.offset,
                    ));
                }
                m.stored = Some(body.clone());
                *memo = Some(m);
                return f(&cbuf[body]);
            }
            seal::decode_into(codec, &cbuf[body], ptr.raw_len as usize, out, ptr.offset)?;
            *memo = Some(m);
            f(out)
        })
    }

    /// Reads, opens and decodes the region at `ptr` into `out` (its old
    /// contents dropped, its capacity reused), which then holds exactly
    /// the region's plaintext: the decoder writes straight into it. Bypasses
    /// this thread's memo and the cache.
    pub(crate) fn decode_owned(&self, ptr: &Ptr, kind: Kind, mut out: Vec<u8>) -> Result<Vec<u8>> {
        self.opened(ptr, kind, |codec, body| {
            seal::decode_into(codec, body, ptr.raw_len as usize, &mut out, ptr.offset)
        })?;
        Ok(out)
    }

    /// Reads and opens the region at `ptr` into this thread's scratch
    /// buffer, bypassing (and forgetting) the thread's last decoded region,
    /// and hands its codec and body to `f` to decode.
    fn opened<R>(
        &self,
        ptr: &Ptr,
        kind: Kind,
        f: impl FnOnce(u8, &[u8]) -> Result<R>,
    ) -> Result<R> {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let Scratch { cbuf, memo, .. } = &mut *s;
            // `cbuf` is about to be overwritten.
            *memo = None;
            let (codec, body) = self.read_open(ptr, kind, cbuf)?;
            f(codec, &cbuf[body])
        })
    }

    /// Whether this thread's last decoded region is `ptr`'s.
    fn memo_holds(&self, kind: Kind, ptr: &Ptr) -> bool {
        SCRATCH.with(|s| {
            s.borrow()
                .memo
                .as_ref()
                .is_some_and(|m| m.same(&self.archive_id, kind, ptr))
        })
    }

    /// Reads a B-tree node at `level` (through the cache).
    pub fn read_node(&self, kind: Kind, ptr: &Ptr, level: u8) -> Result<Arc<Node>> {
        if let Some(Cached::Node(n)) = self.cache().get(ptr) {
            if n.level() == level {
                return Ok(n);
            }
            return Err(Error::corrupt(
                "node level differs from its place in the tree",
                ptr.offset,
            ));
        }
        let node = Arc::new(self.open_with(ptr, kind, |raw| Node::decode(raw, ptr.offset, level))?);
        self.cache()
            .insert(ptr, Cached::Node(node.clone()), ptr.raw_len as usize);
        Ok(node)
    }

    /// Reads a frame-index page (through the cache).
    pub fn read_index(&self, ptr: &Ptr) -> Result<Arc<Vec<Ptr>>> {
        if let Some(Cached::Index(v)) = self.cache().get(ptr) {
            return Ok(v);
        }
        let v = Arc::new(self.open_with(ptr, Kind::FrameIndex, |raw| {
            let mut r = Reader::new(raw, "frame index", ptr.offset);
            let n = r.u32()? as u64;
            if n == 0 || n > INDEX_FANOUT || r.remaining() as u64 != n * PTR_LEN as u64 {
                return Err(r.err("entry count out of range"));
            }
            (0..n)
                .map(|_| Ptr::decode(&mut r))
                .collect::<Result<Vec<_>>>()
        })?);
        self.cache()
            .insert(ptr, Cached::Index(v.clone()), ptr.raw_len as usize);
        Ok(v)
    }

    /// Calls `f` with the decoded bytes of a data frame. Without frame
    /// caching this allocates nothing at steady state (per-thread scratch).
    pub fn with_frame<R>(&self, ptr: &Ptr, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        if !self.cache_frames.load(Ordering::Relaxed) {
            return self.open_with(ptr, Kind::Frame, f);
        }
        if let Some(Cached::Frame(v)) = self.cache().get(ptr) {
            return f(&v);
        }
        let v = Arc::new(self.decode_owned(ptr, Kind::Frame, Vec::new())?);
        self.cache().insert(ptr, Cached::Frame(v.clone()), v.len());
        f(&v)
    }

    /// Decodes data frame `ptr` straight into `out`, which must be exactly
    /// its length: a whole frame read without an intermediate copy (from
    /// this thread's last decoded region or the cache when they hold it).
    pub fn frame_to_slice(&self, ptr: &Ptr, out: &mut [u8]) -> Result<()> {
        let copy = |b: &[u8], out: &mut [u8]| {
            if b.len() != out.len() {
                return Err(Error::corrupt("frame shorter than its length", ptr.offset));
            }
            out.copy_from_slice(b);
            Ok(())
        };
        if self.cache_frames.load(Ordering::Relaxed) || self.memo_holds(Kind::Frame, ptr) {
            return self.with_frame(ptr, |b| copy(b, out));
        }
        self.opened(ptr, Kind::Frame, |codec, body| {
            seal::decode_to_slice(codec, body, out, ptr.offset)
        })
    }

    /// A frame's plaintext as a buffer of its own (from the cache when the
    /// profile keeps frames, else decoded straight into a new buffer).
    pub fn frame_owned(&self, ptr: &Ptr) -> Result<Vec<u8>> {
        self.frame_into(ptr, Vec::new())
    }

    /// [`frame_owned`](Self::frame_owned) into `buf`, whose capacity is
    /// reused (no fresh pages to fault in for each frame).
    pub fn frame_into(&self, ptr: &Ptr, mut buf: Vec<u8>) -> Result<Vec<u8>> {
        if self.cache_frames.load(Ordering::Relaxed) {
            return self.with_frame(ptr, |b| {
                buf.clear();
                buf.extend_from_slice(b);
                Ok(buf)
            });
        }
        self.decode_owned(ptr, Kind::Frame, buf)
    }

    /// Reads a whole region's plaintext (verification, inspection).
    /// Always reads and authenticates the bytes on disk (no memo).
    pub fn read_plain(&self, kind: Kind, ptr: &Ptr) -> Result<Vec<u8>> {
        self.decode_owned(ptr, kind, Vec::new())
    }
}
