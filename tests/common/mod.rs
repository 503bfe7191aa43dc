//! Shared helpers for the integration tests (deterministic generators, backend
//! harness, error classification, path ordering).
#![allow(dead_code)]

#[path = "../draw/mod.rs"]
mod draw;
pub use draw::Draw;
#[path = "../paths/mod.rs"]
mod paths;
pub use paths::{has_children, subtree};

use lockbox::{Entry, Error, Key, Lockbox};
use std::cmp::Ordering;
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// The raw key used everywhere a passphrase is not the point.
pub fn key() -> Key {
    Key::raw([7u8; 32])
}

// ---------------------------------------------------------------------------
// Deterministic pseudo-random numbers (xorshift64*)
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
        if s == 0 {
            s = 0x1234_5678;
        }
        let mut x = XorShift(s);
        x.next_u64();
        x.next_u64();
        x
    }
}

impl Draw for XorShift {
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Deterministic content of `len` bytes. The style (random, text-like, runs)
/// depends on the seed so that some content compresses and some does not.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift::new(seed.wrapping_mul(31).wrapping_add(len as u64));
    match seed % 3 {
        0 => rng.bytes(len),
        1 => {
            const WORDS: [&str; 8] = [
                "lorem ", "ipsum ", "dolor ", "sit ", "amet,\n", "lockbox ", "frame ", "page ",
            ];
            let mut v = Vec::with_capacity(len + 8);
            while v.len() < len {
                v.extend_from_slice(rng.pick(&WORDS).as_bytes());
            }
            v.truncate(len);
            v
        }
        _ => {
            let mut v = Vec::with_capacity(len);
            while v.len() < len {
                let b = rng.next_u64() as u8;
                let run = rng.range(1, 64);
                for _ in 0..run {
                    if v.len() == len {
                        break;
                    }
                    v.push(b);
                }
            }
            v
        }
    }
}

// ---------------------------------------------------------------------------
// A long deterministic byte stream, for large files that must not be
// materialised in memory. Every 64 KiB block is either compressible or random.
// ---------------------------------------------------------------------------

pub struct ByteStream {
    seed: u64,
    pos: u64,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl ByteStream {
    pub fn new(seed: u64) -> Self {
        ByteStream {
            seed: splitmix(seed),
            pos: 0,
        }
    }

    /// The stream of `seed` from position `pos` on.
    pub fn at(seed: u64, pos: u64) -> Self {
        ByteStream {
            seed: splitmix(seed),
            pos,
        }
    }

    /// The byte at absolute position `p` (independent of how the stream is
    /// chunked).
    fn word(&self, w: u64) -> [u8; 8] {
        splitmix(self.seed ^ w.wrapping_mul(0xD6E8_FEB8_6659_FD93)).to_le_bytes()
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut i = 0;
        while i < buf.len() {
            let block = self.pos / 65536;
            let in_block = (65536 - self.pos % 65536) as usize;
            let n = in_block.min(buf.len() - i);
            let out = &mut buf[i..i + n];
            if block.is_multiple_of(4) {
                // compressible
                for (k, b) in out.iter_mut().enumerate() {
                    let p = self.pos + k as u64;
                    *b = ((p % 251) as u8) ^ ((block as u8) & 0x0f);
                }
            } else {
                let mut k = 0;
                while k < n {
                    let p = self.pos + k as u64;
                    let w = self.word(p / 8);
                    let from = (p % 8) as usize;
                    let take = (8 - from).min(n - k);
                    out[k..k + take].copy_from_slice(&w[from..from + take]);
                    k += take;
                }
            }
            self.pos += n as u64;
            i += n;
        }
    }
}

/// A `Read` producing `len` bytes of a [`ByteStream`], in reads of at most
/// `max_chunk` bytes.
pub struct GenReader {
    stream: ByteStream,
    remaining: u64,
    max_chunk: usize,
}

impl GenReader {
    pub fn new(seed: u64, len: u64) -> Self {
        GenReader {
            stream: ByteStream::new(seed),
            remaining: len,
            max_chunk: usize::MAX,
        }
    }
    pub fn with_max_chunk(mut self, max_chunk: usize) -> Self {
        self.max_chunk = max_chunk.max(1);
        self
    }
}

impl Read for GenReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64)
            .min(self.remaining)
            .min(self.max_chunk as u64) as usize;
        self.stream.fill(&mut buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A `Write` that compares everything written to it with the same
/// [`ByteStream`], without storing the data.
pub struct CompareWriter {
    stream: ByteStream,
    pub written: u64,
    expected_len: u64,
    scratch: Vec<u8>,
    pub first_mismatch: Option<u64>,
}

impl CompareWriter {
    pub fn new(seed: u64, expected_len: u64) -> Self {
        CompareWriter {
            stream: ByteStream::new(seed),
            written: 0,
            expected_len,
            scratch: Vec::new(),
            first_mismatch: None,
        }
    }

    pub fn finish(&self, what: &str) {
        assert_eq!(
            self.first_mismatch, None,
            "{what}: content differs from the generated stream (first differing offset shown)"
        );
        assert_eq!(
            self.written, self.expected_len,
            "{what}: wrong number of bytes written"
        );
    }
}

impl Write for CompareWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let n = (buf.len() - done).min(1 << 16);
            if self.written + n as u64 > self.expected_len {
                if self.first_mismatch.is_none() {
                    self.first_mismatch = Some(self.expected_len);
                }
                self.written += n as u64;
                done += n;
                continue;
            }
            self.scratch.resize(n, 0);
            self.stream.fill(&mut self.scratch[..n]);
            if self.first_mismatch.is_none() && self.scratch[..n] != buf[done..done + n] {
                let k = self.scratch[..n]
                    .iter()
                    .zip(&buf[done..done + n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                self.first_mismatch = Some(self.written + k as u64);
            }
            self.written += n as u64;
            done += n;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

/// Component-wise path order: '/' sorts below every other byte.
pub fn cmp_paths(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The error of a result that must have failed.
pub fn expect_err<T>(r: lockbox::Result<T>, what: &str) -> Error {
    match r {
        Ok(_) => panic!("{what}: expected an error, got Ok"),
        Err(e) => e,
    }
}

/// The variant name of an error, for messages and for sets of acceptable errors.
pub fn err_name(e: &Error) -> &'static str {
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
        Error::Poisoned => "Poisoned",
        _ => "Other",
    }
}

pub fn list_all(lb: &Lockbox, prefix: &str) -> Vec<Entry> {
    lb.list(prefix)
        .unwrap_or_else(|e| panic!("list({prefix:?}) failed: {e:?}"))
        .collect::<lockbox::Result<Vec<Entry>>>()
        .unwrap_or_else(|e| panic!("list({prefix:?}) item failed: {e:?}"))
}

// ---------------------------------------------------------------------------
// Memory statistics (Linux only)
// ---------------------------------------------------------------------------

/// A field of /proc/self/status in KiB (e.g. "VmRSS", "RssAnon"), if available.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let num = rest.trim().trim_end_matches("kB").trim();
            return num.parse().ok();
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    File,
    Memory,
}

/// A lockbox on either backend that can be dropped and reopened from its
/// durable (committed) state.
pub struct Harness {
    pub backend: Backend,
    dir: Option<tempfile::TempDir>,
    pub path: PathBuf,
    lb: Option<Lockbox>,
}

impl Harness {
    pub fn create(backend: Backend) -> Self {
        match backend {
            Backend::File => {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("test.lbox");
                let lb = Lockbox::create(&path, key()).expect("Lockbox::create");
                Harness {
                    backend,
                    dir: Some(dir),
                    path,
                    lb: Some(lb),
                }
            }
            Backend::Memory => {
                let lb = Lockbox::builder()
                    .create_in_memory(key())
                    .expect("create_in_memory");
                Harness {
                    backend,
                    dir: None,
                    path: PathBuf::new(),
                    lb: Some(lb),
                }
            }
        }
    }

    pub fn lb(&self) -> &Lockbox {
        self.lb.as_ref().expect("lockbox handle")
    }

    pub fn lb_mut(&mut self) -> &mut Lockbox {
        self.lb.as_mut().expect("lockbox handle")
    }

    /// Drop the handle (staged changes are lost) and open the durable state again.
    pub fn reopen(&mut self) {
        let lb = self.lb.take().expect("lockbox handle");
        match self.backend {
            Backend::File => {
                drop(lb);
                self.lb = Some(Lockbox::open(&self.path, key()).expect("Lockbox::open (reopen)"));
            }
            Backend::Memory => {
                let img = lb.image().expect("image()");
                drop(lb);
                self.lb = Some(
                    Lockbox::builder()
                        .open_bytes(img, key())
                        .expect("open_bytes (reopen)"),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reference state for the crash and fault tests (tests/crash.rs,
// tests/faults.rs): what a lockbox holds, observed through the public API.
// ---------------------------------------------------------------------------

/// One stored entry of a reference state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefNode {
    File(Vec<u8>),
    Symlink(String),
    Dir,
}

/// The visible state of a lockbox: stored entries (explicit records, as
/// `list("")` returns them) and variables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefState {
    pub entries: std::collections::BTreeMap<String, RefNode>,
    pub vars: std::collections::BTreeMap<String, Vec<u8>>,
}

impl RefState {
    /// Whether `p` is a stored entry or the implicit parent of one.
    pub fn exists(&self, p: &str) -> bool {
        self.entries.contains_key(p) || self.has_children(p)
    }

    pub fn has_children(&self, p: &str) -> bool {
        has_children(&self.entries, p)
    }

    /// Stored keys at or below `p` (`""`: all).
    pub fn subtree(&self, p: &str) -> Vec<String> {
        subtree(&self.entries, p)
    }

    /// A one-line summary (paths with kinds and lengths, variable names
    /// with lengths) for failure messages.
    pub fn summary(&self) -> String {
        let e: Vec<String> = self
            .entries
            .iter()
            .map(|(p, n)| match n {
                RefNode::File(d) => format!("{p}:f{}", d.len()),
                RefNode::Symlink(t) => format!("{p}->{t}"),
                RefNode::Dir => format!("{p}/"),
            })
            .collect();
        let v: Vec<String> = self
            .vars
            .iter()
            .map(|(k, v)| format!("{k}={}B", v.len()))
            .collect();
        format!("entries [{}] vars [{}]", e.join(", "), v.join(", "))
    }

    /// What differs between `self` (wanted) and `got`, briefly.
    pub fn diff(&self, got: &RefState) -> String {
        let mut out = Vec::new();
        for (p, n) in &self.entries {
            match got.entries.get(p) {
                None => out.push(format!("missing {p}")),
                Some(g) if g != n => out.push(format!(
                    "{p}: want {}, got {}",
                    node_brief(n),
                    node_brief(g)
                )),
                _ => {}
            }
        }
        for (p, g) in &got.entries {
            if !self.entries.contains_key(p) {
                out.push(format!("unexpected {p} ({})", node_brief(g)));
            }
        }
        for (k, v) in &self.vars {
            match got.vars.get(k) {
                None => out.push(format!("missing var {k}")),
                Some(g) if g != v => out.push(format!(
                    "var {k}: want {} bytes, got {} bytes (differing)",
                    v.len(),
                    g.len()
                )),
                _ => {}
            }
        }
        for k in got.vars.keys() {
            if !self.vars.contains_key(k) {
                out.push(format!("unexpected var {k}"));
            }
        }
        if out.is_empty() {
            "no difference".into()
        } else {
            out.join("; ")
        }
    }
}

fn node_brief(n: &RefNode) -> String {
    match n {
        RefNode::File(d) => format!("file of {} bytes (blake3 {})", d.len(), short_hash(d)),
        RefNode::Symlink(t) => format!("symlink -> {t:?}"),
        RefNode::Dir => "dir".into(),
    }
}

fn short_hash(d: &[u8]) -> String {
    blake3::hash(d).to_hex()[..12].to_string()
}

/// Reads the whole visible state of `lb` (staged changes included): every
/// entry of `list("")` with its kind and length, `get` of every file, every
/// symlink target, every variable. Any error, or an entry whose listed
/// length disagrees with its content, is returned as a message.
pub fn observe(lb: &Lockbox) -> Result<RefState, String> {
    use lockbox::EntryKind;
    let mut st = RefState::default();
    let listed = lb
        .list("")
        .map_err(|e| format!("list(\"\"): {e:?}"))?
        .collect::<lockbox::Result<Vec<Entry>>>()
        .map_err(|e| format!("list(\"\") item: {e:?}"))?;
    for e in listed {
        let node = match e.kind {
            EntryKind::File => {
                let d = lb
                    .get(&e.path)
                    .map_err(|err| format!("get({:?}): {err:?}", e.path))?;
                if d.len() as u64 != e.len {
                    return Err(format!(
                        "{:?}: listed length {} but get returned {} bytes",
                        e.path,
                        e.len,
                        d.len()
                    ));
                }
                RefNode::File(d)
            }
            EntryKind::Symlink => {
                let t = e
                    .target
                    .clone()
                    .ok_or_else(|| format!("symlink {:?} without a target", e.path))?;
                if t.len() as u64 != e.len {
                    return Err(format!(
                        "symlink {:?}: listed length {} but target has {} bytes",
                        e.path,
                        e.len,
                        t.len()
                    ));
                }
                RefNode::Symlink(t)
            }
            EntryKind::Dir => RefNode::Dir,
        };
        if st.entries.insert(e.path.clone(), node).is_some() {
            return Err(format!("list(\"\") returned {:?} twice", e.path));
        }
    }
    for item in lb.vars().map_err(|e| format!("vars(): {e:?}"))? {
        let (k, v) = item.map_err(|e| format!("vars() item: {e:?}"))?;
        st.vars.insert(k, v);
    }
    Ok(st)
}

/// The message of a caught panic.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

// ---------------------------------------------------------------------------
// The (subkey, nonce) recorder
// ---------------------------------------------------------------------------

/// Takes the sealings `lockbox::testing` recorded for `archive` (and its
/// compacted copies and reopened images, which keep its id and keys).
/// Returns how many there were, or an error naming the (subkey, nonce)
/// pairs used twice.
pub fn take_nonce_pairs(
    rec: &lockbox::testing::Recording,
    archive: &[u8; 16],
) -> Result<usize, String> {
    let got = rec.take(archive);
    if got.repeats().is_empty() {
        return Ok(got.sealings());
    }
    let shown: Vec<String> = got
        .repeats()
        .iter()
        .take(5)
        .map(|(k, n)| {
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            format!("subkey {} nonce {}", hex(k), hex(n))
        })
        .collect();
    Err(format!(
        "{} of {} sealings reused a (subkey, nonce) pair, e.g. {shown:?}",
        got.repeats().len(),
        got.sealings()
    ))
}
