//! `verify()`: walk everything reachable from the last commit, authenticate
//! every region, and check the trees' invariants and the data layout.

use std::collections::{BTreeMap, VecDeque};

use ahash::AHashSet;

use crate::crypto::seal::Kind;
use crate::data::index::{self, Hint, Target};
use crate::error::{Error, Result};
use crate::format::bytes::Reader;
use crate::format::commit::TreeRoot;
use crate::format::entry::{Content, EntryKind, Record, VarRecord};
use crate::format::node::Node;
use crate::format::ptr::{PTR_LEN, Ptr};
use crate::format::{DATA_START, INDEX_FANOUT, MAX_TREE_HEIGHT};
use crate::lockbox::Lockbox;
use crate::options::{Progress, VerifyReport};
use crate::path::from_key;
use crate::space::pack_key;
use crate::storage::alloc::decode_extent;
use crate::storage::store::Decoding;

/// The spans that tile the data area, as named in `verify`'s errors.
const SPAN_KINDS: [&str; 3] = [
    "a reachable region",
    "a free extent",
    "an extent of the redaction list",
];

/// Data frames decoding ahead of the walk at most (and decoded frames in
/// memory at once).
const FRAMES_AHEAD: usize = 16;

/// A verification's report, reachable spans, and (when collected) plaintexts.
type Walked = (VerifyReport, Vec<(u64, u64)>, Vec<Vec<u8>>);

struct Walk<'a> {
    lb: &'a Lockbox,
    regions: Vec<(u64, u64)>,
    frames_seen: AHashSet<(u64, [u8; 16])>,
    /// Framed contents' roots already walked, with the layout (length,
    /// frame size, depth) of the first entry that named them: entries
    /// sharing a content must agree on it.
    roots_seen: ahash::AHashMap<(u64, [u8; 16]), (u64, u32, u8)>,
    /// Packed frames reached from a `Packed` locator: offset, length.
    packed_frames: AHashSet<(u64, u64)>,
    /// Member references expected from packed and framed entries (with
    /// what a hinted value must name), and found in the tree (with their
    /// values).
    packed: BTreeMap<Vec<u8>, Target>,
    pack_refs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Content-index entries (`data::index`).
    index: Vec<(Hint, Target)>,
    /// Free extents as `(start, end)`.
    free: Vec<(u64, u64)>,
    /// Plaintexts of every region read, for `inspect`.
    plaintexts: Option<Vec<Vec<u8>>>,
    /// Data frames being authenticated and decoded on the worker threads
    /// while the walk goes on, oldest first (one thread decoding every
    /// frame of a 155 MB archive took 430 ms).
    decoding: VecDeque<Decoding>,
    progress: &'a mut dyn FnMut(&Progress),
    done: Progress,
    report: VerifyReport,
}

impl Lockbox {
    /// Authenticates every region reachable from the last commit and checks
    /// the invariants: keys ordered and within their parent's range, every
    /// leaf at the same depth, no child newer than its parent, entry counts
    /// as recorded, every file's frames consistent with its length, pack
    /// references matching the packed entries, and reachable regions, free
    /// extents and the pending redaction list tiling the data area exactly
    /// (each byte allocated once, none leaked). Staged changes are not
    /// checked.
    pub fn verify(&self) -> Result<VerifyReport> {
        Ok(self.walk(false, &mut |_| {})?.0)
    }

    /// [`verify`](Lockbox::verify), calling `progress` after each entry
    /// (entries and data bytes checked so far, and the entry total).
    pub fn verify_with_progress(
        &self,
        mut progress: impl FnMut(&Progress),
    ) -> Result<VerifyReport> {
        Ok(self.walk(false, &mut progress)?.0)
    }

    /// Verifies, and also returns the reachable spans and (when `collect`)
    /// the plaintext of every reachable region.
    fn walk(&self, collect: bool, progress: &mut dyn FnMut(&Progress)) -> Result<Walked> {
        let c = &self.committed;
        let mut w = Walk {
            lb: self,
            regions: Vec::new(),
            frames_seen: AHashSet::new(),
            roots_seen: ahash::AHashMap::new(),
            packed_frames: AHashSet::new(),
            packed: BTreeMap::new(),
            pack_refs: BTreeMap::new(),
            index: Vec::new(),
            free: Vec::new(),
            plaintexts: collect.then(Vec::new),
            decoding: VecDeque::new(),
            progress,
            done: Progress {
                files_total: Some(c.toc.count + c.vars.count),
                ..Default::default()
            },
            report: VerifyReport {
                sequence: c.seq,
                toc_height: c.toc.height,
                vars_height: c.vars.height,
                ..Default::default()
            },
        };
        let entries = w.tree(Kind::TocNode, &c.toc, c.seq)?;
        let vars = w.tree(Kind::VarNode, &c.vars, c.seq)?;
        w.finish_frames(0)?;
        w.tree(Kind::PackNode, &c.packs, c.seq)?;
        w.tree(Kind::FreeNode, &c.free, c.seq)?;
        w.report.entries = entries;
        w.report.variables = vars;
        w.check_pack_refs()?;
        // (start, end, what): what indexes SPAN_KINDS.
        let mut spans: Vec<(u64, u64, usize)> = std::mem::take(&mut w.regions)
            .into_iter()
            .map(|(s, e)| (s, e, 0))
            .collect();
        let mut pending: Vec<(u64, u64)> = Vec::new();
        if let Some(p) = &c.redact {
            spans.push((p.offset, p.end(), 0));
            w.report.regions += 1;
            let raw = self.store.read_plain(Kind::RedactList, p)?;
            let list = crate::space::RedactList::decode(&raw, p.offset)?;
            if let Some(v) = w.plaintexts.as_mut() {
                v.push(raw);
            }
            pending = list.all().map(|(o, l)| (o, o.saturating_add(l))).collect();
            // Frames left to repack are live packed frames (so the tiling
            // below counts them once, as reachable), each named once.
            let mut named = AHashSet::new();
            for f in &list.repack {
                if !w.packed_frames.contains(f) || !named.insert(f.0) {
                    return Err(Error::corrupt(
                        "frame to repack is not a live packed frame",
                        p.offset,
                    ));
                }
            }
            w.report.repack_pending = list.repack.len() as u64;
        }
        let reachable: Vec<(u64, u64)> = spans.iter().map(|&(s, e, _)| (s, e)).collect();
        w.report.pending_bytes = pending.iter().map(|(o, e)| e - o).sum();
        spans.extend(pending.into_iter().map(|(s, e)| (s, e, 2)));
        w.report.free_bytes = w.free.iter().map(|(o, e)| e - o).sum();
        spans.extend(w.free.iter().map(|&(s, e)| (s, e, 1)));
        // Reachable regions, free extents and the redaction list tile the
        // data area exactly: nothing overlaps, nothing is lost. The error
        // names the two kinds of span that collide, so a hostile free-space
        // index shows as such.
        spans.sort_unstable();
        let mut at = DATA_START;
        let mut prev: Option<usize> = None;
        for (start, end, what) in spans {
            if start < at {
                let msg = match prev {
                    None => format!(
                        "{} starts before the data area (header, key or commit slots)",
                        SPAN_KINDS[what]
                    ),
                    Some(p) => format!("{} overlaps {}", SPAN_KINDS[what], SPAN_KINDS[p]),
                };
                return Err(Error::corrupt(msg, start));
            }
            if end > c.data_end {
                return Err(Error::corrupt(
                    format!("{} ends past the committed end", SPAN_KINDS[what]),
                    start,
                ));
            }
            if start > at {
                return Err(Error::corrupt("space neither used nor free (leaked)", at));
            }
            at = end;
            prev = Some(what);
        }
        if at != c.data_end {
            return Err(Error::corrupt(
                "allocated space does not end at the committed end",
                at,
            ));
        }
        if self.store.backend().len()? < c.data_end {
            return Err(Error::corrupt(
                "file shorter than its committed end",
                c.data_end,
            ));
        }
        let plaintexts = w.plaintexts.take().unwrap_or_default();
        Ok((w.report, reachable, plaintexts))
    }
}

impl Walk<'_> {
    fn keep(&mut self, raw: &[u8]) {
        if let Some(v) = self.plaintexts.as_mut() {
            v.push(raw.to_vec());
        }
    }

    fn region(&mut self, ptr: &Ptr) {
        self.regions.push((ptr.offset, ptr.end()));
        self.report.regions += 1;
        self.report.region_bytes += ptr.len as u64;
    }

    fn tree(&mut self, kind: Kind, root: &TreeRoot, seq: u64) -> Result<u64> {
        let Some(ptr) = root.root else { return Ok(0) };
        if root.height == 0 || root.height > MAX_TREE_HEIGHT {
            return Err(Error::corrupt("tree height out of range", ptr.offset));
        }
        if ptr.generation > seq {
            return Err(Error::corrupt("root newer than its commit", ptr.offset));
        }
        let n = self.node(kind, &ptr, (root.height - 1) as u8, None, None)?;
        if n != root.count {
            return Err(Error::corrupt(
                "entry count differs from the commit record",
                ptr.offset,
            ));
        }
        Ok(n)
    }

    /// Checks the subtree at `ptr`; every key must lie in `[lo, hi)`.
    fn node(
        &mut self,
        kind: Kind,
        ptr: &Ptr,
        level: u8,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) -> Result<u64> {
        self.region(ptr);
        let raw = self.lb.store.read_plain(kind, ptr)?;
        self.keep(&raw);
        let node = Node::decode(&raw, ptr.offset, level)?;
        let in_range = |k: &[u8]| lo.is_none_or(|lo| k >= lo) && hi.is_none_or(|hi| k < hi);
        match &node {
            Node::Leaf(entries) => {
                for (k, v) in entries {
                    if !in_range(k) {
                        return Err(Error::corrupt("key outside its parent's range", ptr.offset));
                    }
                    match kind {
                        Kind::TocNode => self.toc_entry(k, v, ptr)?,
                        Kind::VarNode => self.var_entry(k, v, ptr)?,
                        Kind::PackNode => match index::index_hint(k) {
                            Some(h) => {
                                let r = Target::decode(v).ok_or_else(|| {
                                    Error::corrupt("bad content-index entry", ptr.offset)
                                })?;
                                self.index.push((h, r));
                            }
                            None if k.len() >= 10 => {
                                self.pack_refs.insert(k.clone(), v.clone());
                            }
                            None => return Err(Error::corrupt("bad pack reference", ptr.offset)),
                        },
                        _ => {
                            let (o, l) = decode_extent(k, v).ok_or_else(|| {
                                Error::corrupt("bad free-space entry", ptr.offset)
                            })?;
                            self.free.push((o, o.saturating_add(l)));
                        }
                    }
                }
                Ok(entries.len() as u64)
            }
            Node::Internal { children, .. } => {
                let mut total = 0;
                for (i, (k, child)) in children.iter().enumerate() {
                    if !in_range(k) {
                        return Err(Error::corrupt(
                            "separator outside its parent's range",
                            ptr.offset,
                        ));
                    }
                    if child.generation > ptr.generation {
                        return Err(Error::corrupt("child newer than its parent", child.offset));
                    }
                    let next = children.get(i + 1).map(|(k, _)| k.as_slice()).or(hi);
                    total += self.node(kind, child, level - 1, Some(k), next)?;
                }
                Ok(total)
            }
        }
    }

    fn tick(&mut self) {
        self.done.files += 1;
        self.done.bytes = self.report.data_bytes;
        (self.progress)(&self.done);
    }

    /// The pack references name exactly the packed entries; a reference's
    /// hint names the member's own range; every content-index entry names a
    /// range that a member carrying its hint uses.
    fn check_pack_refs(&self) -> Result<()> {
        let differ = || Error::corrupt("pack references differ from the packed entries", 0);
        if self.pack_refs.len() != self.packed.len() {
            return Err(differ());
        }
        let mut hinted = ahash::AHashSet::new();
        for ((k, v), (pk, target)) in self.pack_refs.iter().zip(&self.packed) {
            if k != pk {
                return Err(differ());
            }
            match index::decode_member_value(v) {
                Some(None) => {}
                Some(Some((h, tail))) if tail == target.tail => {
                    hinted.insert((h, *target));
                }
                _ => {
                    return Err(Error::corrupt(
                        "pack reference's value does not match its member",
                        0,
                    ));
                }
            }
        }
        if let Some((_, r)) = self.index.iter().find(|e| !hinted.contains(*e)) {
            return Err(Error::corrupt(
                "content-index entry names no live member with its hint",
                r.frame,
            ));
        }
        Ok(())
    }

    /// Notes the member reference a packed or framed entry must have.
    fn expect_ref(&mut self, c: &Content, len: u64, tag: u8, key: &[u8]) {
        if let Some((at, target)) = index::target_of(c, len) {
            self.packed.insert(pack_key(at, tag, key), target);
        }
    }

    fn toc_entry(&mut self, key: &[u8], value: &[u8], leaf: &Ptr) -> Result<()> {
        self.tick();
        let at = leaf.offset;
        if from_key(key).is_none() {
            return Err(Error::corrupt("invalid path in the table of contents", at));
        }
        let r = Record::decode(value, at)?;
        self.expect_ref(&r.content, r.len, b'T', key);
        if r.kind == EntryKind::File {
            self.content(&r.content, r.len, leaf)?;
        }
        Ok(())
    }

    fn var_entry(&mut self, key: &[u8], value: &[u8], leaf: &Ptr) -> Result<()> {
        self.tick();
        let at = leaf.offset;
        if std::str::from_utf8(key).is_err() {
            return Err(Error::corrupt("variable name is not UTF-8", at));
        }
        let r = VarRecord::decode(value, at)?;
        self.expect_ref(&r.content, r.len, b'V', key);
        self.content(&r.content, r.len, leaf)
    }

    fn frame(&mut self, ptr: &Ptr, expect_len: Option<u64>) -> Result<()> {
        if let Some(l) = expect_len
            && ptr.raw_len as u64 != l
        {
            return Err(Error::corrupt(
                "frame length differs from the file's layout",
                ptr.offset,
            ));
        }
        if !self.frames_seen.insert(ptr.cache_key()) {
            return Ok(());
        }
        self.region(ptr);
        self.report.data_bytes += ptr.raw_len as u64;
        match self.lb.store.start_decode(ptr)? {
            Some(d) => self.decoding.push_back(d),
            None => {
                let raw = self.lb.store.read_plain(Kind::Frame, ptr)?;
                self.keep(&raw);
            }
        }
        self.finish_frames(FRAMES_AHEAD)
    }

    /// Waits for the oldest frames being decoded until at most `left` are,
    /// in the order they were met (so the first failure is reported).
    fn finish_frames(&mut self, left: usize) -> Result<()> {
        while self.decoding.len() > left {
            if let Some(d) = self.decoding.pop_front() {
                let raw = d.finish()?;
                self.keep(&raw);
            }
        }
        Ok(())
    }

    /// Checks a content locator found in the leaf at `leaf`: its regions
    /// are no newer than the leaf.
    fn content(&mut self, c: &Content, len: u64, leaf: &Ptr) -> Result<()> {
        let at = leaf.offset;
        let nframes = c.check_layout(len)?;
        let newer = |p: &Ptr| p.generation > leaf.generation;
        if let Content::Packed { frame: p, .. } | Content::Frames { root: p, .. } = c
            && newer(p)
        {
            return Err(Error::corrupt("content newer than its leaf", p.offset));
        }
        match c {
            Content::Empty | Content::Inline(_) => Ok(()),
            Content::Pending { .. } => Err(Error::corrupt("pending content in a commit", at)),
            Content::Packed { frame, .. } => {
                self.packed_frames.insert((frame.offset, frame.len as u64));
                self.frame(frame, None)
            }
            Content::Frames {
                frame_size,
                depth,
                root,
            } => {
                let layout = (len, *frame_size, *depth);
                match self.roots_seen.insert(root.cache_key(), layout) {
                    Some(first) if first == layout => return Ok(()),
                    Some(_) => {
                        return Err(Error::corrupt(
                            "entries sharing a content disagree on its layout",
                            root.offset,
                        ));
                    }
                    None => {}
                }
                let fs = *frame_size as u64;
                let n = nframes.unwrap_or(0);
                let mut ptrs = Vec::new();
                self.index(root, *depth, n, &mut ptrs)?;
                if ptrs.len() as u64 != n {
                    return Err(Error::corrupt(
                        "frame count differs from the file length",
                        root.offset,
                    ));
                }
                for (i, p) in ptrs.iter().enumerate() {
                    let expect = if i as u64 + 1 == n {
                        len - i as u64 * fs
                    } else {
                        fs
                    };
                    self.frame(p, Some(expect))?;
                }
                Ok(())
            }
        }
    }

    fn index(&mut self, ptr: &Ptr, depth: u8, limit: u64, out: &mut Vec<Ptr>) -> Result<()> {
        if depth == 0 {
            out.push(*ptr);
            return Ok(());
        }
        if out.len() as u64 >= limit {
            return Err(Error::corrupt(
                "frame index longer than the file",
                ptr.offset,
            ));
        }
        self.region(ptr);
        let raw = self.lb.store.read_plain(Kind::FrameIndex, ptr)?;
        self.keep(&raw);
        let mut r = Reader::new(&raw, "frame index", ptr.offset);
        let count = r.u32()? as u64;
        if count == 0 || count > INDEX_FANOUT || r.remaining() as u64 != count * PTR_LEN as u64 {
            return Err(r.err("entry count out of range"));
        }
        for _ in 0..count {
            let child = Ptr::decode(&mut r)?;
            if child.generation > ptr.generation {
                return Err(Error::corrupt("child newer than its parent", child.offset));
            }
            self.index(&child, depth - 1, limit, out)?;
        }
        Ok(())
    }
}

/// What [`Lockbox::inspect`] found: for tests that prove redaction.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Inspection {
    /// Decrypted plaintext of every region reachable from the commit,
    /// plus the plaintext of both commit slots.
    pub plaintexts: Vec<Vec<u8>>,
    /// Sequence numbers the two commit slots decrypt to (`None`: nothing).
    pub slot_sequences: [Option<u64>; 2],
    /// Byte ranges of the data area that no reachable region covers and
    /// that are not all zeros (nothing there may decrypt to anything).
    pub unreachable_nonzero: Vec<(u64, u64)>,
    /// File length and committed end.
    pub file_len: u64,
    pub data_end: u64,
}

impl Lockbox {
    /// Test-only: decrypts everything reachable with the master key and
    /// checks that every other byte of the data area is zero.
    #[doc(hidden)]
    pub fn inspect(&self) -> Result<Inspection> {
        let (_, mut reachable, mut plaintexts) = self.walk(true, &mut |_| {})?;
        let mut slot_sequences = [None, None];
        for (i, seq) in slot_sequences.iter_mut().enumerate() {
            if let Some((rec, body)) = self.read_commit_slot(i)? {
                *seq = Some(rec.seq);
                plaintexts.push(body);
            }
        }
        let file_len = self.store.backend().len()?;
        reachable.sort_unstable();
        let mut gaps = Vec::new();
        let mut at = DATA_START;
        for (s, e) in reachable.into_iter().chain([(file_len, file_len)]) {
            if s > at {
                gaps.push((at, s.min(file_len)));
            }
            at = at.max(e);
        }
        let mut unreachable_nonzero = Vec::new();
        for (s, e) in gaps {
            let mut off = s;
            while off < e {
                let n = (e - off).min(1 << 20);
                let mut buf = vec![0u8; n as usize];
                self.store.backend().read_at(off, &mut buf)?;
                if let Some(i) = buf.iter().position(|&b| b != 0) {
                    let j = buf.iter().rposition(|&b| b != 0).unwrap_or(i);
                    unreachable_nonzero.push((off + i as u64, off + j as u64 + 1));
                }
                off += n;
            }
        }
        Ok(Inspection {
            plaintexts,
            slot_sequences,
            unreachable_nonzero,
            file_len,
            data_end: self.committed.data_end,
        })
    }
}
