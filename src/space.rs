//! Free space and redaction at commit time.
//!
//! A commit works out which regions its changes free: superseded tree
//! nodes, the frames of deleted or replaced files, frames written by this
//! handle that ended up unused, packed frames left with no live member,
//! and the previous redaction list. Those regions go into this commit's
//! redaction list. Once the commit is durable the other commit slot is
//! overwritten with it and every listed region is zeroed; the next commit
//! moves them into the free-space index, from which new regions are
//! allocated. So the index only ever holds zeroed space that no durable
//! slot reaches.
//!
//! A packed frame that keeps live members next to dead ones cannot simply
//! be freed: its live members must move first (*repacking*), so the dead
//! bytes can go with the old frame. The commit only names such frames in
//! its redaction list (`repack`); the relocation commits that `commit()`
//! runs right after it (`relocate.rs`) move their live members, a batch at
//! a time, into space the previous step freed.

use std::collections::{BTreeMap, BTreeSet};

use ahash::AHashMap as HashMap;

use crate::btree;
use crate::btree::apply::Change;
use crate::btree::cursor::Cursor;
use crate::crypto::seal::Kind;
use crate::data::index::{NewContent, OldContent, RefsByFrame};
use crate::data::pack::Member;
use crate::error::{Error, Result};
use crate::format::DATA_START;
use crate::format::bytes::{Put, Reader};
use crate::format::commit::TreeRoot;
use crate::format::entry::{Content, Record, VarRecord};
use crate::format::ptr::Ptr;
use crate::lockbox::Lockbox;
use crate::storage::alloc::{Allocator, decode_extent, overlaps};
use crate::storage::store::Store;

const TAG_TOC: u8 = b'T';
const TAG_VAR: u8 = b'V';

/// Key of a pack reference: frame offset (big-endian), member tag, member key.
pub fn pack_key(frame: &Ptr, tag: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.extend_from_slice(&frame.offset.to_be_bytes());
    k.push(tag);
    k.extend_from_slice(key);
    k
}

/// The frames and index pages of framed content (not packed frames).
pub fn frame_regions(store: &Store, c: &Content, len: u64, out: &mut Vec<Ptr>) -> Result<()> {
    let (Content::Frames { depth, root, .. }, Some(n)) = (c, c.check_layout(len)?) else {
        return Ok(());
    };
    walk_index(store, root, *depth, n, out)
}

fn walk_index(store: &Store, ptr: &Ptr, depth: u8, limit: u64, out: &mut Vec<Ptr>) -> Result<()> {
    out.push(*ptr);
    if depth == 0 {
        return Ok(());
    }
    if out.len() as u64 > limit.saturating_mul(2) + 8 {
        return Err(Error::corrupt(
            "frame index larger than its file",
            ptr.offset,
        ));
    }
    let page = store.read_index(ptr)?;
    for child in page.iter() {
        walk_index(store, child, depth - 1, limit, out)?;
    }
    Ok(())
}

/// A redaction list: extents a commit freed, all overwritten with zeros
/// once the commit is durable. `zero` held names or content; `plain` held
/// only offsets and lengths (old free-space index pages, the previous
/// list). Both are zeroed, so every byte outside reachable regions is zero.
///
/// `repack` names packed frames (offset, sealed length) that are still
/// reachable, since some members live, but also hold the bytes of members
/// that died: they are not free yet, and not zeroed. The relocation
/// commits that follow (`relocate.rs`) move their live members into new
/// packs and free them a batch at a time, so a commit that touches many
/// packs does not need a second copy of all of them at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedactList {
    pub zero: Vec<(u64, u64)>,
    pub plain: Vec<(u64, u64)>,
    pub repack: Vec<(u64, u64)>,
}

impl RedactList {
    /// Nothing to zero and nothing to relocate: no list is written.
    pub fn is_empty(&self) -> bool {
        self.zero.is_empty() && self.plain.is_empty() && self.repack.is_empty()
    }

    /// The extents to zero (not the frames to repack, which are live).
    pub fn all(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.zero.iter().chain(&self.plain).copied()
    }

    pub fn encode(&self) -> Vec<u8> {
        let n = self.zero.len() + self.plain.len() + self.repack.len();
        let mut out = Vec::with_capacity(12 + n * 16);
        for list in [&self.zero, &self.plain, &self.repack] {
            out.put_u32(list.len() as u32);
            for &(o, l) in list {
                out.put_u64(o);
                out.put_u64(l);
            }
        }
        out
    }

    pub fn decode(raw: &[u8], at: u64) -> Result<RedactList> {
        let mut r = Reader::new(raw, "redaction list", at);
        let mut lists = [Vec::new(), Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = r.u32()? as usize;
            if n > r.remaining() / 16 {
                return Err(r.err("extent count out of range"));
            }
            for _ in 0..n {
                list.push((r.u64()?, r.u64()?));
            }
        }
        r.finish()?;
        let [zero, plain, repack] = lists;
        Ok(RedactList {
            zero,
            plain,
            repack,
        })
    }
}

/// Sorts and merges touching extents.
pub fn merge_extents(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.retain(|&(_, l)| l > 0);
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (o, l) in v {
        match out.last_mut() {
            Some((po, pl)) if *po + *pl >= o => *pl = (*pl).max(o + l - *po),
            _ => out.push((o, l)),
        }
    }
    out
}

fn same_frame(a: &Ptr, b: &Ptr) -> bool {
    a.offset == b.offset && a.tag == b.tag
}

/// What the staged changes do to space, worked out at commit.
pub struct SpacePlan {
    /// Regions this commit frees that held names or content.
    pub freed: Vec<(u64, u64)>,
    /// Regions this commit frees that held only offsets.
    pub plain: Vec<(u64, u64)>,
    /// Changes to the pack-reference tree.
    pub pack_changes: Vec<Change>,
    /// Packed frames still to repack after this commit, by offset.
    pub repack: Vec<(u64, u64)>,
}

/// Staged entries that point into packed frames, by frame: (TOC keys,
/// variable keys). Built once per commit, so finding a frame's staged
/// members costs a lookup, not a scan of everything staged.
pub(crate) type StagedUsers = HashMap<FrameKey, (Vec<Vec<u8>>, Vec<Vec<u8>>)>;

/// A frame by offset and tag (what two pointers to one frame share).
pub(crate) type FrameKey = (u64, [u8; 16]);

/// A pack reference: member tag, member key, value.
pub(crate) type PackRef = (u8, Vec<u8>, Vec<u8>);

/// Touched packed frames by offset: the frame and the ranges (offset,
/// length) that committed members left.
type Touched = BTreeMap<u64, (Ptr, Vec<(u32, u64)>)>;

impl Lockbox {
    /// The committed members of the packed frame at `at`, as the
    /// pack-reference tree names them: (tag, key), tag `T` or `V`.
    pub(crate) fn pack_members(&self, at: u64) -> Result<Vec<(u8, Vec<u8>)>> {
        Ok(self
            .pack_refs(at)?
            .into_iter()
            .map(|(tag, key, _)| (tag, key))
            .collect())
    }

    /// [`pack_members`](Self::pack_members) with each reference's value
    /// (`data::index`).
    pub(crate) fn pack_refs(&self, at: u64) -> Result<Vec<PackRef>> {
        let start = at.to_be_bytes().to_vec();
        let end = (at + 1).to_be_bytes().to_vec();
        let mut out = Vec::new();
        for item in Cursor::new(
            &self.store,
            Kind::PackNode,
            &self.committed.packs,
            &start,
            Some(end),
        )? {
            let (k, v) = item?;
            match k.get(8..).and_then(<[u8]>::split_first) {
                Some((&tag @ (TAG_TOC | TAG_VAR), key)) => out.push((tag, key.to_vec(), v)),
                _ => return Err(Error::corrupt("bad pack reference", at)),
            }
        }
        Ok(out)
    }

    pub(crate) fn staged_users(&self) -> StagedUsers {
        let mut users = StagedUsers::new();
        for (tag, k, c) in self.staged_entries() {
            if let Some(Content::Packed { frame, .. }) = c {
                let u = users.entry((frame.offset, frame.tag)).or_default();
                if tag == TAG_TOC { &mut u.0 } else { &mut u.1 }.push(k.clone());
            }
        }
        users
    }

    /// Loads the allocator from the free-space index and the last
    /// redaction list (zeroed by then: by the commit, or at open).
    pub(crate) fn ensure_allocator(&mut self) -> Result<()> {
        if self.store.with_allocator(|_| ()).is_some() {
            return Ok(());
        }
        let base: BTreeMap<u64, u64> = self.free_extents()?.into_iter().collect();
        let list = self.redact_list()?;
        let extra: Vec<(u64, u64)> = list.all().collect();
        self.store.set_allocator(Some(Allocator::new(base, &extra)));
        self.repack_pending = list.repack;
        Ok(())
    }

    /// The extents listed by the last commit's redaction list, each
    /// checked to lie inside the data area (a hostile list must not make
    /// lockbox zero or reuse the header).
    pub(crate) fn redact_list(&self) -> Result<RedactList> {
        let Some(p) = &self.committed.redact else {
            return Ok(RedactList::default());
        };
        let list = RedactList::decode(&self.store.read_plain(Kind::RedactList, p)?, p.offset)?;
        for e in list.all() {
            self.check_extent(e, p.offset)?;
        }
        // Frames to repack: inside the data area, strictly ascending (the
        // writer sorts them), so none is named twice. Whether each is a
        // live packed frame is checked when it is relocated and by verify.
        let mut prev_end = DATA_START;
        for &(off, len) in &list.repack {
            self.check_extent((off, len), p.offset)?;
            if off < prev_end {
                return Err(Error::corrupt("frames to repack out of order", p.offset));
            }
            prev_end = off + len;
        }
        Ok(list)
    }

    /// The persisted free-space index, checked before anything is
    /// allocated from it or zeroed because of it. A hostile index must not
    /// make a commit write over live regions, or one byte be handed out
    /// twice: each extent lies inside the data area, in offset order, and
    /// overlaps no other extent, no extent of the last redaction list (also
    /// released into the allocator) and no region the commit record points
    /// at. Those are cheap (the record names a handful of regions). A free
    /// extent over a deeper live region (a frame, an inner node) is only
    /// found by `verify`, which walks everything: doing that here would make
    /// a handle's first change cost a walk of the whole archive. Such an
    /// overlap can make a commit overwrite the region, which then reads as
    /// `Corrupt`, never as other data.
    pub(crate) fn free_extents(&self) -> Result<Vec<(u64, u64)>> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for item in Cursor::new(&self.store, Kind::FreeNode, &self.committed.free, &[], None)? {
            let (k, v) = item?;
            let e =
                decode_extent(&k, &v).ok_or_else(|| Error::corrupt("bad free-space entry", 0))?;
            self.check_extent(e, e.0)?;
            if out.last().is_some_and(|&(o, l)| e.0 < o + l) {
                return Err(Error::corrupt("free extents overlap", e.0));
            }
            out.push(e);
        }
        let c = &self.committed;
        let roots = [&c.toc, &c.vars, &c.packs, &c.free]
            .into_iter()
            .filter_map(|t| t.root)
            .chain(c.redact);
        for p in roots {
            if overlaps(&out, p.offset, p.len as u64) {
                return Err(Error::corrupt(
                    "free extent over a region the commit record points at",
                    p.offset,
                ));
            }
        }
        for (o, l) in self.redact_list()?.all() {
            if overlaps(&out, o, l) {
                return Err(Error::corrupt(
                    "free extent over an extent of the redaction list",
                    o,
                ));
            }
        }
        Ok(out)
    }

    fn check_extent(&self, (off, len): (u64, u64), at: u64) -> Result<()> {
        let inside = off >= DATA_START
            && off
                .checked_add(len)
                .is_some_and(|end| end <= self.committed.data_end);
        if inside && len > 0 {
            Ok(())
        } else {
            Err(Error::corrupt("free extent outside the data area", at))
        }
    }

    pub(crate) fn old_toc(&self, key: &[u8]) -> Result<Option<Record>> {
        match btree::get(&self.store, Kind::TocNode, &self.committed.toc, key)? {
            Some(v) => Ok(Some(Record::decode(&v, 0)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn old_var(&self, key: &[u8]) -> Result<Option<VarRecord>> {
        match btree::get(&self.store, Kind::VarNode, &self.committed.vars, key)? {
            Some(v) => Ok(Some(VarRecord::decode(&v, 0)?)),
            None => Ok(None),
        }
    }

    /// The committed content and length of the entry `key` of tree `tag`
    /// (`TAG_TOC` or `TAG_VAR`); `None` if there is none (an empty tree
    /// costs no lookup).
    pub(crate) fn old_content(&self, tag: u8, key: &[u8]) -> Result<Option<(Content, u64)>> {
        Ok(if tag == TAG_TOC {
            match self.committed.toc.root {
                Some(_) => self.old_toc(key)?.map(|r| (r.content, r.len)),
                None => None,
            }
        } else {
            match self.committed.vars.root {
                Some(_) => self.old_var(key)?.map(|r| (r.content, r.len)),
                None => None,
            }
        })
    }

    /// Packed frames whose committed members leave them (deleted, replaced,
    /// or moved to another range), by offset: the frame and the ranges
    /// (offset, length) those members leave.
    fn touched_packs(&self) -> Result<Touched> {
        let mut touched = Touched::new();
        if self.committed.toc.root.is_none() && self.committed.vars.root.is_none() {
            // Nothing committed: no member can leave a frame.
            return Ok(touched);
        }
        let mut check = |old: Option<(&Content, u64)>, new: Option<&Content>| {
            if let Some((Content::Packed { frame, offset }, len)) = old {
                let kept = matches!(new, Some(Content::Packed { frame: f, offset: o })
                    if same_frame(f, frame) && o == offset);
                if !kept {
                    let t = touched.entry(frame.offset).or_insert((*frame, Vec::new()));
                    t.1.push((*offset, len));
                }
            }
        };
        for (tag, k, new) in self.staged_entries() {
            let old = self.old_content(tag, k)?;
            check(old.as_ref().map(|(c, len)| (c, *len)), new);
        }
        Ok(touched)
    }

    /// Sorts the touched packed frames: a frame with no live member left
    /// is freed; one whose left ranges are all still used by staged members
    /// (renamed, or shared again) is kept; one that keeps live members next
    /// to ranges that may have died is left for the relocation commits
    /// (`relocate.rs`). Returns `(freed, to_repack)`.
    fn sort_touched(
        &self,
        touched: Touched,
        refs: &mut RefsByFrame,
    ) -> Result<(Vec<Ptr>, Vec<Ptr>)> {
        if touched.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        // Ranges of each touched frame that staged entries use.
        let mut staged_uses: BTreeMap<u64, BTreeSet<(u32, u64)>> = BTreeMap::new();
        for (c, len) in self.staged_contents() {
            if let Content::Packed { frame, offset } = c
                && touched
                    .get(&frame.offset)
                    .is_some_and(|t| same_frame(&t.0, frame))
            {
                staged_uses
                    .entry(frame.offset)
                    .or_default()
                    .insert((*offset, len));
            }
        }
        let (mut freed, mut to_repack) = (Vec::new(), Vec::new());
        for (frame, left) in touched.into_values() {
            let uses = staged_uses.remove(&frame.offset).unwrap_or_default();
            if !uses.is_empty() && left.iter().all(|r| uses.contains(r)) {
                continue; // every range left is still used: nothing died
            }
            let unchanged = self
                .refs_of(refs, frame.offset)?
                .iter()
                .filter(|(tag, key, _)| match *tag {
                    TAG_TOC => !self.toc.contains_key(key),
                    _ => !self.vars.contains_key(key),
                })
                .count();
            if unchanged + uses.len() == 0 {
                freed.push(frame);
            } else {
                to_repack.push(frame);
            }
        }
        Ok((freed, to_repack))
    }

    /// A pack this handle wrote earlier whose members partly died since is
    /// repacked, so its dead bytes are not kept alive by the live ones.
    /// One pass over the staged entries sums each session pack's live
    /// ranges (no key is copied); only packs with dead bytes, rare, have
    /// their members gathered and moved.
    fn repack_session_packs(&mut self) -> Result<()> {
        if self.session_packs.is_empty() {
            return Ok(());
        }
        let packs = std::mem::take(&mut self.session_packs);
        let mut ranges: HashMap<FrameKey, Vec<(u32, u64)>> = packs
            .iter()
            .map(|f| ((f.offset, f.tag), Vec::new()))
            .collect();
        for (c, len) in self.staged_contents() {
            if let Content::Packed { frame, offset } = c
                && let Some(v) = ranges.get_mut(&(frame.offset, frame.tag))
            {
                v.push((*offset, len));
            }
        }
        // Live bytes, each range once: deduplicated members share one.
        let dying: Vec<Ptr> = packs
            .into_iter()
            .filter(|f| {
                let v = ranges.get_mut(&(f.offset, f.tag)).map(std::mem::take);
                let mut v = v.unwrap_or_default();
                v.sort_unstable();
                v.dedup();
                let live: u64 = v.iter().map(|(_, l)| l).sum();
                live != 0 && live < f.raw_len as u64
            })
            .collect();
        if dying.is_empty() {
            return Ok(());
        }
        let mut users = self.staged_users();
        for frame in dying {
            let (toc, vars) = users.remove(&(frame.offset, frame.tag)).unwrap_or_default();
            let bytes = self.store.with_frame(&frame, |b| Ok(b.to_vec()))?;
            let cut = |c: &Content, len: u64| match c {
                Content::Packed { offset, .. } => bytes
                    .get(*offset as usize..(*offset as u64 + len) as usize)
                    .map(|d| ((*offset, len), d.to_vec())),
                _ => None,
            };
            let mut moved = HashMap::new();
            for k in toc {
                let Some(Some(mut r)) = self.toc.get(&k).cloned() else {
                    continue;
                };
                let (range, data) = cut(&r.content, r.len)
                    .ok_or_else(|| Error::corrupt("packed file beyond its frame", frame.offset))?;
                r.content = self.move_range(Member::Toc(k.clone()), range, &data, &mut moved)?;
                self.toc.insert(k, Some(r));
            }
            for k in vars {
                let Some(Some(mut r)) = self.vars.get(&k).cloned() else {
                    continue;
                };
                let (range, data) = cut(&r.content, r.len)
                    .ok_or_else(|| Error::corrupt("packed value beyond its frame", frame.offset))?;
                r.content = self.move_range(Member::Var(k.clone()), range, &data, &mut moved)?;
                self.vars.insert(k, Some(r));
            }
        }
        Ok(())
    }

    /// Every staged entry: tree tag (`TAG_TOC`, `TAG_VAR`), key, and new
    /// content (`None`: deleted); files first, then variables.
    fn staged_entries(&self) -> impl Iterator<Item = (u8, &Vec<u8>, Option<&Content>)> {
        let toc = self
            .toc
            .iter()
            .map(|(k, r)| (TAG_TOC, k, r.as_ref().map(|r| &r.content)));
        let vars = self
            .vars
            .iter()
            .map(|(k, r)| (TAG_VAR, k, r.as_ref().map(|r| &r.content)));
        toc.chain(vars)
    }

    /// The contents and lengths of every staged entry that is not a
    /// deletion: files first, then variables.
    pub(crate) fn staged_contents(&self) -> impl Iterator<Item = (&Content, u64)> {
        let toc = self.toc.values().flatten().map(|r| (&r.content, r.len));
        toc.chain(self.vars.values().flatten().map(|r| (&r.content, r.len)))
    }

    /// Repacks, writes the open pack, and works out freed regions and the
    /// pack-reference changes. Runs at the start of a commit.
    pub(crate) fn plan_space(&mut self) -> Result<SpacePlan> {
        let touched = self.touched_packs()?;
        // Committed member references of the frames this commit reads them
        // for (sorting touched frames, then the content index).
        let mut refs = RefsByFrame::new();
        let (mut freed_ptrs, mut to_repack) = self.sort_touched(touched, &mut refs)?;
        if self.repack_inline(&to_repack) {
            // Small enough for one relocation batch: done here, as one.
            self.repack_now(&to_repack)?;
            freed_ptrs.append(&mut to_repack);
        }
        // Frames still to repack: those pending from the last commit that
        // this one does not free (a relocation commit frees its batch), and
        // the ones this commit leaves with dead members.
        let gone: BTreeSet<u64> = freed_ptrs.iter().map(|p| p.offset).collect();
        let mut repack: BTreeMap<u64, u64> = BTreeMap::new();
        let newly = to_repack.iter().map(|p| (p.offset, p.len as u64));
        for (off, len) in self.repack_pending.iter().copied().chain(newly) {
            if !gone.contains(&off) {
                repack.insert(off, len);
            }
        }
        self.repack_session_packs()?;
        self.flush_pack()?;
        let written = self.store.take_written();
        let generation = self.next_gen();

        // What the new state references, among contents that change.
        let news: Vec<NewContent> = self
            .toc
            .iter()
            .filter_map(|(k, r)| r.as_ref().map(|r| (TAG_TOC, &k[..], &r.content, r.len)))
            .chain(
                self.vars
                    .iter()
                    .filter_map(|(k, r)| r.as_ref().map(|r| (TAG_VAR, &k[..], &r.content, r.len))),
            )
            .collect();
        let mut keep: BTreeSet<(u64, [u8; 16])> = BTreeSet::new();
        let mut session_refs: BTreeSet<u64> = BTreeSet::new();
        let mut regions = Vec::new();
        for (_, _, c, len) in &news {
            match c {
                Content::Frames { root, .. } => {
                    keep.insert(root.cache_key());
                    if root.generation == generation {
                        regions.clear();
                        frame_regions(&self.store, c, *len, &mut regions)?;
                        session_refs.extend(regions.iter().map(|p| p.offset));
                    }
                }
                Content::Packed { frame, .. } if frame.generation == generation => {
                    session_refs.insert(frame.offset);
                }
                _ => {}
            }
        }

        // Committed contents the changes drop, and pack references removed.
        let mut freed: Vec<(u64, u64)> = Vec::new();
        let mut pack_changes: Vec<Change> = Vec::new();
        let mut olds: Vec<OldContent> = Vec::with_capacity(self.toc.len() + self.vars.len());
        for (tag, k, _) in self.staged_entries() {
            olds.push((tag, k, self.old_content(tag, k)?));
        }
        // A framed content is freed with its last user: no staged entry
        // keeps its root and no committed reference to it stays.
        let mut dropped_roots = BTreeSet::new();
        for (tag, k, old) in &olds {
            match old {
                Some((c @ Content::Frames { root, .. }, len)) => {
                    pack_changes.push((pack_key(root, *tag, k), None));
                    if keep.contains(&root.cache_key()) || !dropped_roots.insert(root.cache_key()) {
                        continue;
                    }
                    let others = self
                        .refs_of(&mut refs, root.offset)?
                        .iter()
                        .any(|(t, key, _)| !self.is_staged(*t, key));
                    if !others {
                        regions.clear();
                        frame_regions(&self.store, c, *len, &mut regions)?;
                        freed.extend(regions.iter().map(|p| (p.offset, p.len as u64)));
                    }
                }
                Some((Content::Packed { frame, .. }, _)) => {
                    pack_changes.push((pack_key(frame, *tag, k), None));
                }
                _ => {}
            }
        }
        // Pack references added (after removals: the same key re-added
        // wins), with their hints, and the content index's changes.
        let mut index = self.plan_index(&news, &olds, generation, &mut refs)?;
        for (i, (tag, k, c, _)) in news.iter().enumerate() {
            if let Content::Packed { frame, .. } | Content::Frames { root: frame, .. } = c {
                let value = index.values.remove(&i).unwrap_or_default();
                pack_changes.push((pack_key(frame, *tag, k), Some(value)));
            }
        }
        pack_changes.append(&mut index.changes);
        // Sorted by key; of changes to one key, the last pushed wins.
        pack_changes.sort_by(|a, b| a.0.cmp(&b.0));
        pack_changes.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });

        freed.extend(freed_ptrs.drain(..).map(|p| (p.offset, p.len as u64)));
        // Regions this handle wrote that nothing references.
        freed.extend(
            written
                .into_iter()
                .filter(|(o, _)| !session_refs.contains(o)),
        );
        let plain = self
            .committed
            .redact
            .iter()
            .map(|p| (p.offset, p.len as u64))
            .collect();
        Ok(SpacePlan {
            freed,
            plain,
            pack_changes,
            repack: repack.into_iter().collect(),
        })
    }

    /// Applies the free-space index for this commit: trims a free tail,
    /// then writes the index from the tail only. Returns the new root and
    /// the old index pages it frees.
    pub(crate) fn apply_free_index(
        &mut self,
        generation: u64,
        cap: usize,
    ) -> Result<(TreeRoot, Vec<Ptr>, u64, u64)> {
        let tail = self.store.tail();
        let new_tail = self
            .store
            .with_allocator(|a| {
                let mut t = tail;
                while let Some(start) = a.trim_tail(t) {
                    t = start;
                }
                t
            })
            .unwrap_or(tail);
        self.store.set_tail(new_tail);
        let mut changes = self
            .store
            .with_allocator(|a| a.changes())
            .unwrap_or_default();
        self.store.set_tail_only(true);
        let mut a = btree::apply::Applier::new(&self.store, Kind::FreeNode, generation, cap);
        let r = a.apply(&self.committed.free, &mut changes);
        self.store.set_tail_only(false);
        let root = r?;
        Ok((root, a.freed, a.pages_written, a.bytes_written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_list_round_trip_and_strict_decoding() {
        let list = RedactList {
            zero: vec![(20480, 100), (30000, 5)],
            plain: vec![(40000, 8)],
            repack: vec![(50000, 4000), (60000, 3000)],
        };
        let raw = list.encode();
        assert_eq!(raw.len(), 12 + 16 * 5);
        assert_eq!(RedactList::decode(&raw, 0).unwrap(), list);
        // truncated, trailing bytes, a count past the input
        assert!(RedactList::decode(&raw[..raw.len() - 1], 0).is_err());
        let mut longer = raw.clone();
        longer.push(0);
        assert!(RedactList::decode(&longer, 0).is_err());
        let mut lying = raw.clone();
        let at = 8 + 16 * 3;
        lying[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(RedactList::decode(&lying, 0).is_err());
        // the layout before the repack part: four bytes short
        assert!(RedactList::decode(&raw[..8 + 16 * 3], 0).is_err());
    }
}
