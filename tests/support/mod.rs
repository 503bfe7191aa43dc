//! Helpers for the space-and-keys tests (redaction, space, keys, compact,
//! model): a seeded generator, random markers and a fast multi-needle
//! scanner, B-tree key reconstruction from node plaintexts, a recording
//! backend that can crash from its N-th mutating operation on
//! (`rec_backend.rs`, which `tests/crash` includes too), and a snapshot of
//! a lockbox's visible state.
//!
//! Kept apart from `tests/common/mod.rs` on purpose (that file is shared
//! by other test suites and edited separately).
#![allow(dead_code)]

#[path = "../draw/mod.rs"]
mod draw;
#[path = "../paths/mod.rs"]
pub mod paths;
pub use draw::Draw;

use lockbox::{Entry, EntryKind, Error, KdfParams, Key, Lockbox};
use std::collections::{BTreeMap, HashMap, HashSet};

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// A raw key derived from a small id (id 7 is `[7; 32]`, the key
/// `tests/common` uses).
pub fn raw_key(id: u8) -> Key {
    Key::raw([id; 32])
}

/// The cheapest Argon2id parameters `create` accepts (19 MiB, t = 2, p = 1).
pub fn cheap_kdf() -> KdfParams {
    KdfParams {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    }
}

// ---------------------------------------------------------------------------
// Seeded generator (splitmix64)
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6A09_E667_F3BC_C908)
    }

    /// `len` bytes that are random (incompressible) or text-like
    /// (compressible), by chance.
    pub fn content(&mut self, len: usize) -> Vec<u8> {
        if self.chance(1, 2) {
            return self.bytes(len);
        }
        const WORDS: [&str; 8] = [
            "lorem ", "ipsum ", "dolor ", "sit ", "amet,\n", "lockbox ", "frame ", "page ",
        ];
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(self.pick(&WORDS).as_bytes());
        }
        v.truncate(len);
        v
    }

    /// A fresh random 16-byte marker.
    pub fn marker(&mut self) -> [u8; 16] {
        let mut m = [0u8; 16];
        self.fill(&mut m);
        m
    }
}

impl Draw for Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The seed of a test: `LOCKBOX_TEST_SEED` if set, else `default`.
pub fn test_seed(default: u64) -> u64 {
    std::env::var("LOCKBOX_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

// ---------------------------------------------------------------------------
// Multi-needle scanner
// ---------------------------------------------------------------------------

/// Which form of a marker was found: its raw 16 bytes, or its 32-character
/// lowercase ASCII hex form (as used in paths and names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Form {
    Raw,
    Hex,
}

/// Finds every occurrence of many fixed needles in one pass: a 16-bit
/// prefix filter, then a hash lookup of the 16-byte window (raw needles) or
/// the 32-byte window (hex needles).
pub struct Scanner {
    prefix: Vec<u64>, // 65536-bit set of first two bytes
    raw: HashMap<[u8; 16], usize>,
    hexs: HashMap<[u8; 32], usize>,
}

impl Scanner {
    /// A scanner for `markers` in both forms; results name markers by index.
    pub fn new(markers: &[[u8; 16]]) -> Scanner {
        let mut s = Scanner {
            prefix: vec![0u64; 1024],
            raw: HashMap::new(),
            hexs: HashMap::new(),
        };
        for (i, m) in markers.iter().enumerate() {
            s.raw.insert(*m, i);
            let h: [u8; 32] = hex(m).into_bytes().try_into().unwrap();
            s.hexs.insert(h, i);
            for p in [[m[0], m[1]], [h[0], h[1]]] {
                let bit = u16::from_le_bytes(p) as usize;
                s.prefix[bit / 64] |= 1 << (bit % 64);
            }
        }
        s
    }

    /// Every (marker index, form) occurring in `hay`, added to `out`.
    pub fn scan(&self, hay: &[u8], out: &mut HashSet<(usize, Form)>) {
        if hay.len() < 16 {
            return;
        }
        for i in 0..hay.len() - 15 {
            let bit = u16::from_le_bytes([hay[i], hay[i + 1]]) as usize;
            if self.prefix[bit / 64] & (1 << (bit % 64)) == 0 {
                continue;
            }
            let w16: &[u8; 16] = hay[i..i + 16].try_into().unwrap();
            if let Some(&m) = self.raw.get(w16) {
                out.insert((m, Form::Raw));
            }
            if i + 32 <= hay.len() {
                let w32: &[u8; 32] = hay[i..i + 32].try_into().unwrap();
                if let Some(&m) = self.hexs.get(w32) {
                    out.insert((m, Form::Hex));
                }
            }
        }
    }

    /// Offsets of every occurrence in `hay` (for failure messages).
    pub fn find_offsets(&self, hay: &[u8]) -> Vec<(u64, usize, Form)> {
        let mut v = Vec::new();
        if hay.len() < 16 {
            return v;
        }
        for i in 0..hay.len() - 15 {
            let bit = u16::from_le_bytes([hay[i], hay[i + 1]]) as usize;
            if self.prefix[bit / 64] & (1 << (bit % 64)) == 0 {
                continue;
            }
            let w16: &[u8; 16] = hay[i..i + 16].try_into().unwrap();
            if let Some(&m) = self.raw.get(w16) {
                v.push((i as u64, m, Form::Raw));
            }
            if i + 32 <= hay.len() {
                let w32: &[u8; 32] = hay[i..i + 32].try_into().unwrap();
                if let Some(&m) = self.hexs.get(w32) {
                    v.push((i as u64, m, Form::Hex));
                }
            }
        }
        v
    }
}

// ---------------------------------------------------------------------------
// B-tree node plaintexts: reconstruct full keys (the encoding shares key
// prefixes with the previous key, so a name may not appear bytewise)
// ---------------------------------------------------------------------------

const PTR_LEN: usize = 40;

/// If `raw` parses exactly as a B-tree node (docs/format.md: `level u8,
/// count u32, entries`; entry = `shared u16, suffix_len u16, suffix`, then
/// `value_len u32, value` in a leaf or a 40-byte pointer in an internal
/// node), its full keys and leaf values; else `None`.
pub fn node_keys(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = raw.get(*at..at.checked_add(n)?)?;
        *at += n;
        Some(s)
    };
    let level = *take(&mut at, 1)?.first()?;
    let count = u32::from_le_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
    if count == 0 || count > raw.len() / 8 {
        return None;
    }
    let mut prev: Vec<u8> = Vec::new();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let shared = u16::from_le_bytes(take(&mut at, 2)?.try_into().ok()?) as usize;
        let slen = u16::from_le_bytes(take(&mut at, 2)?.try_into().ok()?) as usize;
        if shared > prev.len() {
            return None;
        }
        let mut k = prev[..shared].to_vec();
        k.extend_from_slice(take(&mut at, slen)?);
        if level == 0 {
            let vlen = u32::from_le_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
            take(&mut at, vlen)?;
        } else {
            take(&mut at, PTR_LEN)?;
        }
        prev.clone_from(&k);
        out.push(k);
    }
    (at == raw.len()).then_some(out)
}

// ---------------------------------------------------------------------------
// Recording / crashing backend (its own file: tests/crash includes it too)
// ---------------------------------------------------------------------------

mod rec_backend;
#[allow(unused_imports)] // not every suite uses it
pub use rec_backend::*;

// ---------------------------------------------------------------------------
// Visible state
// ---------------------------------------------------------------------------

/// Everything a lockbox shows through the public API: every listed entry
/// (with mode and mtime), every file's bytes, every variable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub entries: Vec<Entry>,
    pub files: BTreeMap<String, Vec<u8>>,
    pub vars: BTreeMap<String, Vec<u8>>,
}

pub fn snapshot(lb: &Lockbox) -> Snapshot {
    let entries: Vec<Entry> = lb
        .list("")
        .expect("list(\"\")")
        .collect::<lockbox::Result<_>>()
        .expect("list(\"\") item");
    let mut files = BTreeMap::new();
    for e in &entries {
        if e.kind == EntryKind::File {
            let d = lb
                .get(&e.path)
                .unwrap_or_else(|err| panic!("get({:?}): {err:?}", e.path));
            assert_eq!(d.len() as u64, e.len, "{:?}: listed length", e.path);
            files.insert(e.path.clone(), d);
        }
    }
    let vars = lb
        .vars()
        .expect("vars()")
        .collect::<lockbox::Result<BTreeMap<_, _>>>()
        .expect("vars() item");
    Snapshot {
        entries,
        files,
        vars,
    }
}

/// A short description of how two snapshots differ.
pub fn snapshot_diff(want: &Snapshot, got: &Snapshot) -> String {
    let mut out = Vec::new();
    let w: BTreeMap<&str, &Entry> = want.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let g: BTreeMap<&str, &Entry> = got.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    for (p, e) in &w {
        match g.get(p) {
            None => out.push(format!("missing {p}")),
            Some(ge) if ge != e => out.push(format!("{p}: want {e:?}, got {ge:?}")),
            _ => {}
        }
    }
    for p in g.keys() {
        if !w.contains_key(p) {
            out.push(format!("unexpected {p}"));
        }
    }
    for (p, d) in &want.files {
        if got.files.get(p).is_some_and(|x| x != d) {
            out.push(format!("{p}: content differs"));
        }
    }
    if want.vars != got.vars {
        out.push(format!(
            "vars differ: want {:?}, got {:?}",
            want.vars.keys().collect::<Vec<_>>(),
            got.vars.keys().collect::<Vec<_>>()
        ));
    }
    if want.entries.iter().map(|e| &e.path).collect::<Vec<_>>()
        != got.entries.iter().map(|e| &e.path).collect::<Vec<_>>()
        && out.is_empty()
    {
        out.push("listing order differs".into());
    }
    if out.is_empty() {
        "no difference".into()
    } else {
        out.join("; ")
    }
}

/// Name of an error variant, for messages and comparisons.
pub fn err_kind(e: &Error) -> &'static str {
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
        Error::LastKey => "LastKey",
        Error::Poisoned => "Poisoned",
        _ => "other",
    }
}
