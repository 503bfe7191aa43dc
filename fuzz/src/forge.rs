//! An independent reader and writer of the lockbox format, for tests and
//! fuzz targets that play "someone who knows the key".
//!
//! It is written from `docs/format.md` and `src/format/*.rs` without using
//! any lockbox internals: it unwraps the master key from a raw-key slot,
//! derives the subkeys, opens and seals regions with any codec byte and any
//! claimed `raw_len`, decodes commit records, nodes, records and frame
//! indexes, and walks every region reachable from a commit. Tests use it to
//! collect nonces, to find region boundaries for swaps and replays, and to
//! seal hostile plaintexts (e.g. a crafted zstd stream) that the library's
//! own `testing::seal` hook would compress itself.
//!
//! Shared by `fuzz/` (as a module of the `lockbox-fuzz` library) and by the
//! root crate's integration tests (through `#[path]`), so it depends only on
//! crates both have: `blake3`, `chacha20poly1305`, `zstd` and `std`.
#![allow(dead_code)]

use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305, XNonce};

pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 4096;
pub const SLOT_TABLES: [usize; 2] = [4096, 8192];
pub const TABLE_LEN: usize = 4096;
pub const SLOT_LEN: usize = 128;
pub const COMMIT_SLOTS: [u64; 2] = [12288, 16384];
pub const RECORD_LEN: usize = 512;
pub const DATA_START: u64 = 20480;
pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
pub const OVERHEAD: usize = NONCE_LEN + 1 + TAG_LEN;
pub const PTR_LEN: usize = 40;

/// Region kinds (format.md §4).
pub mod kind {
    pub const TOC_NODE: u8 = 1;
    pub const VAR_NODE: u8 = 2;
    pub const FRAME: u8 = 3;
    pub const FRAME_INDEX: u8 = 4;
    pub const COMMIT: u8 = 5;
    pub const KEY_SLOT: u8 = 6;
    pub const PACK_NODE: u8 = 7;
    pub const FREE_NODE: u8 = 8;
    pub const REDACT_LIST: u8 = 9;
}

pub type R<T> = Result<T, String>;

// ---------------------------------------------------------------------------
// Little-endian reading
// ---------------------------------------------------------------------------

pub struct Rd<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Rd<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Rd { buf, pos: 0 }
    }
    pub fn rest(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn bytes(&mut self, n: usize) -> R<&'a [u8]> {
        if n > self.rest() {
            return Err(format!("truncated at {} (+{n})", self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> R<u8> {
        Ok(self.bytes(1)?[0])
    }
    pub fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.bytes(2)?.try_into().unwrap()))
    }
    pub fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().unwrap()))
    }
    pub fn ptr(&mut self) -> R<Ptr> {
        Ok(Ptr::decode(self.bytes(PTR_LEN)?))
    }
}

// ---------------------------------------------------------------------------
// Pointers, roots, commit records
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ptr {
    pub offset: u64,
    pub len: u32,
    pub generation: u64,
    pub raw_len: u32,
    pub tag: [u8; 16],
}

impl Ptr {
    pub fn decode(b: &[u8]) -> Ptr {
        Ptr {
            offset: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            len: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            generation: u64::from_le_bytes(b[12..20].try_into().unwrap()),
            raw_len: u32::from_le_bytes(b[20..24].try_into().unwrap()),
            tag: b[24..40].try_into().unwrap(),
        }
    }
    pub fn encode(&self) -> [u8; 40] {
        let mut o = [0u8; 40];
        o[0..8].copy_from_slice(&self.offset.to_le_bytes());
        o[8..12].copy_from_slice(&self.len.to_le_bytes());
        o[12..20].copy_from_slice(&self.generation.to_le_bytes());
        o[20..24].copy_from_slice(&self.raw_len.to_le_bytes());
        o[24..40].copy_from_slice(&self.tag);
        o
    }
    pub fn end(&self) -> u64 {
        self.offset + self.len as u64
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Root {
    pub root: Option<Ptr>,
    pub height: u32,
    pub count: u64,
}

impl Root {
    /// A tree of one leaf at `ptr` holding `count` entries.
    pub fn leaf(ptr: Ptr, count: u64) -> Root {
        Root {
            root: Some(ptr),
            height: 1,
            count,
        }
    }
}

/// A member reference (key, empty value) of the pack-reference tree: the
/// entry `tag` (`b'T'` file, `b'V'` variable) `key` stored in the packed
/// frame, or framed content with its root, at offset `at`.
pub fn member_ref(at: u64, tag: u8, key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut k = at.to_be_bytes().to_vec();
    k.push(tag);
    k.extend_from_slice(key);
    (k, Vec::new())
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitRecord {
    pub seq: u64,
    pub data_end: u64,
    pub toc: Root,
    pub vars: Root,
    pub time: i64,
    pub packs: Root,
    pub free: Root,
    pub redact: Option<Ptr>,
}

fn get_root(r: &mut Rd<'_>) -> R<Root> {
    let p = r.ptr()?;
    let height = r.u32()?;
    let count = r.u64()?;
    Ok(Root {
        root: (p.offset != 0).then_some(p),
        height,
        count,
    })
}

fn put_root(o: &mut Vec<u8>, t: &Root) {
    o.extend_from_slice(&t.root.unwrap_or_default().encode());
    o.extend_from_slice(&t.height.to_le_bytes());
    o.extend_from_slice(&t.count.to_le_bytes());
}

impl CommitRecord {
    pub fn decode(b: &[u8]) -> R<CommitRecord> {
        if b.len() != RECORD_LEN {
            return Err("commit record length".into());
        }
        let mut r = Rd::new(b);
        Ok(CommitRecord {
            seq: r.u64()?,
            data_end: r.u64()?,
            toc: get_root(&mut r)?,
            vars: get_root(&mut r)?,
            time: r.u64()? as i64,
            packs: get_root(&mut r)?,
            free: get_root(&mut r)?,
            redact: Some(r.ptr()?).filter(|p| p.offset != 0),
        })
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(RECORD_LEN);
        o.extend_from_slice(&self.seq.to_le_bytes());
        o.extend_from_slice(&self.data_end.to_le_bytes());
        put_root(&mut o, &self.toc);
        put_root(&mut o, &self.vars);
        o.extend_from_slice(&self.time.to_le_bytes());
        put_root(&mut o, &self.packs);
        put_root(&mut o, &self.free);
        o.extend_from_slice(&self.redact.unwrap_or_default().encode());
        o.resize(RECORD_LEN, 0);
        o
    }
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

pub struct Keys {
    pub archive_id: [u8; 16],
    pub master: [u8; 32],
    pub meta: XChaCha20Poly1305,
    pub data: XChaCha20Poly1305,
    pub commit: XChaCha20Poly1305,
}

fn cipher(k: [u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&chacha20poly1305::Key::from(k))
}

pub fn archive_id(image: &[u8]) -> R<[u8; 16]> {
    image
        .get(16..32)
        .map(|b| b.try_into().unwrap())
        .ok_or_else(|| "image shorter than its header".to_string())
}

/// The valid slot table with the highest sequence, as raw bytes.
pub fn newest_table(image: &[u8]) -> Option<&[u8]> {
    let mut best: Option<(u64, &[u8])> = None;
    for &off in &SLOT_TABLES {
        let Some(t) = image.get(off..off + TABLE_LEN) else {
            continue;
        };
        if blake3::hash(&t[..TABLE_LEN - 32]).as_bytes() != &t[TABLE_LEN - 32..] {
            continue;
        }
        let seq = u64::from_le_bytes(t[..8].try_into().unwrap());
        if best.is_none_or(|(s, _)| seq > s) {
            best = Some((seq, t));
        }
    }
    best.map(|(_, t)| t)
}

/// Recomputes the BLAKE3 checksum of the slot table at `off` (4096 or 8192).
pub fn fix_table_checksum(image: &mut [u8], off: usize) {
    if image.len() < off + TABLE_LEN {
        return;
    }
    let sum = blake3::hash(&image[off..off + TABLE_LEN - 32]);
    image[off + TABLE_LEN - 32..off + TABLE_LEN].copy_from_slice(sum.as_bytes());
}

/// Recomputes the BLAKE3 checksum of the public header (bytes 0..96 at 96).
pub fn fix_header_checksum(image: &mut [u8]) {
    if image.len() < 128 {
        return;
    }
    let sum = blake3::hash(&image[..96]);
    image[96..128].copy_from_slice(sum.as_bytes());
}

/// Unwraps the master key with a raw key (format.md §3) and derives the
/// subkeys (§5).
pub fn unwrap_raw(image: &[u8], raw: &[u8; 32]) -> R<Keys> {
    let id = archive_id(image)?;
    let table = newest_table(image).ok_or("no valid slot table")?;
    let count = table[8] as usize;
    let mut aad = [0u8; 21];
    aad[..16].copy_from_slice(&id);
    aad[16..20].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    aad[20] = kind::KEY_SLOT;
    for i in 0..count.min(16) {
        let s = &table[16 + i * SLOT_LEN..16 + (i + 1) * SLOT_LEN];
        if s[0] != 2 {
            continue;
        }
        let mut h = blake3::Hasher::new_derive_key("lockbox v1 2026-11 raw key slot");
        h.update(raw);
        h.update(&s[13..29]);
        let wk: [u8; 32] = *h.finalize().as_bytes();
        let nonce = XNonce::try_from(&s[29..53]).unwrap();
        let mut m: [u8; 32] = s[53..85].try_into().unwrap();
        let tag = chacha20poly1305::Tag::try_from(&s[85..101]).unwrap();
        if cipher(wk)
            .decrypt_inout_detached(&nonce, &aad, (&mut m[..]).into(), &tag)
            .is_ok()
        {
            let d = |c: &str| blake3::derive_key(c, &m);
            return Ok(Keys {
                archive_id: id,
                master: m,
                meta: cipher(d("lockbox v1 2026-11 metadata pages")),
                data: cipher(d("lockbox v1 2026-11 data frames")),
                commit: cipher(d("lockbox v1 2026-11 commit slots")),
            });
        }
    }
    Err("no raw-key slot opens with this key".into())
}

impl Keys {
    pub fn cipher(&self, k: u8) -> &XChaCha20Poly1305 {
        match k {
            kind::FRAME => &self.data,
            kind::COMMIT => &self.commit,
            _ => &self.meta,
        }
    }
}

pub fn aad(id: &[u8; 16], k: u8, offset: u64, generation: u64, raw_len: u32) -> [u8; 41] {
    let mut a = [0u8; 41];
    a[..16].copy_from_slice(id);
    a[16..20].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    a[20] = k;
    a[21..29].copy_from_slice(&offset.to_le_bytes());
    a[29..37].copy_from_slice(&generation.to_le_bytes());
    a[37..41].copy_from_slice(&raw_len.to_le_bytes());
    a
}

// ---------------------------------------------------------------------------
// Sealing and opening regions
// ---------------------------------------------------------------------------

/// Seals `codec ‖ body` as a region of kind `k` at `offset`, claiming
/// `raw_len` in the associated data (nothing checks that it is true: that
/// is the point). The nonce is derived from the inputs, so the output is
/// reproducible; distinct inputs get distinct nonces.
pub fn seal(
    keys: &Keys,
    k: u8,
    offset: u64,
    generation: u64,
    raw_len: u32,
    codec: u8,
    body: &[u8],
) -> (Vec<u8>, Ptr) {
    let a = aad(&keys.archive_id, k, offset, generation, raw_len);
    let mut h = blake3::Hasher::new_derive_key("lockbox-fuzz forge nonce");
    h.update(&keys.master);
    h.update(&a);
    h.update(&[codec]);
    h.update(body);
    let n: [u8; 24] = h.finalize().as_bytes()[..24].try_into().unwrap();
    let mut buf = Vec::with_capacity(OVERHEAD + body.len());
    buf.extend_from_slice(&n);
    buf.push(codec);
    buf.extend_from_slice(body);
    let tag = keys
        .cipher(k)
        .encrypt_inout_detached(&XNonce::from(n), &a, (&mut buf[NONCE_LEN..]).into())
        .expect("encrypt");
    let tag: [u8; 16] = tag.as_slice().try_into().unwrap();
    buf.extend_from_slice(&tag);
    let ptr = Ptr {
        offset,
        len: buf.len() as u32,
        generation,
        raw_len,
        tag,
    };
    (buf, ptr)
}

/// Opens a region: authenticates, decrypts and decodes it to exactly
/// `raw_len` bytes. Returns (codec, plaintext).
pub fn open(keys: &Keys, image: &[u8], k: u8, p: &Ptr) -> R<(u8, Vec<u8>)> {
    let end = p.offset.checked_add(p.len as u64).ok_or("ptr overflow")?;
    if p.offset < DATA_START && k != kind::COMMIT || end > image.len() as u64 {
        return Err(format!("ptr {}+{} out of the image", p.offset, p.len));
    }
    if (p.len as usize) < OVERHEAD || p.raw_len > 32 << 20 {
        return Err("ptr lengths out of range".into());
    }
    let mut buf = image[p.offset as usize..end as usize].to_vec();
    if buf[buf.len() - TAG_LEN..] != p.tag {
        return Err(format!("tag at {} differs from its pointer", p.offset));
    }
    let a = aad(&keys.archive_id, k, p.offset, p.generation, p.raw_len);
    let (nonce, rest) = buf.split_at_mut(NONCE_LEN);
    let split = rest.len() - TAG_LEN;
    let (body, tag) = rest.split_at_mut(split);
    let nonce = XNonce::try_from(&*nonce).unwrap();
    let tag = chacha20poly1305::Tag::try_from(&*tag).unwrap();
    keys.cipher(k)
        .decrypt_inout_detached(&nonce, &a, (&mut *body).into(), &tag)
        .map_err(|_| format!("region at {} does not authenticate", p.offset))?;
    let codec = body[0];
    let plain = match codec {
        0 => body[1..].to_vec(),
        1 => zstd::bulk::decompress(&body[1..], p.raw_len as usize)
            .map_err(|e| format!("zstd: {e}"))?,
        c => return Err(format!("codec {c}")),
    };
    if plain.len() != p.raw_len as usize {
        return Err("plaintext length differs from raw_len".into());
    }
    Ok((codec, plain))
}

/// The records in both commit slots that authenticate: (slot index, record).
pub fn commit_records(keys: &Keys, image: &[u8]) -> Vec<(usize, CommitRecord)> {
    let mut out = Vec::new();
    for (i, &off) in COMMIT_SLOTS.iter().enumerate() {
        let Some(b) = image.get(off as usize..off as usize + OVERHEAD + RECORD_LEN) else {
            continue;
        };
        let tag: [u8; 16] = b[b.len() - TAG_LEN..].try_into().unwrap();
        let p = Ptr {
            offset: off,
            len: (OVERHEAD + RECORD_LEN) as u32,
            generation: 0,
            raw_len: RECORD_LEN as u32,
            tag,
        };
        if let Ok((0, plain)) = open(keys, image, kind::COMMIT, &p)
            && let Ok(r) = CommitRecord::decode(&plain)
        {
            out.push((i, r));
        }
    }
    out
}

/// The newest commit record that authenticates.
pub fn newest_commit(keys: &Keys, image: &[u8]) -> R<CommitRecord> {
    commit_records(keys, image)
        .into_iter()
        .max_by_key(|(_, r)| r.seq)
        .map(|(_, r)| r)
        .ok_or_else(|| "no commit slot authenticates".to_string())
}

/// Seals `rec` into commit slot `slot` (0 or 1) of `image`.
pub fn write_commit(keys: &Keys, image: &mut [u8], slot: usize, rec: &CommitRecord) {
    let off = COMMIT_SLOTS[slot];
    let (buf, _) = seal(
        keys,
        kind::COMMIT,
        off,
        0,
        RECORD_LEN as u32,
        0,
        &rec.encode(),
    );
    image[off as usize..off as usize + buf.len()].copy_from_slice(&buf);
}

/// Appends a sealed region at the end of `image`; returns its pointer.
pub fn append(
    keys: &Keys,
    image: &mut Vec<u8>,
    k: u8,
    generation: u64,
    raw_len: u32,
    codec: u8,
    body: &[u8],
) -> Ptr {
    let (buf, ptr) = seal(
        keys,
        k,
        image.len() as u64,
        generation,
        raw_len,
        codec,
        body,
    );
    image.extend_from_slice(&buf);
    ptr
}

/// Appends a stored region holding `plain`.
pub fn append_plain(keys: &Keys, image: &mut Vec<u8>, k: u8, generation: u64, plain: &[u8]) -> Ptr {
    append(keys, image, k, generation, plain.len() as u32, 0, plain)
}

/// Commits `rec` (with `data_end` set to the image length and the next
/// sequence number) into both slots: the image then opens at `rec`.
pub fn commit_both(keys: &Keys, image: &mut [u8], mut rec: CommitRecord) -> CommitRecord {
    rec.data_end = image.len() as u64;
    write_commit(keys, image, 0, &rec);
    write_commit(keys, image, 1, &rec);
    // Redaction mark = this sequence: a writable open does not redo redaction.
    let m = (COMMIT_SLOTS[0] + 2048) as usize;
    image[m..m + 8].copy_from_slice(&rec.seq.to_le_bytes());
    rec
}

// ---------------------------------------------------------------------------
// Nodes, records, frame indexes
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Leaf(Vec<(Vec<u8>, Vec<u8>)>),
    Internal(u8, Vec<(Vec<u8>, Ptr)>),
}

fn put_key(o: &mut Vec<u8>, prev: &[u8], k: &[u8]) {
    let s = prev
        .iter()
        .zip(k)
        .take_while(|(a, b)| a == b)
        .count()
        .min(u16::MAX as usize);
    o.extend_from_slice(&(s as u16).to_le_bytes());
    o.extend_from_slice(&((k.len() - s) as u16).to_le_bytes());
    o.extend_from_slice(&k[s..]);
}

/// Encodes a leaf exactly as given (no sorting, no checks): a hostile
/// leaf can have keys out of order or duplicated.
pub fn leaf(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut o = vec![0u8];
    o.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    let mut prev: &[u8] = &[];
    for (k, v) in entries {
        put_key(&mut o, prev, k);
        o.extend_from_slice(&(v.len() as u32).to_le_bytes());
        o.extend_from_slice(v);
        prev = k;
    }
    o
}

/// Encodes an internal node of `level` exactly as given.
pub fn internal(level: u8, children: &[(Vec<u8>, Ptr)]) -> Vec<u8> {
    let mut o = vec![level];
    o.extend_from_slice(&(children.len() as u32).to_le_bytes());
    let mut prev: &[u8] = &[];
    for (k, p) in children {
        put_key(&mut o, prev, k);
        o.extend_from_slice(&p.encode());
        prev = k;
    }
    o
}

pub fn decode_node(b: &[u8]) -> R<Node> {
    let mut r = Rd::new(b);
    let level = r.u8()?;
    let count = r.u32()? as usize;
    if count == 0 || count > r.rest() / 8 {
        return Err("node entry count".into());
    }
    let mut prev: Vec<u8> = Vec::new();
    let mut key = |r: &mut Rd<'_>| -> R<Vec<u8>> {
        let shared = r.u16()? as usize;
        let suffix = r.u16()? as usize;
        if shared > prev.len() {
            return Err("shared prefix".into());
        }
        let mut k = prev[..shared].to_vec();
        k.extend_from_slice(r.bytes(suffix)?);
        prev.clone_from(&k);
        Ok(k)
    };
    if level == 0 {
        let mut e = Vec::with_capacity(count);
        for _ in 0..count {
            let k = key(&mut r)?;
            let vl = r.u32()? as usize;
            e.push((k, r.bytes(vl)?.to_vec()));
        }
        Ok(Node::Leaf(e))
    } else {
        let mut c = Vec::with_capacity(count);
        for _ in 0..count {
            let k = key(&mut r)?;
            c.push((k, r.ptr()?));
        }
        Ok(Node::Internal(level, c))
    }
}

/// Where an entry's bytes are (format.md §7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Empty,
    Inline(Vec<u8>),
    Packed {
        frame: Ptr,
        offset: u32,
    },
    Frames {
        frame_size: u32,
        depth: u8,
        root: Ptr,
    },
}

impl Content {
    pub fn encode(&self, o: &mut Vec<u8>) {
        match self {
            Content::Empty => o.push(0),
            Content::Inline(b) => {
                o.push(1);
                o.extend_from_slice(b);
            }
            Content::Packed { frame, offset } => {
                o.push(2);
                o.extend_from_slice(&frame.encode());
                o.extend_from_slice(&offset.to_le_bytes());
            }
            Content::Frames {
                frame_size,
                depth,
                root,
            } => {
                o.push(3);
                o.extend_from_slice(&frame_size.to_le_bytes());
                o.push(*depth);
                o.extend_from_slice(&root.encode());
            }
        }
    }
    fn decode(r: &mut Rd<'_>, len: u64) -> R<Content> {
        Ok(match r.u8()? {
            0 => Content::Empty,
            1 => Content::Inline(
                r.bytes(usize::try_from(len).map_err(|e| e.to_string())?)?
                    .to_vec(),
            ),
            2 => Content::Packed {
                frame: r.ptr()?,
                offset: r.u32()?,
            },
            3 => Content::Frames {
                frame_size: r.u32()?,
                depth: r.u8()?,
                root: r.ptr()?,
            },
            c => return Err(format!("content kind {c}")),
        })
    }
}

/// A TOC value: `kind` 1 file, 2 dir, 3 symlink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub mode: u32,
    pub mtime: i64,
    pub nanos: u32,
    pub len: u64,
    pub content: Content,
}

impl Record {
    pub fn file(len: u64, content: Content) -> Record {
        Record {
            kind: 1,
            mode: 0o644,
            mtime: 1_700_000_000,
            nanos: 0,
            len,
            content,
        }
    }
    pub fn inline_file(bytes: &[u8]) -> Record {
        let c = if bytes.is_empty() {
            Content::Empty
        } else {
            Content::Inline(bytes.to_vec())
        };
        Record::file(bytes.len() as u64, c)
    }
    pub fn dir() -> Record {
        Record {
            kind: 2,
            mode: 0o755,
            mtime: 1_700_000_000,
            nanos: 0,
            len: 0,
            content: Content::Empty,
        }
    }
    pub fn symlink(target: &[u8]) -> Record {
        Record {
            kind: 3,
            mode: 0o777,
            mtime: 1_700_000_000,
            nanos: 0,
            len: target.len() as u64,
            content: Content::Inline(target.to_vec()),
        }
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut o = vec![self.kind];
        o.extend_from_slice(&self.mode.to_le_bytes());
        o.extend_from_slice(&self.mtime.to_le_bytes());
        o.extend_from_slice(&self.nanos.to_le_bytes());
        o.extend_from_slice(&self.len.to_le_bytes());
        self.content.encode(&mut o);
        o
    }
    pub fn decode(b: &[u8]) -> R<Record> {
        let mut r = Rd::new(b);
        let kind = r.u8()?;
        let mode = r.u32()?;
        let mtime = r.u64()? as i64;
        let nanos = r.u32()?;
        let len = r.u64()?;
        let content = Content::decode(&mut r, len)?;
        Ok(Record {
            kind,
            mode,
            mtime,
            nanos,
            len,
            content,
        })
    }
}

/// A variable value: `len u64 ‖ content`.
pub fn var_value(len: u64, c: &Content) -> Vec<u8> {
    let mut o = len.to_le_bytes().to_vec();
    c.encode(&mut o);
    o
}

pub fn decode_var(b: &[u8]) -> R<(u64, Content)> {
    let mut r = Rd::new(b);
    let len = r.u64()?;
    Ok((len, Content::decode(&mut r, len)?))
}

/// A frame-index page: `count u32 ‖ ptr[count]`.
pub fn index_page(ptrs: &[Ptr]) -> Vec<u8> {
    let mut o = (ptrs.len() as u32).to_le_bytes().to_vec();
    for p in ptrs {
        o.extend_from_slice(&p.encode());
    }
    o
}

pub fn decode_index(b: &[u8]) -> R<Vec<Ptr>> {
    let mut r = Rd::new(b);
    let n = r.u32()? as usize;
    if n == 0 || n > 2048 || r.rest() != n * PTR_LEN {
        return Err("index count".into());
    }
    (0..n).map(|_| r.ptr()).collect()
}

/// A path in key form: `/` becomes 0x00.
pub fn key_of(path: &str) -> Vec<u8> {
    path.bytes()
        .map(|b| if b == b'/' { 0 } else { b })
        .collect()
}

// ---------------------------------------------------------------------------
// Walking everything reachable
// ---------------------------------------------------------------------------

/// One reachable sealed region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Region {
    pub kind: u8,
    pub ptr: Ptr,
}

/// Every region reachable from `rec` (trees, frames, indexes, the
/// redaction list), each once, sorted by offset. Fails on anything that
/// does not open or parse.
pub fn walk(keys: &Keys, image: &[u8], rec: &CommitRecord) -> R<Vec<Region>> {
    let mut out = std::collections::BTreeSet::new();
    let trees = [
        (kind::TOC_NODE, rec.toc),
        (kind::VAR_NODE, rec.vars),
        (kind::PACK_NODE, rec.packs),
        (kind::FREE_NODE, rec.free),
    ];
    for (k, root) in trees {
        if let Some(p) = root.root {
            walk_node(keys, image, k, &p, &mut out, 0)?;
        }
    }
    if let Some(p) = rec.redact {
        open(keys, image, kind::REDACT_LIST, &p)?;
        out.insert(Region {
            kind: kind::REDACT_LIST,
            ptr: p,
        });
    }
    Ok(out.into_iter().collect())
}

fn walk_node(
    keys: &Keys,
    image: &[u8],
    k: u8,
    p: &Ptr,
    out: &mut std::collections::BTreeSet<Region>,
    depth: usize,
) -> R<()> {
    if depth > 40 {
        return Err("tree too deep".into());
    }
    let (_, plain) = open(keys, image, k, p)?;
    out.insert(Region { kind: k, ptr: *p });
    match decode_node(&plain)? {
        Node::Internal(_, children) => {
            for (_, c) in children {
                walk_node(keys, image, k, &c, out, depth + 1)?;
            }
        }
        Node::Leaf(entries) => {
            for (_, v) in entries {
                let content = match k {
                    kind::TOC_NODE => Some(Record::decode(&v)?.content),
                    kind::VAR_NODE => Some(decode_var(&v)?.1),
                    _ => None,
                };
                match content {
                    Some(Content::Packed { frame, .. }) => {
                        open(keys, image, kind::FRAME, &frame)?;
                        out.insert(Region {
                            kind: kind::FRAME,
                            ptr: frame,
                        });
                    }
                    Some(Content::Frames { depth, root, .. }) => {
                        walk_frames(keys, image, &root, depth, out)?;
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn walk_frames(
    keys: &Keys,
    image: &[u8],
    p: &Ptr,
    depth: u8,
    out: &mut std::collections::BTreeSet<Region>,
) -> R<()> {
    if depth == 0 {
        open(keys, image, kind::FRAME, p)?;
        out.insert(Region {
            kind: kind::FRAME,
            ptr: *p,
        });
        return Ok(());
    }
    if depth > 4 {
        return Err("index too deep".into());
    }
    let (_, plain) = open(keys, image, kind::FRAME_INDEX, p)?;
    out.insert(Region {
        kind: kind::FRAME_INDEX,
        ptr: *p,
    });
    for c in decode_index(&plain)? {
        walk_frames(keys, image, &c, depth - 1, out)?;
    }
    Ok(())
}

/// The 24-byte nonce at the start of a region.
pub fn nonce_of(image: &[u8], offset: u64) -> [u8; 24] {
    image[offset as usize..offset as usize + NONCE_LEN]
        .try_into()
        .unwrap()
}
