//! The table of contents: files, directories and symlinks by path, as a
//! B-tree of [`Record`]s with this handle's staged changes over it.

use std::io::{Read, Write};

use ahash::AHashMap as HashMap;

use crate::btree;
use crate::crypto::seal::Kind;
use crate::data::dedup::Noted;
use crate::data::frames::{FrameWriter, fill};
use crate::data::index::INDEX_MIN;
use crate::data::pack::Member;
use crate::data::read;
use crate::error::{Error, Result};
pub use crate::format::entry::EntryKind;
use crate::format::entry::{Content, INLINE_MAX, MAX_TARGET, Record};
use crate::lockbox::{Lockbox, now};
use crate::path::{ancestors, key_into_path, normalize, subtree_range, to_key};
use crate::staged::Merged;

/// Frames compressed and written together by one batch of a streaming write.
const BATCH_FRAMES: usize = 16;
/// Bytes of frame buffers a handle keeps between streamed contents (four
/// of `BulkImport`'s 1 MiB frames): a file of up to that many frames reads
/// into buffers already mapped.
pub(crate) const KEEP_STREAM_BYTES: usize = 4 << 20;

/// An entry of the lockbox, as `stat` and `list` return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the lockbox (`"docs/a.txt"`).
    pub path: String,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Length in bytes (files), target length (symlinks), 0 (directories).
    pub len: u64,
    /// Unix permission bits.
    pub mode: u32,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Symlink target.
    pub target: Option<String>,
}

pub(crate) fn entry(path: String, r: &Record) -> Entry {
    let target = match (&r.kind, &r.content) {
        (EntryKind::Symlink, Content::Inline(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    Entry {
        path,
        kind: r.kind,
        len: r.len,
        mode: r.mode,
        mtime: r.mtime,
        target,
    }
}

fn decode_record(v: &[u8], at: u64) -> Result<Record> {
    Record::decode(v, at)
}

pub(crate) fn key_path(key: &[u8]) -> Result<String> {
    key_path_owned(key.to_vec())
}

/// [`key_path`] of an owned key, turned into its path in place.
pub(crate) fn key_path_owned(key: Vec<u8>) -> Result<String> {
    key_into_path(key).ok_or_else(|| Error::corrupt("invalid path in the table of contents", 0))
}

impl Lockbox {
    // ---- lookups ----

    /// The live record at `key`: staged first, then committed.
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<Record>> {
        if let Some(staged) = self.toc.get(key) {
            return Ok(staged.clone());
        }
        match btree::get(&self.store, Kind::TocNode, self.toc_root(), key)? {
            Some(v) => Ok(Some(Record::decode(&v, 0)?)),
            None => Ok(None),
        }
    }

    /// Live entries strictly below the directory `key` ("" = all).
    pub(crate) fn subtree(&self, key: &[u8]) -> Result<Merged<'_, Record>> {
        let (start, end) = subtree_range(key);
        Merged::new(
            &self.store,
            Kind::TocNode,
            self.toc_root(),
            &self.toc,
            &start,
            end,
            decode_record,
        )
    }

    pub(crate) fn has_children(&self, key: &[u8]) -> Result<bool> {
        Ok(self.subtree(key)?.next().transpose()?.is_some())
    }

    /// Fails unless every ancestor of `key` is a directory or absent.
    pub(crate) fn check_parents(&self, key: &[u8]) -> Result<()> {
        for anc in ancestors(key) {
            if let Some(r) = self.lookup(anc)?
                && r.kind != EntryKind::Dir
            {
                return Err(Error::NotADirectory(key_path(anc)?));
            }
        }
        Ok(())
    }

    /// Checks that a file or symlink may be stored at `key`.
    pub(crate) fn check_file_slot(&self, key: &[u8], path: &str) -> Result<()> {
        self.check_parents(key)?;
        self.check_slot_itself(key, path)
    }

    /// [`check_file_slot`](Self::check_file_slot) for a key whose parent
    /// directory the caller checked or created (an import walking a tree):
    /// only `key` itself must not be a directory.
    pub(crate) fn check_slot_itself(&self, key: &[u8], path: &str) -> Result<()> {
        let is_dir = match self.lookup(key)? {
            Some(r) => r.kind == EntryKind::Dir,
            None => self.has_children(key)?,
        };
        if is_dir {
            return Err(Error::AlreadyExists(path.to_string()));
        }
        Ok(())
    }

    // ---- storing bytes ----

    /// Stores `data` for `member`: inline, packed, or as frames; a packed
    /// content shares the bytes of an identical one staged in this session
    /// or committed (`data::dedup`, `data::index`).
    pub(crate) fn store_bytes(&mut self, member: Member, data: &[u8]) -> Result<Content> {
        self.store_bytes_hashed(member, data, None)
    }

    /// [`store_bytes`](Self::store_bytes) with the content's dedup hash when
    /// the caller computed it already (on a worker thread).
    pub(crate) fn store_bytes_hashed(
        &mut self,
        member: Member,
        data: &[u8],
        hash: Option<[u8; 32]>,
    ) -> Result<Content> {
        self.store_content(member, data, hash, true)
    }

    /// Stores bytes that a commit moves out of a packed frame (repacks,
    /// relocation), the range `range` (offset, length) of that frame, for
    /// `member`. Never pointed back through the content index (at the frame
    /// they are moving out of). Members sharing a range keep sharing it:
    /// `moved` maps each range moved so far from this frame to its first
    /// member, whose new locator the others take. Contents of
    /// `INDEX_MIN` bytes or more are hashed as they move (their hint goes
    /// with them, and equal ones elsewhere in the session are shared);
    /// smaller ones are not (the hash cost a relocation commit 9 % of its
    /// time, for nothing the range map does not give).
    pub(crate) fn move_range(
        &mut self,
        member: Member,
        range: (u32, u64),
        data: &[u8],
        moved: &mut HashMap<(u32, u64), Member>,
    ) -> Result<Content> {
        if let Some(first) = moved.get(&range) {
            match self.staged_content(first).map(|(c, _)| c.clone()) {
                Some(Content::Pending { pack_id, offset }) => {
                    let len = data.len() as u32;
                    self.pack.add_member(pack_id, member, offset, len);
                    return Ok(Content::Pending { pack_id, offset });
                }
                Some(c @ Content::Packed { .. }) => return Ok(c),
                _ => {}
            }
        }
        let small = data.len() > INLINE_MAX && data.len() < INDEX_MIN.min(self.pack_below());
        let c = if small {
            let (pack_id, offset) = self.pack_bytes(member.clone(), data)?;
            Content::Pending { pack_id, offset }
        } else {
            self.store_content(member.clone(), data, None, false)?
        };
        moved.insert(range, member);
        Ok(c)
    }

    /// Adds `data` to the open pack (closing it first if full): the new
    /// member's pack and offset.
    fn pack_bytes(&mut self, member: Member, data: &[u8]) -> Result<(u64, u32)> {
        if !self.pack.fits(data.len()) {
            self.close_pack()?;
        }
        Ok(self.pack.add(member, data))
    }

    fn store_content(
        &mut self,
        member: Member,
        data: &[u8],
        hash: Option<[u8; 32]>,
        use_index: bool,
    ) -> Result<Content> {
        let frame = self.data_frame_size() as usize;
        if data.is_empty() {
            Ok(Content::Empty)
        } else if data.len() <= INLINE_MAX {
            Ok(Content::Inline(data.to_vec()))
        } else if data.len() < self.pack_below() {
            let hash = hash.unwrap_or_else(|| self.dedup.hash(data));
            let len = data.len() as u64;
            if use_index && let Some(c) = self.unchanged_copy(&member, len, &hash, Some(data))? {
                return Ok(c);
            }
            let mut shared = self.shared_copy(&hash, &member, data)?;
            if shared.is_none() && use_index {
                shared = self.indexed_copy(&hash, len)?;
            }
            if let Some(c) = shared {
                self.dedup.hits.shared += 1;
                return Ok(c);
            }
            let (pack_id, offset) = self.pack_bytes(member, data)?;
            let noted = Noted {
                pack_id,
                offset,
                len: data.len() as u32,
            };
            self.dedup.note(hash, noted);
            Ok(Content::Pending { pack_id, offset })
        } else {
            let hash = hash.unwrap_or_else(|| self.dedup.hash(data));
            let len = data.len() as u64;
            if let Some(c) = self.framed_copy(&member, &hash, len, use_index)? {
                return Ok(c);
            }
            let mut w = FrameWriter::new(frame as u32, self.next_gen());
            for batch in data.chunks(frame * BATCH_FRAMES) {
                let chunks: Vec<&[u8]> = batch.chunks(frame).collect();
                w.write(&self.store, &chunks)?;
            }
            let c = w.finish(&self.store)?;
            self.dedup.note_framed(hash, c.clone(), len);
            Ok(c)
        }
    }

    /// For `member`'s framed content of `len` bytes with keyed hash `hash`:
    /// an identical one (`use_index`: the one `member` has committed,
    /// `data::unchanged`), of this session, or (`use_index`) of an
    /// earlier commit.
    fn framed_copy(
        &mut self,
        member: &Member,
        hash: &[u8; 32],
        len: u64,
        use_index: bool,
    ) -> Result<Option<Content>> {
        if !use_index {
            return Ok(self.dedup.framed(hash, len).cloned());
        }
        if let Some(c) = self.unchanged_copy(member, len, hash, None)? {
            return Ok(Some(c));
        }
        let shared = match self.dedup.framed(hash, len) {
            Some(c) => Some(c.clone()),
            None => self.indexed_copy(hash, len)?,
        };
        if shared.is_some() {
            self.dedup.hits.shared += 1;
        }
        Ok(shared)
    }

    /// The locator of an identical content staged earlier in this session
    /// (see `data::dedup`), with `member` noted as one more user of its
    /// pack while that is in memory; `None` if there is none.
    fn shared_copy(
        &mut self,
        hash: &[u8; 32],
        member: &Member,
        data: &[u8],
    ) -> Result<Option<Content>> {
        let Some(&Noted {
            pack_id,
            offset,
            len,
        }) = self.dedup.first(hash)
        else {
            return Ok(None);
        };
        if len as usize != data.len() {
            return Ok(None);
        }
        if let Some(buf) = self.pack.buf(pack_id) {
            let same = buf.get(offset as usize..).and_then(|b| b.get(..data.len())) == Some(data);
            if !same {
                return Ok(None);
            }
            self.pack.add_member(pack_id, member.clone(), offset, len);
            return Ok(Some(Content::Pending { pack_id, offset }));
        }
        // Written unchanged: the keyed hash is trusted (`data::dedup`).
        Ok(self
            .dedup
            .frame_of(pack_id)
            .map(|&frame| Content::Packed { frame, offset }))
    }

    /// Streams `r` into storage with memory bounded by one batch of frames
    /// (and `KEEP_STREAM_BYTES` of frame buffers kept for the next content).
    pub(crate) fn store_reader(
        &mut self,
        member: Member,
        r: &mut impl Read,
    ) -> Result<(Content, u64)> {
        let frame = self.data_frame_size() as usize;
        // One frame first: most files end within it, and only longer
        // ones stream through the frame pipeline.
        // A kept buffer still holds the bytes it last read: they are
        // overwritten, never used (only what this read fills is).
        let mut buf = self.stream_bufs.take_len(frame);
        let first = fill(r, &mut buf)?;
        if first < frame {
            let stored = self.store_bytes(member, &buf[..first]);
            self.stream_bufs.give(buf);
            return Ok((stored?, first as u64));
        }
        let mut w = FrameWriter::new(frame as u32, self.next_gen());
        let mut hasher = self.dedup.hasher().stream();
        let mut spare = Vec::new();
        let streamed = w.write_stream(&self.store, buf, r, &mut hasher, &mut spare);
        for b in spare {
            self.stream_bufs.give(b);
        }
        let total = streamed?;
        let written = w.finish(&self.store)?;
        // A copy found only now: the frames just written stay unreferenced
        // and the commit frees (and zeroes) them.
        let hash = *hasher.finalize().as_bytes();
        if let Some(c) = self.framed_copy(&member, &hash, total, true)? {
            return Ok((c, total));
        }
        self.dedup.note_framed(hash, written.clone(), total);
        Ok((written, total))
    }

    pub(crate) fn stage(&mut self, key: Vec<u8>, record: Record) {
        self.toc.insert(key, Some(record));
    }

    // ---- changes ----

    /// Creates or replaces the file at `path` with `data`.
    pub fn put(&mut self, path: &str, data: &[u8]) -> Result<()> {
        self.put_with(path, |lb, member| {
            Ok((lb.store_bytes(member, data)?, data.len() as u64))
        })
        .map(|_| ())
    }

    /// Creates or replaces the file at `path` with everything `reader`
    /// yields, streaming: memory stays bounded whatever the size. Returns
    /// the number of bytes stored.
    pub fn put_reader(&mut self, path: &str, mut reader: impl Read) -> Result<u64> {
        self.put_with(path, |lb, member| lb.store_reader(member, &mut reader))
    }

    /// Checks `path`, stores the content `store` writes, and stages a file
    /// record (mode 0644, mtime now). Returns the length.
    fn put_with(
        &mut self,
        path: &str,
        store: impl FnOnce(&mut Self, Member) -> Result<(Content, u64)>,
    ) -> Result<u64> {
        self.guarded(|lb| {
            let p = normalize(path, false)?;
            let key = to_key(p);
            lb.check_file_slot(&key, p)?;
            let (content, len) = store(lb, Member::Toc(key.clone()))?;
            let (mtime, mtime_nanos) = now();
            let kind = EntryKind::File;
            lb.stage(
                key,
                Record {
                    kind,
                    mode: 0o644,
                    mtime,
                    mtime_nanos,
                    len,
                    content,
                },
            );
            Ok(len)
        })
    }

    /// Creates or replaces a symlink at `path` pointing to `target`
    /// (stored as given; checked only when extracting).
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.guarded(|lb| {
            let p = normalize(path, false)?;
            if target.is_empty() || target.len() > MAX_TARGET || target.contains('\0') {
                return Err(Error::InvalidPath {
                    path: target.to_string(),
                    reason: "symlink target empty, over 4096 bytes, or with NUL",
                });
            }
            let key = to_key(p);
            lb.check_file_slot(&key, p)?;
            let (mtime, nanos) = now();
            let len = target.len() as u64;
            lb.stage(
                key,
                Record {
                    kind: EntryKind::Symlink,
                    mode: 0o777,
                    mtime,
                    mtime_nanos: nanos,
                    len,
                    content: Content::Inline(target.as_bytes().to_vec()),
                },
            );
            Ok(())
        })
    }

    /// Creates an explicit (possibly empty) directory. A directory that
    /// already exists explicitly is left as it is.
    pub fn mkdir(&mut self, path: &str) -> Result<()> {
        self.guarded(|lb| {
            let p = normalize(path, false)?;
            let key = to_key(p);
            lb.check_parents(&key)?;
            match lb.lookup(&key)? {
                Some(r) if r.kind == EntryKind::Dir => return Ok(()),
                Some(_) => return Err(Error::AlreadyExists(p.to_string())),
                None => {}
            }
            let (mtime, nanos) = now();
            lb.stage(
                key,
                Record {
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    mtime,
                    mtime_nanos: nanos,
                    len: 0,
                    content: Content::Empty,
                },
            );
            Ok(())
        })
    }

    /// Collects the live entry at `key` (if any) and every entry below it.
    fn collect_tree(&self, key: &[u8]) -> Result<Vec<(Vec<u8>, Record)>> {
        let mut out = Vec::new();
        if !key.is_empty()
            && let Some(r) = self.lookup(key)?
        {
            out.push((key.to_vec(), r));
        }
        for item in self.subtree(key)? {
            out.push(item?);
        }
        Ok(out)
    }

    /// Deletes a file, symlink, or directory with everything below it
    /// (`""`: everything). Returns the number of entries removed.
    pub fn delete(&mut self, path: &str) -> Result<u64> {
        self.guarded(|lb| {
            let p = normalize(path, true)?;
            let key = to_key(p);
            let doomed = lb.collect_tree(&key)?;
            if doomed.is_empty() {
                return Err(Error::NotFound(p.to_string()));
            }
            let n = doomed.len() as u64;
            for (k, _) in doomed {
                lb.toc.insert(k, None);
            }
            Ok(n)
        })
    }

    /// Renames a file, symlink or directory subtree. `to` must not exist.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        self.guarded(|lb| {
            let f = normalize(from, false)?;
            let t = normalize(to, false)?;
            let (fk, tk) = (to_key(f), to_key(t));
            let moving = lb.collect_tree(&fk)?;
            if moving.is_empty() {
                return Err(Error::NotFound(f.to_string()));
            }
            if fk == tk {
                return Ok(());
            }
            if tk.len() > fk.len() && tk.starts_with(&fk) && tk[fk.len()] == 0 {
                return Err(Error::InvalidPath {
                    path: t.to_string(),
                    reason: "cannot move a directory inside itself",
                });
            }
            if lb.lookup(&tk)?.is_some() || lb.has_children(&tk)? {
                return Err(Error::AlreadyExists(t.to_string()));
            }
            lb.check_parents(&tk)?;
            for (k, _) in &moving {
                lb.toc.insert(k.clone(), None);
            }
            for (k, r) in moving {
                let mut nk = tk.clone();
                nk.extend_from_slice(&k[fk.len()..]);
                if let Content::Pending { pack_id, offset } = r.content {
                    lb.pack
                        .add_member(pack_id, Member::Toc(nk.clone()), offset, r.len as u32);
                }
                lb.toc.insert(nk, Some(r));
            }
            Ok(())
        })
    }

    // ---- reads ----

    /// The entry at `path`, or `None`. A path that is only the parent of
    /// stored entries (an implicit directory) stats as a directory.
    pub fn stat(&self, path: &str) -> Result<Option<Entry>> {
        let p = normalize(path, false)?;
        let key = to_key(p);
        if let Some(r) = self.lookup(&key)? {
            return Ok(Some(entry(p.to_string(), &r)));
        }
        if self.has_children(&key)? {
            return Ok(Some(Entry {
                path: p.to_string(),
                kind: EntryKind::Dir,
                len: 0,
                mode: 0o755,
                mtime: 0,
                target: None,
            }));
        }
        Ok(None)
    }

    /// Every stored entry strictly below the directory `prefix` (`""`: all),
    /// recursively, in path order (component-wise: `a`, `a/b`, `a-x`),
    /// streaming with memory bounded by the tree height.
    pub fn list(&self, prefix: &str) -> Result<impl Iterator<Item = Result<Entry>> + '_> {
        let p = normalize(prefix, true)?;
        let it = self.subtree(&to_key(p))?;
        Ok(it.map(|item| {
            let (k, r) = item?;
            Ok(entry(key_path_owned(k)?, &r))
        }))
    }

    fn file_record(&self, path: &str) -> Result<Record> {
        let p = normalize(path, false)?;
        match self.lookup(&to_key(p))? {
            Some(r) if r.kind == EntryKind::File => Ok(r),
            Some(_) => Err(Error::NotAFile(p.to_string())),
            None if self.has_children(&to_key(p))? => Err(Error::NotAFile(p.to_string())),
            None => Err(Error::NotFound(p.to_string())),
        }
    }

    /// Checks a record's length against its content layout and the size
    /// of the lockbox before anything of that length is allocated: frames
    /// must be able to hold it (the index's shape, and its last frame's
    /// recorded length), and zstd expands a frame at most about a
    /// thousandfold, so no file may claim more than 4096 bytes per byte of
    /// lockbox.
    pub(crate) fn check_plausible_len(&self, r: &Record) -> Result<()> {
        let len = r.len;
        let bad = |what: &str| {
            Err(Error::corrupt(
                format!("entry length does not fit its content: {what}"),
                0,
            ))
        };
        // The tail is known without a system call; the file's length is
        // only asked for when the tail alone would refuse the record.
        if len > self.store.tail().saturating_mul(4096)
            && len > self.store.backend().len()?.saturating_mul(4096)
        {
            return bad("longer than this lockbox could hold");
        }
        if let (
            Some(n),
            Content::Frames {
                frame_size,
                depth,
                root,
            },
        ) = (r.content.check_layout(len)?, &r.content)
        {
            let last = crate::data::frames::locate(&self.store, *depth, root, n - 1)?;
            if last.raw_len as u64 != len - (n - 1) * *frame_size as u64 {
                return bad("last frame");
            }
        }
        Ok(())
    }

    pub(crate) fn read_record(&self, r: &Record, offset: u64, buf: &mut [u8]) -> Result<usize> {
        read::read_at(
            &self.store,
            &r.content,
            r.len,
            offset,
            buf,
            self.pending(r)?,
        )
    }

    /// Hands the whole content of `r` to `f` frame by frame, uncopied
    /// (see `data::read::visit`).
    pub(crate) fn visit_record(
        &self,
        r: &Record,
        f: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        read::visit(&self.store, &r.content, r.len, self.pending(r)?, f)
    }

    /// The in-memory pack a staged record's bytes are in, if any.
    fn pending(&self, r: &Record) -> Result<&[u8]> {
        match r.content {
            Content::Pending { pack_id, .. } => self
                .pack
                .buf(pack_id)
                .ok_or_else(|| Error::corrupt("staged content lost its pack", 0)),
            _ => Ok(&[]),
        }
    }

    /// The whole content of the file at `path`, in one allocation of
    /// exactly its length.
    pub fn get(&self, path: &str) -> Result<Vec<u8>> {
        /// Up to this size the buffer is zero-filled and read in place;
        /// above it, memory is only touched as authenticated data arrives,
        /// so a hostile length cannot make lockbox fill memory with zeros.
        const DIRECT: u64 = 256 * 1024 * 1024;
        let r = self.file_record(path)?;
        self.check_plausible_len(&r)?;
        let too_big = || Error::LimitExceeded {
            what: format!("{path}: file larger than available memory; use copy_to or read_at"),
            limit: r.len,
        };
        let len = usize::try_from(r.len).map_err(|_| too_big())?;
        let mut out = Vec::new();
        out.try_reserve_exact(len).map_err(|_| too_big())?;
        if r.len <= DIRECT {
            out.resize(len, 0);
            let n = self.read_record(&r, 0, &mut out)?;
            if n != len {
                return Err(Error::corrupt("file shorter than its length", 0));
            }
        } else {
            self.copy_record(&r, &mut out)?;
        }
        Ok(out)
    }

    /// Reads up to `buf.len()` bytes of the file at `path` from `offset`
    /// into `buf`, decoding only the frames the range overlaps. Returns the
    /// bytes read: fewer at the end of the file, 0 at or past it.
    pub fn read_at(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let r = self.file_record(path)?;
        self.read_record(&r, offset, buf)
    }

    /// Streams the file at `path` into `out`; returns the bytes written.
    pub fn copy_to(&self, path: &str, out: &mut impl Write) -> Result<u64> {
        let r = self.file_record(path)?;
        self.copy_record(&r, out)
    }

    fn copy_record(&self, r: &Record, out: &mut impl Write) -> Result<u64> {
        self.check_plausible_len(r)?;
        let mut done = 0u64;
        self.visit_record(r, |_, bytes| {
            out.write_all(bytes)?;
            done += bytes.len() as u64;
            Ok(())
        })?;
        if done != r.len {
            return Err(Error::corrupt("file shorter than its length", 0));
        }
        Ok(done)
    }
}
