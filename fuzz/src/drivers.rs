//! The logic of the fuzz targets, shared with `tests/fuzz_corpus.rs` (which
//! includes this file and `forge.rs` with `#[path]`), so the saved corpus is
//! replayed by a stable `cargo test` through exactly the code the fuzzer ran.
//!
//! Every driver takes arbitrary bytes and must return normally: a panic
//! (an assertion below, or one inside lockbox) is a finding. The assertions
//! encode the contract of requirements §3/§4: typed errors only, never
//! wrong or inconsistent data, nothing written outside an extraction's
//! destination, and a lockbox built through the public API always verifies.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use lockbox::testing::{self, kind};
use lockbox::{EntryKind, Error, ExtractOptions, Key, Lockbox};

use super::forge;

/// The raw key every driver uses.
pub const RAW: [u8; 32] = [7u8; 32];

pub fn key() -> Key {
    Key::raw(RAW)
}

/// Files up to this length are read whole with `get`; longer ones (a
/// hostile length) only with bounded `read_at` calls.
pub const MAX_GET: u64 = 4 << 20;
/// Most entries listed.
pub const MAX_LIST: usize = 2048;

/// With `LOCKBOX_FUZZ_SKIP_KNOWN` set, the drivers stop asserting on the
/// library bugs already reported (absolute names honoured at extraction;
/// reads not checking keys against their parent's separators), so a fuzz
/// run can look for new ones. `cargo test` never sets it.
pub fn skip_known() -> bool {
    static F: OnceLock<bool> = OnceLock::new();
    *F.get_or_init(|| std::env::var_os("LOCKBOX_FUZZ_SKIP_KNOWN").is_some())
}

/// An assertion about a known bug: a panic normally, a recorded error
/// when [`skip_known`] is on.
macro_rules! known {
    ($seen:expr, $cond:expr, $($fmt:tt)*) => {
        if !$cond {
            if skip_known() {
                $seen.errors.push("known-bug");
            } else {
                panic!($($fmt)*);
            }
        }
    };
}

/// Reads fuzz input as a stream of small values; zeros when exhausted.
pub struct Src<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl<'a> Src<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Src { data, pos: 0 }
    }
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn u64(&mut self) -> u64 {
        (self.u32() as u64) | ((self.u32() as u64) << 32)
    }
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        &self.data[start..end]
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }
}

/// Deterministic bytes (mixed compressible and random by seed).
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    let compressible = seed.is_multiple_of(2);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if compressible {
            v.push(b"lockbox frame page "[(x % 19) as usize]);
        } else {
            v.push(x as u8);
        }
    }
    v
}

fn err_name(e: &Error) -> &'static str {
    match e {
        Error::Io(_) => "Io",
        Error::WrongKey => "WrongKey",
        Error::NotALockbox => "NotALockbox",
        Error::Corrupt { .. } => "Corrupt",
        Error::UnsupportedVersion { .. } => "UnsupportedVersion",
        Error::NotFound(_) => "NotFound",
        Error::InvalidPath { .. } => "InvalidPath",
        Error::AlreadyExists(_) => "AlreadyExists",
        Error::NotAFile(_) => "NotAFile",
        Error::NotADirectory(_) => "NotADirectory",
        Error::Locked => "Locked",
        Error::ReadOnly => "ReadOnly",
        Error::LimitExceeded { .. } => "LimitExceeded",
        Error::InvalidKdfParams(_) => "InvalidKdfParams",
        Error::RedactionPending { .. } => "RedactionPending",
        Error::Unsupported(_) => "Unsupported",
        Error::LastKey => "LastKey",
        Error::Poisoned => "Poisoned",
        _ => "Other",
    }
}

/// Component-wise path order (the order `list` promises): the key form,
/// with `/` as 0x00, compared bytewise.
fn path_key(p: &str) -> Vec<u8> {
    forge::key_of(p)
}

/// What reading a whole lockbox showed.
#[derive(Default, Debug)]
pub struct Seen {
    pub listed: usize,
    pub files_read: usize,
    pub errors: Vec<&'static str>,
    pub verify: Option<Result<u64, &'static str>>,
}

/// Reads everything a handle exposes (list, stat, get, read_at, copy_to,
/// vars, verify) and checks that the answers agree with each other.
/// Panics on an inconsistency: that is wrong data.
pub fn read_everything(lb: &Lockbox, what: &str) -> Seen {
    let mut seen = Seen::default();
    let mut entries = Vec::new();
    match lb.list("") {
        Ok(it) => {
            for item in it.take(MAX_LIST) {
                match item {
                    Ok(e) => entries.push(e),
                    Err(e) => {
                        seen.errors.push(err_name(&e));
                        break;
                    }
                }
            }
        }
        Err(e) => seen.errors.push(err_name(&e)),
    }
    seen.listed = entries.len();
    for w in entries.windows(2) {
        known!(
            seen,
            path_key(&w[0].path) < path_key(&w[1].path),
            "{what}: list() not in strictly ascending path order without an error: {:?} then {:?}",
            w[0].path,
            w[1].path
        );
    }
    for e in &entries {
        known!(
            seen,
            !e.path.is_empty()
                && !e.path.starts_with('/')
                && !e
                    .path
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == ".."),
            "{what}: list() returned a path that is not normalised: {:?}",
            e.path
        );
        match lb.stat(&e.path) {
            Ok(Some(s)) => known!(
                seen,
                s.kind == e.kind && s.len == e.len && s.target == e.target,
                "{what}: stat({:?}) = {s:?} disagrees with list() = {e:?}",
                e.path
            ),
            Ok(None) => known!(
                seen,
                false,
                "{what}: list() shows {:?} but stat() finds nothing",
                e.path
            ),
            Err(x) => seen.errors.push(err_name(&x)),
        }
        if e.kind != EntryKind::File {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if e.len <= MAX_GET {
            match lb.get(&e.path) {
                Ok(v) if v.len() as u64 != e.len => {
                    known!(
                        seen,
                        false,
                        "{what}: get({:?}) returned {} bytes, list() says {}",
                        e.path,
                        v.len(),
                        e.len
                    );
                }
                Ok(v) => {
                    seen.files_read += 1;
                    for off in [0, e.len / 2, e.len.saturating_sub(1)] {
                        match lb.read_at(&e.path, off, &mut buf) {
                            Ok(n) => {
                                let want = &v[off.min(e.len) as usize..];
                                assert_eq!(n, want.len().min(4096), "{what}: read_at count");
                                assert!(
                                    buf[..n] == want[..n],
                                    "{what}: read_at({:?}, {off}) differs from get",
                                    e.path
                                );
                            }
                            Err(x) => panic!(
                                "{what}: get({:?}) worked but read_at({off}) failed: {x}",
                                e.path
                            ),
                        }
                    }
                    let mut out = Vec::new();
                    match lb.copy_to(&e.path, &mut out) {
                        Ok(n) => {
                            assert_eq!(n, e.len, "{what}: copy_to count");
                            assert!(out == v, "{what}: copy_to({:?}) differs from get", e.path);
                        }
                        Err(x) => {
                            panic!("{what}: get({:?}) worked but copy_to failed: {x}", e.path)
                        }
                    }
                }
                Err(x) => seen.errors.push(err_name(&x)),
            }
        } else {
            for off in [0, e.len / 2, e.len - 1, e.len, u64::MAX - 1] {
                match lb.read_at(&e.path, off, &mut buf) {
                    Ok(n) => {
                        let expect = e.len.saturating_sub(off).min(4096) as usize;
                        assert_eq!(
                            n, expect,
                            "{what}: read_at({:?}, {off}) count on a {}-byte file",
                            e.path, e.len
                        );
                    }
                    Err(x) => seen.errors.push(err_name(&x)),
                }
            }
        }
    }
    match lb.vars() {
        Ok(it) => {
            for item in it.take(MAX_LIST) {
                match item {
                    Ok((name, value)) => match lb.var(&name) {
                        Ok(Some(v)) => {
                            assert!(v == value, "{what}: var({name:?}) differs from vars()")
                        }
                        Ok(None) => panic!("{what}: vars() shows {name:?} but var() finds nothing"),
                        Err(x) => seen.errors.push(err_name(&x)),
                    },
                    Err(x) => {
                        seen.errors.push(err_name(&x));
                        break;
                    }
                }
            }
        }
        Err(x) => seen.errors.push(err_name(&x)),
    }
    let v = lb.verify();
    if let Ok(report) = &v {
        // A lockbox that verifies must read without errors.
        assert!(
            seen.errors.is_empty(),
            "{what}: verify() passed ({report:?}) but reads failed with {:?}",
            seen.errors
        );
        if seen.listed < MAX_LIST {
            assert_eq!(
                report.entries as usize, seen.listed,
                "{what}: verify counts differ from list()"
            );
        }
    }
    seen.verify = Some(v.map(|r| r.entries).map_err(|e| err_name(&e)));
    seen
}

// ---------------------------------------------------------------------------
// open_untrusted: bytes as a lockbox image
// ---------------------------------------------------------------------------

/// The first byte holds flags: bit 0 recomputes the header checksum and
/// bit 1 both slot-table checksums after the input is taken as the image
/// (so mutations get past the unkeyed checksums into the parsing behind
/// them); bit 2 opens read-only. The rest is the image.
pub fn open_untrusted(data: &[u8]) {
    let Some((&flags, img)) = data.split_first() else {
        return;
    };
    let mut img = img.to_vec();
    if flags & 1 != 0 {
        forge::fix_header_checksum(&mut img);
    }
    if flags & 2 != 0 {
        forge::fix_table_checksum(&mut img, forge::SLOT_TABLES[0]);
        forge::fix_table_checksum(&mut img, forge::SLOT_TABLES[1]);
    }
    let b = Lockbox::builder()
        .read_only(flags & 4 != 0)
        .cache_bytes(1 << 20);
    if let Ok(lb) = b.open_bytes(img, key()) {
        read_everything(&lb, "open_untrusted");
    }
}

// ---------------------------------------------------------------------------
// page_plaintext: fuzz bytes sealed as metadata or data and committed
// ---------------------------------------------------------------------------

/// A small valid lockbox: inline, packed and framed files, a symlink,
/// a directory and two variables; small nodes so the TOC has internal nodes.
pub fn template() -> &'static Vec<u8> {
    static T: OnceLock<Vec<u8>> = OnceLock::new();
    T.get_or_init(|| {
        let mut lb = Lockbox::builder()
            .node_capacity(1024)
            .create_in_memory(key())
            .expect("create");
        lb.put("a.txt", b"alpha").unwrap();
        lb.put("dir/packed", &content(1, 1000)).unwrap();
        lb.put("dir/packed2", &content(2, 3000)).unwrap();
        lb.put("big", &content(3, 140_000)).unwrap();
        for i in 0..40 {
            lb.put(&format!("many/f{i:02}"), &content(i, 10)).unwrap();
        }
        lb.symlink("link", "a.txt").unwrap();
        lb.mkdir("empty").unwrap();
        lb.set_var("v", b"value").unwrap();
        lb.set_var("pv", &content(5, 2000)).unwrap();
        lb.commit().unwrap();
        lb.image().unwrap()
    })
}

fn template_keys() -> &'static forge::Keys {
    static K: OnceLock<forge::Keys> = OnceLock::new();
    K.get_or_init(|| forge::unwrap_raw(template(), &RAW).expect("forge unwrap"))
}

fn leaf_of(entries: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let e: Vec<(Vec<u8>, Vec<u8>)> = entries
        .iter()
        .map(|(k, v)| (k.to_vec(), v.clone()))
        .collect();
    forge::leaf(&e)
}

fn dec(p: &[u8; 40]) -> forge::Ptr {
    forge::Ptr::decode(p)
}

/// Input: `mode u8`, then parameters, then a plaintext `P`:
/// - 0: `P` is the TOC root node (`height u8`, `count u32` first);
/// - 1: `P` is the variables root node (same parameters);
/// - 2: `P` is a frame-index page under a file (`frame_size u32`,
///   `depth u8`, `len u64`);
/// - 3: `P` is a data frame under a framed file, a packed file and a
///   packed variable (`frame_size u32`, `len u64`, `offset u32`, `len2 u16`: 0xffXX means `u64::MAX - XX`);
/// - 4: `P` is a TOC leaf under an internal root with two separators
///   (`sep_len u8`, separator bytes) — both children point at it;
/// - 5: `P` is the body of a frame sealed with any codec byte and any
///   claimed `raw_len` (`codec u8`, `raw_len u32`, `frame_size u32`,
///   `flags u8`: bit 0 replaces `P` with a valid zstd frame of `P`), read
///   as a framed file, a packed file and a packed variable;
/// - 6: `P` is the free-space index's root leaf (`count u32` first).
///
/// Every mode then reads everything, and writes and commits on top of
/// the hostile archive (see `write_after`).
pub fn page_plaintext(data: &[u8]) {
    let mut s = Src::new(data);
    let mode = s.u8() % 7;
    let what = format!("page_plaintext mode {mode}");
    let image = if mode == 5 {
        forged_frame(&mut s)
    } else if mode == 6 {
        forged_free(&mut s)
    } else {
        let mut lb = Lockbox::builder()
            .open_bytes(template().clone(), key())
            .expect("open template");
        let r = hooked(&mut lb, mode, &mut s);
        if r.is_err() {
            return;
        }
        lb.image().expect("image")
    };
    if let Ok(mut lb) = Lockbox::builder()
        .cache_bytes(1 << 20)
        .open_bytes(image, key())
    {
        let seen = read_everything(&lb, &what);
        write_after(&mut lb, seen.verify == Some(Ok(seen.listed as u64)), &what);
    }
}

/// Writes on a hostile archive: a small and a packed file, a delete, a
/// variable, commit. Any typed error is fine; a commit that succeeds must
/// leave an archive that reopens and holds what was written.
fn write_after(lb: &mut Lockbox, verified: bool, what: &str) {
    let big = content(77, 3000);
    let r = (|| -> lockbox::Result<()> {
        lb.put("zz/new", b"new")?;
        lb.put("zz/packed", &big)?;
        let _ = lb.delete("a.txt");
        lb.set_var("zz", b"var")?;
        lb.commit()?;
        Ok(())
    })();
    if r.is_err() {
        return;
    }
    let img = lb.image().expect("image");
    let reopened = Lockbox::builder()
        .cache_bytes(1 << 20)
        .open_bytes(img, key());
    if skip_known() && reopened.is_err() {
        return; // the free-space index is trusted (known)
    }
    let lb2 = reopened.unwrap_or_else(|e| {
        panic!("{what}: commit succeeded but the archive no longer opens: {e}")
    });
    match lb2.get("zz/packed") {
        Ok(v) => assert!(
            v == big,
            "{what}: zz/packed reads back WRONG after a commit"
        ),
        Err(e) => assert!(
            skip_known(),
            "{what}: zz/packed unreadable after a successful commit: {e}"
        ),
    }
    if verified && !skip_known() {
        lb2.verify().unwrap_or_else(|e| {
            panic!("{what}: a verified archive no longer verifies after a commit: {e}")
        });
    } // Compaction rewrites everything reachable into a fresh archive: it
    // refuses (typed) or its result opens and verifies.
    match lb.compact() {
        Ok(_) => {
            let img = lb.image().expect("image");
            let c = Lockbox::builder()
                .cache_bytes(1 << 20)
                .open_bytes(img, key())
                .unwrap_or_else(|e| panic!("{what}: the compacted archive does not open: {e}"));
            if !skip_known() {
                c.verify().unwrap_or_else(|e| {
                    panic!("{what}: the compacted archive does not verify: {e}")
                });
            }
            match c.get("zz/packed") {
                Ok(v) => assert!(v == big, "{what}: zz/packed WRONG after compaction"),
                Err(e) => panic!("{what}: zz/packed lost in compaction: {e}"),
            }
        }
        Err(Error::Io(e)) if !skip_known() => {
            panic!("{what}: compaction reports damage as an I/O error: {e}")
        }
        Err(_) => {}
    }
}

/// Mode 6: the fuzz bytes are the free-space index's root leaf
/// (`count u32` for the commit record first).
fn forged_free(s: &mut Src<'_>) -> Vec<u8> {
    let keys = template_keys();
    let mut img = template().clone();
    let old = forge::newest_commit(keys, &img).expect("template commit");
    let g = old.seq + 1;
    let count = s.u32() as u64;
    let fp = forge::append_plain(keys, &mut img, forge::kind::FREE_NODE, g, s.rest());
    let rec = forge::CommitRecord {
        seq: g,
        free: forge::Root {
            root: Some(fp),
            height: 1,
            count,
        },
        ..old
    };
    forge::commit_both(keys, &mut img, rec);
    img
}

fn hooked(lb: &mut Lockbox, mode: u8, s: &mut Src<'_>) -> lockbox::Result<()> {
    match mode {
        0 | 1 => {
            let height = s.u8() as u32 % 40;
            let count = s.u32() as u64;
            let k = if mode == 0 {
                kind::TOC_NODE
            } else {
                kind::VAR_NODE
            };
            let p = testing::seal(lb, k, s.rest())?;
            let root = Some((p, height, count));
            if mode == 0 {
                testing::commit_roots(lb, root, None)
            } else {
                testing::commit_roots(lb, None, root)
            }
        }
        2 => {
            let frame_size = s.u32();
            let depth = s.u8() % 8;
            let len = s.u64();
            let idx = testing::seal(lb, kind::FRAME_INDEX, s.rest())?;
            let rec = forge::Record::file(
                len,
                forge::Content::Frames {
                    frame_size,
                    depth,
                    root: dec(&idx),
                },
            );
            let leaf = testing::seal(lb, kind::TOC_NODE, &leaf_of(&[(b"f", rec.encode())]))?;
            testing::commit_roots(lb, Some((leaf, 1, 1)), None)
        }
        3 => {
            let frame_size = s.u32();
            let len = s.u64();
            let offset = s.u32();
            // Small lengths mostly; a 0xff high byte asks for a huge one.
            let len2 = match s.u16() {
                l if l >> 8 == 0xff => u64::MAX - (l & 0xff) as u64,
                l => l as u64,
            };
            let fr = testing::seal(lb, kind::FRAME, s.rest())?;
            let f = forge::Record::file(
                len,
                forge::Content::Frames {
                    frame_size,
                    depth: 0,
                    root: dec(&fr),
                },
            );
            let packed = forge::Content::Packed {
                frame: dec(&fr),
                offset,
            };
            let p = forge::Record::file(len2, packed.clone());
            let leaf = testing::seal(
                lb,
                kind::TOC_NODE,
                &leaf_of(&[(b"f", f.encode()), (b"p", p.encode())]),
            )?;
            let vleaf = testing::seal(
                lb,
                kind::VAR_NODE,
                &leaf_of(&[(b"v", forge::var_value(len2, &packed))]),
            )?;
            testing::commit_roots(lb, Some((leaf, 1, 2)), Some((vleaf, 1, 1)))
        }
        _ => {
            let n = s.u8() as usize % 16;
            let sep = s.bytes(n).to_vec();
            let leaf = testing::seal(lb, kind::TOC_NODE, s.rest())?;
            let l = dec(&leaf);
            let root = forge::internal(1, &[(Vec::new(), l), (sep, l)]);
            let r = testing::seal(lb, kind::TOC_NODE, &root)?;
            testing::commit_roots(lb, Some((r, 2, 2)), None)
        }
    }
}

fn forged_frame(s: &mut Src<'_>) -> Vec<u8> {
    let keys = template_keys();
    let mut img = template().clone();
    let old = forge::newest_commit(keys, &img).expect("template commit");
    let generation = old.seq + 1;
    let codec = s.u8() % 3;
    let raw_len = s.u32() % (48 << 20);
    let frame_size = s.u32();
    let flags = s.u8();
    let mut body = s.rest().to_vec();
    if flags & 1 != 0 {
        body = zstd::bulk::compress(&body, 1).unwrap_or_default();
    }
    let fr = forge::append(
        keys,
        &mut img,
        forge::kind::FRAME,
        generation,
        raw_len,
        codec,
        &body,
    );
    let fs = if frame_size == 0 {
        raw_len.max(1)
    } else {
        frame_size
    };
    let f = forge::Record::file(
        raw_len as u64,
        forge::Content::Frames {
            frame_size: fs,
            depth: 0,
            root: fr,
        },
    );
    let packed = forge::Content::Packed {
        frame: fr,
        offset: 0,
    };
    let p = forge::Record::file((raw_len as u64).min(200), packed.clone());
    let leaf = forge::leaf(&[(b"f".to_vec(), f.encode()), (b"p".to_vec(), p.encode())]);
    let lp = forge::append_plain(keys, &mut img, forge::kind::TOC_NODE, generation, &leaf);
    let vleaf = forge::leaf(&[(
        b"v".to_vec(),
        forge::var_value((raw_len as u64).min(100), &packed),
    )]);
    let vp = forge::append_plain(keys, &mut img, forge::kind::VAR_NODE, generation, &vleaf);
    let rec = forge::CommitRecord {
        seq: generation,
        toc: forge::Root::leaf(lp, 2),
        vars: forge::Root::leaf(vp, 1),
        time: 1_700_000_000,
        ..Default::default()
    };
    forge::commit_both(keys, &mut img, rec);
    img
}

// ---------------------------------------------------------------------------
// ops_model: operation sequences against an in-memory reference
// ---------------------------------------------------------------------------

const PATHS: [&str; 9] = ["a", "b", "a/b", "a/c", "b/a", "a/b/c", "c", "a-x", "a/b/d"];
const VARS: [&str; 3] = ["v", "w", "a/b"];
const TARGETS: [&str; 4] = ["a", "../up", "/abs", "b/c"];
const LENS: [usize; 9] = [0, 1, 128, 129, 700, 5000, 32_768, 65_536, 140_001];

#[derive(Clone, Debug, PartialEq)]
enum Node {
    File(Vec<u8>),
    Symlink(String),
    Dir,
}

#[derive(Clone, Default, Debug, PartialEq)]
struct State {
    entries: BTreeMap<String, Node>,
    vars: BTreeMap<String, Vec<u8>>,
}

fn ancestors(p: &str) -> impl Iterator<Item = &str> {
    p.match_indices('/').map(move |(i, _)| &p[..i])
}

impl State {
    fn has_children(&self, p: &str) -> bool {
        let pre = format!("{p}/");
        self.entries.keys().any(|k| k.starts_with(&pre))
    }
    fn is_dir(&self, p: &str) -> bool {
        matches!(self.entries.get(p), Some(Node::Dir))
            || (!self.entries.contains_key(p) && self.has_children(p))
    }
    fn exists(&self, p: &str) -> bool {
        self.entries.contains_key(p) || self.has_children(p)
    }
    fn blocked(&self, p: &str) -> bool {
        ancestors(p).any(|a| matches!(self.entries.get(a), Some(Node::File(_) | Node::Symlink(_))))
    }
    fn subtree(&self, p: &str) -> Vec<String> {
        let pre = format!("{p}/");
        self.entries
            .keys()
            .filter(|k| p.is_empty() || k.as_str() == p || k.starts_with(&pre))
            .cloned()
            .collect()
    }
}

/// Checks that the handle shows exactly `st`.
fn check_state(lb: &Lockbox, st: &State, ctx: &str) {
    let listed: Vec<_> = lb
        .list("")
        .unwrap_or_else(|e| panic!("{ctx}: list failed: {e}"))
        .map(|r| r.unwrap_or_else(|e| panic!("{ctx}: list item failed: {e}")))
        .collect();
    let mut implicit = BTreeSet::new();
    for k in st.entries.keys() {
        for a in ancestors(k) {
            if !st.entries.contains_key(a) {
                implicit.insert(a.to_string());
            }
        }
    }
    let stored: Vec<&String> = st.entries.keys().collect();
    let got: Vec<&String> = listed.iter().map(|e| &e.path).collect();
    let mut want_sorted = stored.clone();
    want_sorted.sort_by_key(|p| path_key(p));
    assert_eq!(got, want_sorted, "{ctx}: list differs from the model");
    for e in &listed {
        match &st.entries[&e.path] {
            Node::File(d) => {
                assert_eq!(e.kind, EntryKind::File, "{ctx}: kind of {}", e.path);
                let v = lb
                    .get(&e.path)
                    .unwrap_or_else(|x| panic!("{ctx}: get({}) failed: {x}", e.path));
                assert!(v == *d, "{ctx}: get({}) returned wrong data", e.path);
                if !d.is_empty() {
                    let mut buf = [0u8; 1000];
                    let off = (d.len() / 3) as u64;
                    let n = lb.read_at(&e.path, off, &mut buf).unwrap();
                    let w = &d[off as usize..];
                    assert!(
                        n == w.len().min(1000) && buf[..n] == w[..n],
                        "{ctx}: read_at({}) wrong",
                        e.path
                    );
                }
            }
            Node::Symlink(t) => {
                assert_eq!(e.kind, EntryKind::Symlink, "{ctx}: kind of {}", e.path);
                assert_eq!(
                    e.target.as_deref(),
                    Some(t.as_str()),
                    "{ctx}: target of {}",
                    e.path
                );
            }
            Node::Dir => assert_eq!(e.kind, EntryKind::Dir, "{ctx}: kind of {}", e.path),
        }
    }
    for d in &implicit {
        let s = lb
            .stat(d)
            .unwrap()
            .unwrap_or_else(|| panic!("{ctx}: implicit dir {d} missing"));
        assert_eq!(s.kind, EntryKind::Dir, "{ctx}: implicit dir {d}");
    }
    let vars: BTreeMap<String, Vec<u8>> = lb
        .vars()
        .unwrap_or_else(|e| panic!("{ctx}: vars failed: {e}"))
        .map(|r| r.unwrap_or_else(|e| panic!("{ctx}: vars item failed: {e}")))
        .collect();
    assert_eq!(vars, st.vars, "{ctx}: variables differ from the model");
}

/// Ops: each starts with a byte `op`, then its arguments. At most 48 ops.
/// After a commit the handle must verify; after every op the touched
/// entries are compared; the whole state is compared after commits,
/// rollbacks, reopens and at the end.
pub fn ops_model(data: &[u8]) {
    let mut s = Src::new(data);
    let mut lb = Lockbox::builder()
        .node_capacity(1024)
        .cache_bytes(1 << 20)
        .create_in_memory(key())
        .expect("create");
    let mut committed = State::default();
    let mut st = State::default();
    let mut log: Vec<String> = Vec::new();
    let mut n = 0;
    while !s.done() && n < 48 {
        n += 1;
        let op = s.u8() % 14;
        let p = PATHS[s.u8() as usize % PATHS.len()].to_string();
        match op {
            0 | 1 => {
                let len = LENS[s.u8() as usize % LENS.len()];
                let d = content(s.u8() as u64, len);
                log.push(format!(
                    "put{}({p}, {len})",
                    if op == 1 { "_reader" } else { "" }
                ));
                let r = if op == 0 {
                    lb.put(&p, &d).map(|()| len as u64)
                } else {
                    lb.put_reader(&p, &d[..])
                };
                let ok_expected = !st.blocked(&p) && !st.is_dir(&p);
                match r {
                    Ok(k) => {
                        assert!(
                            ok_expected,
                            "{log:?}: put succeeded where the model refuses"
                        );
                        assert_eq!(k, len as u64);
                        st.entries.insert(p.clone(), Node::File(d));
                    }
                    Err(e) => assert!(!ok_expected, "{log:?}: put failed unexpectedly: {e}"),
                }
            }
            2 => {
                let all = s.u8().is_multiple_of(8);
                let q = if all { String::new() } else { p.clone() };
                log.push(format!("delete({q})"));
                let doomed = st.subtree(&q);
                match lb.delete(&q) {
                    Ok(k) => {
                        assert_eq!(k as usize, doomed.len(), "{log:?}: delete count");
                        for d in doomed {
                            st.entries.remove(&d);
                        }
                    }
                    Err(e) => assert!(
                        doomed.is_empty() || st.blocked(&q),
                        "{log:?}: delete failed unexpectedly: {e}"
                    ),
                }
            }
            3 => {
                let to = PATHS[s.u8() as usize % PATHS.len()].to_string();
                log.push(format!("rename({p}, {to})"));
                let ok_expected = st.exists(&p)
                    && p != to
                    && !to.starts_with(&format!("{p}/"))
                    && !st.exists(&to)
                    && !st.blocked(&to)
                    && !st.blocked(&p);
                match lb.rename(&p, &to) {
                    Ok(()) => {
                        assert!(
                            ok_expected || p == to,
                            "{log:?}: rename succeeded where the model refuses"
                        );
                        if p != to {
                            for k in st.subtree(&p) {
                                let node = st.entries.remove(&k).unwrap();
                                st.entries.insert(format!("{to}{}", &k[p.len()..]), node);
                            }
                        }
                    }
                    Err(e) => assert!(!ok_expected, "{log:?}: rename failed unexpectedly: {e}"),
                }
            }
            4 => {
                let t = TARGETS[s.u8() as usize % TARGETS.len()].to_string();
                log.push(format!("symlink({p}, {t})"));
                let ok_expected = !st.blocked(&p) && !st.is_dir(&p);
                match lb.symlink(&p, &t) {
                    Ok(()) => {
                        assert!(
                            ok_expected,
                            "{log:?}: symlink succeeded where the model refuses"
                        );
                        st.entries.insert(p.clone(), Node::Symlink(t));
                    }
                    Err(e) => assert!(!ok_expected, "{log:?}: symlink failed unexpectedly: {e}"),
                }
            }
            5 => {
                log.push(format!("mkdir({p})"));
                let ok_expected =
                    !st.blocked(&p) && matches!(st.entries.get(&p), None | Some(Node::Dir));
                match lb.mkdir(&p) {
                    Ok(()) => {
                        assert!(
                            ok_expected,
                            "{log:?}: mkdir succeeded where the model refuses"
                        );
                        st.entries.insert(p.clone(), Node::Dir);
                    }
                    Err(e) => assert!(!ok_expected, "{log:?}: mkdir failed unexpectedly: {e}"),
                }
            }
            6 => {
                let v = VARS[s.u8() as usize % VARS.len()].to_string();
                let len = LENS[s.u8() as usize % LENS.len()];
                let d = content(s.u8() as u64 + 1000, len);
                log.push(format!("set_var({v}, {len})"));
                lb.set_var(&v, &d)
                    .unwrap_or_else(|e| panic!("{log:?}: set_var failed: {e}"));
                st.vars.insert(v, d);
            }
            7 => {
                let v = VARS[s.u8() as usize % VARS.len()].to_string();
                log.push(format!("remove_var({v})"));
                let had = lb
                    .remove_var(&v)
                    .unwrap_or_else(|e| panic!("{log:?}: remove_var failed: {e}"));
                assert_eq!(
                    had,
                    st.vars.remove(&v).is_some(),
                    "{log:?}: remove_var result"
                );
            }
            8 | 9 => {
                log.push("commit".into());
                lb.commit()
                    .unwrap_or_else(|e| panic!("{log:?}: commit failed: {e}"));
                committed = st.clone();
                if let Err(e) = lb.verify() {
                    panic!("{log:?}: a lockbox built through the API does not verify: {e}");
                }
                check_state(&lb, &st, &format!("{log:?}"));
            }
            10 => {
                log.push("rollback".into());
                lb.rollback();
                st = committed.clone();
                check_state(&lb, &st, &format!("{log:?}"));
            }
            11 => {
                log.push("reopen".into());
                let img = lb.image().unwrap();
                drop(lb);
                lb = Lockbox::builder()
                    .cache_bytes(1 << 20)
                    .open_bytes(img, key())
                    .unwrap_or_else(|e| panic!("{log:?}: reopen failed: {e}"));
                st = committed.clone();
                check_state(&lb, &st, &format!("{log:?}"));
            }
            _ => {
                log.push(format!("check({p})"));
                match (st.entries.get(&p), lb.stat(&p).unwrap()) {
                    (Some(Node::File(d)), Some(e)) => {
                        assert_eq!(e.len, d.len() as u64, "{log:?}: stat len");
                        assert!(lb.get(&p).unwrap() == *d, "{log:?}: get({p}) wrong data");
                    }
                    (None, None) => {
                        assert!(!st.has_children(&p), "{log:?}: implicit dir {p} missing")
                    }
                    (None, Some(e)) => assert!(
                        st.has_children(&p) && e.kind == EntryKind::Dir,
                        "{log:?}: stat({p}) found {e:?}, model has nothing"
                    ),
                    (Some(m), got) => assert!(
                        got.is_some(),
                        "{log:?}: {p} is {m:?} in the model, stat finds nothing"
                    ),
                }
            }
        }
    }
    check_state(&lb, &st, &format!("{log:?} (end)"));
    lb.commit()
        .unwrap_or_else(|e| panic!("{log:?}: final commit failed: {e}"));
    lb.verify()
        .unwrap_or_else(|e| panic!("{log:?}: final verify failed: {e}"));
}

// ---------------------------------------------------------------------------
// extract_paths: hostile names and symlinks, extracted into a temp dir
// ---------------------------------------------------------------------------

/// Names the generator picks from (besides raw fuzz bytes). In key form a
/// `/` is stored as 0x00, so these cover `..`, absolute, empty and `.`
/// components, backslashes, and names that collide after normalisation.
pub const NAMES: [&str; 18] = [
    "a",
    "a/b",
    "../escape",
    "/abs",
    "/a",
    "a/../../x",
    "a//b",
    "./a",
    "a\\b",
    "pre/x",
    "pre",
    "prefile",
    "b",
    "b/c/d",
    "a/b/c",
    "..",
    "@/x",
    "@/d/f",
];

static RUN: AtomicU64 = AtomicU64::new(0);

/// A fresh scratch directory: `<tmp>/lockbox-fuzz-<pid>-<n>/` holding
/// `outside/` (the sentinel, must stay empty) and, optionally, `dest/`.
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let n = RUN.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("lockbox-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("outside")).expect("scratch");
        Scratch { root }
    }
    pub fn dest(&self) -> PathBuf {
        self.root.join("dest")
    }
    pub fn outside(&self) -> PathBuf {
        self.root.join("outside")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Every path below `dir` (not following symlinks), relative, with kind
/// 'f', 'd' or 'l' and its mode.
pub fn tree(dir: &Path) -> BTreeMap<String, (char, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((p, rel)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            let k = if m.file_type().is_symlink() {
                'l'
            } else if m.is_dir() {
                stack.push((e.path(), r.clone()));
                'd'
            } else {
                'f'
            };
            out.insert(r, (k, m.permissions().mode()));
        }
    }
    out
}

/// Whether a symlink at `rel` pointing to `target` stays inside, lexically.
pub fn stays_inside(rel: &str, target: &str) -> bool {
    if target.starts_with('/') || target.is_empty() {
        return false;
    }
    let mut depth = rel.split('/').count() as i64 - 1;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

/// Whether a symlink target, placed anywhere inside `dest`, could reach
/// above the scratch root (`dest/..`), outside the sentinel.
fn leaves_scratch(t: &[u8], sentinel: &str) -> bool {
    let Ok(t) = std::str::from_utf8(t) else {
        return true;
    };
    if t.starts_with('/') {
        return !t.starts_with(sentinel);
    }
    let mut depth = 1i64;
    for c in t.split(['/', '\\']) {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// One hostile archive entry: key bytes, record.
pub type Hostile = (Vec<u8>, forge::Record);

/// Builds (through the hooks) a lockbox whose TOC is one leaf holding
/// `entries` in the given order, and returns its image. `None` if the
/// hooks refuse (e.g. a leaf too large).
pub fn hostile_image(entries: &[Hostile]) -> Option<Vec<u8>> {
    let mut lb = Lockbox::builder().create_in_memory(key()).ok()?;
    let e: Vec<(Vec<u8>, Vec<u8>)> = entries
        .iter()
        .map(|(k, r)| (k.clone(), r.encode()))
        .collect();
    let leaf = testing::seal(&mut lb, kind::TOC_NODE, &forge::leaf(&e)).ok()?;
    testing::commit_roots(&mut lb, Some((leaf, 1, entries.len() as u64)), None).ok()?;
    lb.image().ok()
}

/// What an extraction did, for the callers' own assertions.
pub struct Extracted {
    pub result: lockbox::Result<lockbox::ExtractStats>,
    pub dest_tree: BTreeMap<String, (char, u32)>,
}

/// Extracts `image` into `scratch.dest()` and checks the §4 rules that
/// hold whatever the archive holds: nothing appears outside `dest` (the
/// sentinel stays empty, the scratch root holds only `dest` and
/// `outside`, nothing at the absolute paths the archive names), no
/// setuid/setgid/sticky bits, symlinks that leave `dest` only when allowed,
/// and regular files hold exactly the archive's bytes.
pub fn extract_checked(
    image: Vec<u8>,
    entries: &[Hostile],
    scratch: &Scratch,
    opts: &ExtractOptions,
    dest_exists: bool,
    what: &str,
) -> Option<Extracted> {
    let dest = scratch.dest();
    if dest_exists {
        std::fs::create_dir_all(&dest).unwrap();
        std::os::unix::fs::symlink(scratch.outside(), dest.join("pre")).unwrap();
        std::fs::write(dest.join("prefile"), b"keep").unwrap();
    }
    let lb = Lockbox::builder().open_bytes(image, key()).ok()?;
    let result = lb.extract_to_directory(&dest, opts);
    // Nothing outside dest.
    let outside = tree(&scratch.outside());
    assert!(
        outside.is_empty(),
        "{what}: extraction wrote outside dest: {outside:?} (result {result:?})"
    );
    let mut top: Vec<String> = std::fs::read_dir(&scratch.root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    let allowed: &[&str] = if dest_exists || result.is_ok() {
        &["dest", "outside"]
    } else {
        &["outside"]
    };
    assert_eq!(
        top, allowed,
        "{what}: unexpected entries beside dest (result {result:?})"
    );
    let dest_tree = tree(&dest);
    for (rel, (k, mode)) in &dest_tree {
        assert_eq!(
            mode & 0o7000,
            0,
            "{what}: {rel} has setuid/setgid/sticky bits ({mode:o})"
        );
        if *k == 'l' && result.is_ok() && !opts.allow_escaping_symlinks && rel != "pre" {
            let t = std::fs::read_link(dest.join(rel)).unwrap();
            let t = t.to_string_lossy();
            assert!(
                stays_inside(rel, &t),
                "{what}: symlink {rel} -> {t} escapes dest"
            );
        }
    }
    if result.is_ok() && !opts.allow_escaping_symlinks && !skip_known() {
        // Links that each look inside may still resolve outside together
        // (`d/l -> ..`, `x -> d/l/..`): resolve them for real.
        let root = std::fs::canonicalize(&dest).unwrap();
        for (rel, (k, _)) in &dest_tree {
            if *k == 'l'
                && rel != "pre"
                && let Ok(p) = std::fs::canonicalize(dest.join(rel))
            {
                assert!(
                    p.starts_with(&root),
                    "{what}: symlink {rel} resolves outside dest, to {p:?}"
                );
            }
        }
    }
    if result.is_ok() {
        // Every regular file holds exactly what the archive says.
        for (k, r) in entries {
            let Ok(s) = std::str::from_utf8(k) else {
                continue;
            };
            let rel: String = s.chars().map(|c| if c == '\0' { '/' } else { c }).collect();
            if let (1, forge::Content::Inline(b)) = (r.kind, &r.content)
                && let Some(('f', _)) = dest_tree.get(&rel)
                && rel != "prefile"
            {
                let got = std::fs::read(dest.join(&rel)).unwrap();
                assert!(got == *b, "{what}: {rel} extracted with the wrong bytes");
            }
        }
    }
    Some(Extracted { result, dest_tree })
}

/// Input: flags u8 (bit 0 dest exists with `pre -> outside` and
/// `prefile`; bit 1 allow escaping symlinks; bit 2 overwrite; bit 3 keep
/// the entry order as given instead of sorting; bit 4 restore mtimes),
/// then entries: `tag u8` (`tag % 3`: file, dir, symlink; bit 2: name
/// from `NAMES` by the next byte, else `len u8 % 24` raw bytes, `/` stored
/// as 0x00; bit 3: `mtime u64`, `nanos u32`, `mode u16` follow the
/// payload), `len u8 % 40` payload (a name or symlink target starting
/// with `@` points into the sentinel).
pub fn extract_paths(data: &[u8]) {
    let mut s = Src::new(data);
    let flags = s.u8();
    let scratch = Scratch::new("fuzz-extract");
    let sentinel = scratch.outside().to_string_lossy().into_owned();
    let mut entries: Vec<Hostile> = Vec::new();
    while !s.done() && entries.len() < 12 {
        let tag = s.u8();
        let mut name: Vec<u8> = if tag & 4 != 0 {
            NAMES[s.u8() as usize % NAMES.len()].as_bytes().to_vec()
        } else {
            let n = s.u8() as usize % 24;
            s.bytes(n).to_vec()
        };
        // `@` at the start of a name: the sentinel's absolute path (an
        // absolute name that, if honoured, lands in the sentinel).
        if name.first() == Some(&b'@') {
            let mut x = sentinel.as_bytes().to_vec();
            x.extend_from_slice(&name[1..]);
            name = x;
        }
        let key: Vec<u8> = name
            .iter()
            .map(|&b| if b == b'/' { 0 } else { b })
            .collect();
        let n = s.u8() as usize % 40;
        let payload = s.bytes(n).to_vec();
        let mut rec = match tag % 3 {
            0 => forge::Record::inline_file(&payload),
            1 => forge::Record::dir(),
            _ => {
                let mut t = payload;
                if t.first() == Some(&b'@') {
                    let mut x = sentinel.as_bytes().to_vec();
                    x.extend_from_slice(&t[1..]);
                    t = x;
                }
                if t.is_empty() {
                    t = b"a".to_vec();
                }
                forge::Record::symlink(&t)
            }
        };
        if tag & 8 != 0 {
            rec.mtime = s.u64() as i64;
            rec.nanos = s.u32() % 1_000_000_000;
            rec.mode = s.u16() as u32;
        }
        entries.push((key, rec));
    }
    // Keep the real filesystem out of reach whatever lockbox does: absolute
    // names go under the sentinel, symlink targets that would leave the
    // scratch directory point at the sentinel instead.
    let sentinel_key = forge::key_of(&sentinel);
    for (k, r) in &mut entries {
        if k.first() == Some(&0) && !k.starts_with(&sentinel_key) {
            let mut x = sentinel_key.clone();
            x.extend_from_slice(k);
            *k = x;
        }
        // `..` components could climb anywhere if lockbox honoured them:
        // pad so the highest they reach is the scratch root (relative
        // names, which the top-level check sees) or the sentinel (absolute).
        let ups = k.split(|&b| b == 0).filter(|c| *c == b"..").count();
        if ups > 0 {
            let (base, rest) = if k.starts_with(&sentinel_key) {
                (sentinel_key.clone(), k[sentinel_key.len()..].to_vec())
            } else {
                (Vec::new(), k.clone())
            };
            let pad = if base.is_empty() { ups - 1 } else { ups };
            let mut x = base.clone();
            for _ in 0..pad {
                if !base.is_empty() {
                    x.push(0);
                }
                x.push(b'z');
                if base.is_empty() {
                    x.push(0);
                }
            }
            x.extend_from_slice(&rest);
            *k = x;
        }
        if let (3, forge::Content::Inline(t)) = (r.kind, &r.content)
            && leaves_scratch(t, &sentinel)
        {
            *r = forge::Record::symlink(sentinel.as_bytes());
        }
    }
    if skip_known() {
        entries.retain(|(k, _)| k.first() != Some(&0));
    }
    if entries.is_empty() {
        return;
    }
    if flags & 8 == 0 {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
    }
    let Some(image) = hostile_image(&entries) else {
        return;
    };
    let mut opts = ExtractOptions::default()
        .allow_escaping_symlinks(flags & 2 != 0)
        .overwrite(flags & 4 != 0)
        .restore_mtimes(flags & 16 != 0)
        .threads(1);
    opts.restore_modes = true;
    extract_checked(
        image,
        &entries,
        &scratch,
        &opts,
        flags & 1 != 0,
        "extract_paths",
    );
}
