//! Hostile archives: built by someone who knows the key, through the
//! `lockbox::testing` hooks (`seal`, `commit_roots`) or, where the hooks
//! cannot express it (a chosen codec byte, a lying `raw_len`, a pack
//! reference tree), through `fuzz/src/forge.rs`, an independent writer of
//! the format. Each must be refused with a typed error — never a panic, a
//! hang, a huge allocation or wrong data — and `verify()` must fail too.
//!
//! A control archive built the same way but well formed reads and
//! verifies, so the refusals below are caused by the hostile part and not
//! by the way the archives are built.
//!
//! Tests whose name starts with `child_` do nothing unless the parent test
//! starts them in a subprocess (for calls that may abort the process).
//!
//! The cases are grouped by what they attack: `toc` (TOC nodes, keys,
//! tree shape), `data` (file lengths, frame indexes, packs, zstd streams),
//! `extract` (symlink targets and extraction of hostile trees) and
//! `write_path` (free-space index, frames to repack, slot tables,
//! compaction). This file holds the builders and probes they share and
//! the control.

#[path = "../../fuzz/src/drivers.rs"]
mod drivers;
#[path = "../../fuzz/src/forge.rs"]
mod forge;

mod data;
mod extract;
mod toc;
mod write_path;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drivers::{Hostile, Scratch, key};
use forge::{Content, Ptr, Record};
use lockbox::testing::{self, kind};
use lockbox::{Error, ExtractOptions, Lockbox};

// ---------------------------------------------------------------------------
// Allocation tracking (per thread: other tests run in parallel)
// ---------------------------------------------------------------------------

struct Tracking;

thread_local! {
    /// Largest single allocation (successful) on this thread while tracking.
    static BIGGEST: Cell<usize> = const { Cell::new(0) };
    static TRACK: Cell<bool> = const { Cell::new(false) };
}

fn note(size: usize) {
    let _ = TRACK.try_with(|t| {
        if t.get() {
            let _ = BIGGEST.try_with(|b| b.set(b.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            note(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            note(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            note(new);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Runs `f` and returns its result with the largest single allocation it
/// made on this thread.
fn biggest_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    BIGGEST.with(|b| b.set(0));
    TRACK.with(|t| t.set(true));
    let r = f();
    TRACK.with(|t| t.set(false));
    (r, BIGGEST.with(|b| b.get()))
}

// ---------------------------------------------------------------------------
// Building hostile archives
// ---------------------------------------------------------------------------

/// Builds an archive from an empty lockbox: every region sealed through
/// the hooks is placed at the tail, so a well-formed result tiles the
/// data area exactly and verifies.
struct Build {
    lb: Lockbox,
}

impl Build {
    fn new() -> Build {
        Build {
            lb: Lockbox::builder().create_in_memory(key()).expect("create"),
        }
    }
    fn seal(&mut self, k: u8, plain: &[u8]) -> Ptr {
        Ptr::decode(&testing::seal(&mut self.lb, k, plain).expect("seal"))
    }
    /// A TOC leaf from (key, encoded value) pairs, exactly in this order.
    fn leaf(&mut self, entries: &[(&[u8], Vec<u8>)]) -> Ptr {
        let e: Vec<(Vec<u8>, Vec<u8>)> = entries
            .iter()
            .map(|(k, v)| (k.to_vec(), v.clone()))
            .collect();
        self.seal(kind::TOC_NODE, &forge::leaf(&e))
    }
    fn var_leaf(&mut self, entries: &[(&[u8], Vec<u8>)]) -> Ptr {
        let e: Vec<(Vec<u8>, Vec<u8>)> = entries
            .iter()
            .map(|(k, v)| (k.to_vec(), v.clone()))
            .collect();
        self.seal(kind::VAR_NODE, &forge::leaf(&e))
    }
    fn internal(&mut self, level: u8, children: &[(&[u8], Ptr)]) -> Ptr {
        let c: Vec<(Vec<u8>, Ptr)> = children.iter().map(|(k, p)| (k.to_vec(), *p)).collect();
        self.seal(kind::TOC_NODE, &forge::internal(level, &c))
    }
    fn frame(&mut self, bytes: &[u8]) -> Ptr {
        self.seal(kind::FRAME, bytes)
    }
    /// Generation of the regions being sealed (the next commit).
    fn generation(&self) -> u64 {
        self.lb.sequence() + 1
    }
    /// Commits the roots and returns the image.
    fn image(self, toc: Option<(Ptr, u32, u64)>, vars: Option<(Ptr, u32, u64)>) -> Vec<u8> {
        self.image_with_refs(toc, vars, &[])
    }
    /// [`image`](Self::image) with a one-leaf pack-reference tree holding
    /// these member references (sorted by the caller).
    fn image_with_refs(
        mut self,
        toc: Option<(Ptr, u32, u64)>,
        vars: Option<(Ptr, u32, u64)>,
        refs: &[(Vec<u8>, Vec<u8>)],
    ) -> Vec<u8> {
        let packs = (!refs.is_empty()).then(|| {
            let leaf = self.seal(kind::PACK_NODE, &forge::leaf(refs));
            (leaf, 1, refs.len() as u64)
        });
        let r = |x: Option<(Ptr, u32, u64)>| x.map(|(p, h, c)| (p.encode(), h, c));
        testing::commit_trees(&mut self.lb, r(toc), r(vars), r(packs)).expect("commit_trees");
        self.lb.image().expect("image")
    }
}

/// A file record of `len` bytes over `frame_size`-byte frames reached
/// through `depth` levels of index pages from `root`.
fn framed(len: u64, frame_size: u32, depth: u8, root: Ptr) -> Record {
    Record::file(
        len,
        Content::Frames {
            frame_size,
            depth,
            root,
        },
    )
}

fn open(image: Vec<u8>) -> lockbox::Result<Lockbox> {
    Lockbox::builder().open_bytes(image, key())
}

fn name(e: &Error) -> &'static str {
    match e {
        Error::Corrupt { .. } => "Corrupt",
        Error::InvalidPath { .. } => "InvalidPath",
        Error::LimitExceeded { .. } => "LimitExceeded",
        Error::NotFound(_) => "NotFound",
        Error::Io(_) => "Io",
        Error::NotAFile(_) => "NotAFile",
        Error::AlreadyExists(_) => "AlreadyExists",
        Error::WrongKey => "WrongKey",
        Error::UnsupportedVersion { .. } => "UnsupportedVersion",
        Error::NotALockbox => "NotALockbox",
        Error::InvalidKdfParams(_) => "InvalidKdfParams",
        Error::NotADirectory(_) => "NotADirectory",
        _ => "other",
    }
}

const CORRUPT: &[&str] = &["Corrupt"];
const PATHISH: &[&str] = &["Corrupt", "InvalidPath"];

/// One read to try on a hostile archive.
#[derive(Clone, Debug)]
enum Probe {
    /// `list("")`, all of it: some item must fail.
    List,
    Get(&'static str),
    /// `read_at(path, offset)` into a 4 KiB buffer.
    ReadAt(&'static str, u64),
    CopyTo(&'static str),
    Stat(&'static str),
    Var(&'static str),
    Vars,
    Verify,
}

/// Runs `f` on another thread; fails the test if it does not finish in
/// `secs` (a hang) or panics.
/// Allocation tracking follows the call onto that thread.
fn timed<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let tracking = TRACK.with(|t| t.get());
    std::thread::spawn(move || {
        TRACK.with(|t| t.set(tracking));
        BIGGEST.with(|b| b.set(0));
        let r = catch_unwind(AssertUnwindSafe(f));
        TRACK.with(|t| t.set(false));
        let _ = tx.send((r, BIGGEST.with(|b| b.get())));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok((r, big)) if tracking => {
            BIGGEST.with(|b| b.set(b.get().max(big)));
            match r {
                Ok(v) => v,
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        Ok((Ok(v), _)) => v,
        Ok((Err(p), _)) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: lockbox PANICKED: {msg}")
        }
        Err(_) => panic!("{what}: no answer within {secs} s (hang)"),
    }
}

/// Result of a probe as `Ok(description)` or `Err(error name)`.
fn run_probe(lb: &Lockbox, p: &Probe) -> Result<String, (&'static str, String)> {
    let e = |x: Error| (name(&x), x.to_string());
    match p {
        Probe::List => {
            let mut n = 0;
            for item in lb.list("").map_err(e)? {
                item.map_err(e)?;
                n += 1;
            }
            Ok(format!("{n} entries"))
        }
        Probe::Get(path) => lb
            .get(path)
            .map(|v| format!("{} bytes", v.len()))
            .map_err(e),
        Probe::ReadAt(path, off) => {
            let mut buf = vec![0u8; 4096];
            lb.read_at(path, *off, &mut buf)
                .map(|n| format!("{n} bytes"))
                .map_err(e)
        }
        Probe::CopyTo(path) => {
            let mut sink = std::io::sink();
            lb.copy_to(path, &mut sink)
                .map(|n| format!("{n} bytes"))
                .map_err(e)
        }
        Probe::Stat(path) => lb.stat(path).map(|s| format!("{s:?}")).map_err(e),
        Probe::Var(n) => lb
            .var(n)
            .map(|v| format!("{:?}", v.map(|v| v.len())))
            .map_err(e),
        Probe::Vars => {
            let mut n = 0;
            for item in lb.vars().map_err(e)? {
                item.map_err(e)?;
                n += 1;
            }
            Ok(format!("{n} variables"))
        }
        Probe::Verify => lb.verify().map(|r| format!("{r:?}")).map_err(e),
    }
}

/// The archive must be refused: `open` fails with one of `want`, or it
/// opens and every probe (and `verify`) fails with one of `want`. Each
/// call must answer within 10 s and not panic. Returns the errors seen.
fn refused(case: &str, image: Vec<u8>, probes: &[Probe], want: &[&str]) -> Vec<String> {
    let c = case.to_string();
    let lb = match timed(10, &format!("{case}: open"), move || open(image)) {
        Ok(lb) => Arc::new(lb),
        Err(e) => {
            assert!(
                want.contains(&name(&e)),
                "{c}: open failed with {} ({e}), expected one of {want:?}",
                name(&e)
            );
            eprintln!("[hostile] {case}: open refused: {e}");
            return vec![format!("open: {}", name(&e))];
        }
    };
    let mut seen = Vec::new();
    let mut probes = probes.to_vec();
    probes.push(Probe::Verify);
    for p in probes {
        let l = lb.clone();
        let pp = p.clone();
        let r = timed(10, &format!("{case}: {p:?}"), move || run_probe(&l, &pp));
        match r {
            Ok(d) => panic!(
                "{case}: {p:?} ACCEPTED the hostile archive ({d}); expected an error in {want:?}"
            ),
            Err((n, msg)) => {
                assert!(
                    want.contains(&n),
                    "{case}: {p:?} failed with {n} ({msg}); expected one of {want:?}"
                );
                let why = msg
                    .split(" at byte offset")
                    .next()
                    .unwrap_or(&msg)
                    .trim_start_matches("lockbox is damaged: ");
                seen.push(format!("{p:?}: {n} ({why})"));
            }
        }
    }
    eprintln!("[hostile] {case}: {seen:?}");
    seen
}

fn file(bytes: &[u8]) -> Vec<u8> {
    Record::inline_file(bytes).encode()
}

/// A two-level TOC: an internal root over a good leaf (`a`, `b`) and the
/// given second leaf (separator `m`). Returns the image.
fn under_good_root(second_leaf: &[u8]) -> Vec<u8> {
    let mut b = Build::new();
    let good = b.leaf(&[(b"a", file(b"A")), (b"b", file(b"B"))]);
    let bad = b.seal(kind::TOC_NODE, second_leaf);
    let root = b.internal(1, &[(b"", good), (b"m", bad)]);
    b.image(Some((root, 2, 4)), None)
}

fn leaf_plain(entries: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
    let e: Vec<(Vec<u8>, Vec<u8>)> = entries
        .iter()
        .map(|(k, v)| (k.to_vec(), v.clone()))
        .collect();
    forge::leaf(&e)
}

// ---------------------------------------------------------------------------
// The control: hooks build archives that read and verify
// ---------------------------------------------------------------------------

#[test]
fn control_well_formed_archive_from_hooks_reads_and_verifies() {
    let mut b = Build::new();
    let small = drivers::content(3, 5000);
    let f1 = b.frame(&small);
    let big: Vec<u8> = drivers::content(4, 65536 + 100);
    let fa = b.frame(&big[..65536]);
    let fb = b.frame(&big[65536..]);
    let idx = b.seal(kind::FRAME_INDEX, &forge::index_page(&[fa, fb]));
    let leaf1 = b.leaf(&[
        (b"a", file(b"alpha")),
        (b"d", Record::dir().encode()),
        (b"d\0l", Record::symlink(b"../a").encode()),
    ]);
    let leaf2 = b.leaf(&[
        (b"m", framed(5000, 65536, 0, f1).encode()),
        (b"n", framed(big.len() as u64, 65536, 1, idx).encode()),
    ]);
    let root = b.internal(1, &[(b"", leaf1), (b"m", leaf2)]);
    let vleaf = b.var_leaf(&[(b"v", forge::var_value(3, &Content::Inline(b"val".to_vec())))]);
    let mut refs = vec![
        forge::member_ref(f1.offset, b'T', b"m"),
        forge::member_ref(idx.offset, b'T', b"n"),
    ];
    refs.sort();
    let img = b.image_with_refs(Some((root, 2, 5)), Some((vleaf, 1, 1)), &refs);
    let lb = open(img).expect("open control");
    assert_eq!(lb.get("a").unwrap(), b"alpha");
    assert_eq!(lb.get("m").unwrap(), small);
    assert_eq!(lb.get("n").unwrap(), big);
    assert_eq!(lb.var("v").unwrap().unwrap(), b"val");
    let listed: Vec<String> = lb.list("").unwrap().map(|e| e.unwrap().path).collect();
    assert_eq!(listed, ["a", "d", "d/l", "m", "n"]);
    let r = lb
        .verify()
        .expect("a well-formed archive built with the hooks must verify");
    assert_eq!((r.entries, r.variables), (5, 1));
    let scratch = Scratch::new("hostile-control");
    lb.extract_to_directory(scratch.dest(), &ExtractOptions::default())
        .expect("extract control");
    assert_eq!(std::fs::read(scratch.dest().join("n")).unwrap(), big);
}
