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

#[path = "../fuzz/src/drivers.rs"]
mod drivers;
#[path = "../fuzz/src/forge.rs"]
mod forge;

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
    fn image(mut self, toc: Option<(Ptr, u32, u64)>, vars: Option<(Ptr, u32, u64)>) -> Vec<u8> {
        let r = |x: Option<(Ptr, u32, u64)>| x.map(|(p, h, c)| (p.encode(), h, c));
        testing::commit_roots(&mut self.lb, r(toc), r(vars)).expect("commit_roots");
        self.lb.image().expect("image")
    }
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
        (
            b"m",
            Record::file(
                5000,
                Content::Frames {
                    frame_size: 65536,
                    depth: 0,
                    root: f1,
                },
            )
            .encode(),
        ),
        (
            b"n",
            Record::file(
                big.len() as u64,
                Content::Frames {
                    frame_size: 65536,
                    depth: 1,
                    root: idx,
                },
            )
            .encode(),
        ),
    ]);
    let root = b.internal(1, &[(b"", leaf1), (b"m", leaf2)]);
    let vleaf = b.var_leaf(&[(b"v", forge::var_value(3, &Content::Inline(b"val".to_vec())))]);
    let img = b.image(Some((root, 2, 5)), Some((vleaf, 1, 1)));
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

// ---------------------------------------------------------------------------
// TOC nodes: order, duplicates, counts, lengths
// ---------------------------------------------------------------------------

#[test]
fn leaf_keys_out_of_order() {
    let bad = leaf_plain(&[(b"x", file(b"1")), (b"q", file(b"2"))]);
    // As the root: open refuses (the root is read at open).
    let mut b = Build::new();
    let p = b.seal(kind::TOC_NODE, &bad);
    refused(
        "out of order (root)",
        b.image(Some((p, 1, 2)), None),
        &[Probe::List],
        CORRUPT,
    );
    // Below a good root.
    refused(
        "out of order (second leaf)",
        under_good_root(&bad),
        &[Probe::List, Probe::Get("x"), Probe::Stat("q")],
        CORRUPT,
    );
}

#[test]
fn leaf_duplicate_keys() {
    let bad = leaf_plain(&[(b"x", file(b"1")), (b"x", file(b"22"))]);
    refused(
        "duplicate keys",
        under_good_root(&bad),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
}

#[test]
fn internal_separators_duplicate_or_unordered() {
    let mut b = Build::new();
    let l1 = b.leaf(&[(b"a", file(b"A"))]);
    let l2 = b.leaf(&[(b"c", file(b"C"))]);
    let root = b.internal(1, &[(b"", l1), (b"c", l2), (b"b", l1)]);
    refused(
        "unordered separators",
        b.image(Some((root, 2, 3)), None),
        &[Probe::List],
        CORRUPT,
    );
}

/// A leaf whose keys lie outside the range its parent's separators give
/// it. Reads must not return entries out of path order, nor answer
/// `list` and `stat`/`get` differently for one path.
#[test]
fn leaf_keys_outside_parent_separators() {
    let mut b = Build::new();
    let l1 = b.leaf(&[(b"a", file(b"first")), (b"z", file(b"in the first leaf"))]);
    let l2 = b.leaf(&[(b"b", file(b"second")), (b"z", file(b"in the second leaf"))]);
    let root = b.internal(1, &[(b"", l1), (b"m", l2)]);
    let img = b.image(Some((root, 2, 4)), None);
    separators_checked("keys outside their separators", img);
    // One subtree shared under two separators: every entry appears twice.
    let mut b = Build::new();
    let leaf = b.leaf(&[(b"a", file(b"A")), (b"c", file(b"C"))]);
    let mid = b.internal(1, &[(b"", leaf)]);
    let root = b.internal(2, &[(b"", mid), (b"b", mid)]);
    separators_checked(
        "shared subtree under two separators",
        b.image(Some((root, 3, 4)), None),
    );
}

fn separators_checked(case: &str, img: Vec<u8>) {
    let lb = open(img).expect("the root is well formed");
    assert!(
        lb.verify().is_err(),
        "verify() must refuse keys outside their separators"
    );
    let mut listed = Vec::new();
    let mut list_err = None;
    for item in lb.list("").unwrap() {
        match item {
            Ok(e) => listed.push(e.path),
            Err(e) => {
                list_err = Some(name(&e));
                break;
            }
        }
    }
    eprintln!("[hostile] {case}: list {listed:?}, error {list_err:?}");
    let keys: Vec<Vec<u8>> = listed.iter().map(|p| forge::key_of(p)).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "{case}: list(\"\") returned {listed:?} without an error: not in strictly ascending \
         path order (keys are not checked against their parent's separators)"
    );
    for p in &listed {
        let s = lb.stat(p);
        assert!(
            matches!(s, Ok(Some(_)) | Err(Error::Corrupt { .. })),
            "{case}: list(\"\") shows {p:?} but stat() says {s:?}"
        );
    }
}

#[test]
fn node_claims_four_billion_entries() {
    let mut bad = leaf_plain(&[(b"x", file(b"1"))]);
    bad[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut b = Build::new();
    let p = b.seal(kind::TOC_NODE, &bad);
    let (_, biggest) = biggest_alloc(|| {
        refused(
            "count 2^32-1 (root)",
            b.image(Some((p, 1, 1)), None),
            &[],
            CORRUPT,
        )
    });
    assert!(
        biggest < 64 << 20,
        "a node claiming 4 billion entries allocated {biggest} bytes"
    );
    refused(
        "count 2^32-1 (second leaf)",
        under_good_root(&bad),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
    // Count one more than present, and one fewer (trailing bytes).
    let two = leaf_plain(&[(b"x", file(b"1")), (b"y", file(b"2"))]);
    let mut more = two.clone();
    more[1..5].copy_from_slice(&3u32.to_le_bytes());
    refused(
        "count too high",
        under_good_root(&more),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
    let mut fewer = two;
    fewer[1..5].copy_from_slice(&1u32.to_le_bytes());
    refused(
        "count too low",
        under_good_root(&fewer),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
}

/// The commit record's entry count lies: reads are unaffected (they never
/// use it), `verify` refuses.
#[test]
fn commit_record_count_lies() {
    let mut b = Build::new();
    let l = b.leaf(&[(b"a", file(b"A"))]);
    let lb = open(b.image(Some((l, 1, u32::MAX as u64 + 7)), None)).unwrap();
    assert_eq!(lb.get("a").unwrap(), b"A");
    assert!(matches!(lb.verify(), Err(Error::Corrupt { .. })));
}

#[test]
fn value_length_lies() {
    // value_len far beyond the node.
    let mut huge = leaf_plain(&[(b"x", file(b"1"))]);
    // level(1) count(4) shared(2) suffix_len(2) key(1) -> value_len at 10.
    huge[10..14].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    refused(
        "value_len 2^32-16",
        under_good_root(&huge),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
    let mut over = leaf_plain(&[(b"x", file(b"1"))]);
    let vl = u32::from_le_bytes(over[10..14].try_into().unwrap());
    over[10..14].copy_from_slice(&(vl + 3).to_le_bytes());
    refused(
        "value_len +3",
        under_good_root(&over),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
    // Record lengths that lie about inline content.
    let mut r = Record::inline_file(b"hello");
    r.len = 9;
    refused(
        "inline len > bytes",
        under_good_root(&leaf_plain(&[(b"x", r.encode())])),
        &[Probe::Get("x"), Probe::List],
        CORRUPT,
    );
    let mut r = Record::inline_file(b"hello");
    r.len = 2;
    refused(
        "inline len < bytes",
        under_good_root(&leaf_plain(&[(b"x", r.encode())])),
        &[Probe::Get("x"), Probe::List],
        CORRUPT,
    );
    // Unknown kinds: no device files or other kinds.
    let mut r = Record::inline_file(b"hello");
    r.kind = 4;
    refused(
        "entry kind 4",
        under_good_root(&leaf_plain(&[(b"x", r.encode())])),
        &[Probe::Get("x"), Probe::List],
        CORRUPT,
    );
    // A variable whose value lies.
    let mut v = forge::var_value(5, &Content::Inline(b"hello".to_vec()));
    v[0] = 50;
    let mut b = Build::new();
    let vl = b.var_leaf(&[(b"v", v)]);
    refused(
        "variable len lies",
        b.image(None, Some((vl, 1, 1))),
        &[Probe::Var("v"), Probe::Vars],
        CORRUPT,
    );
}

// ---------------------------------------------------------------------------
// Keys that are not valid paths
// ---------------------------------------------------------------------------

/// Stored keys use 0x00 for '/'. Each of these is a name `put` refuses.
const BAD_KEYS: &[(&str, &[u8])] = &[
    ("dotdot", b"a\0..\0b"),
    ("leading dotdot", b"..\0escape"),
    ("dot", b"a\0.\0b"),
    ("empty component", b"a\0\0b"),
    ("trailing slash", b"a\0"),
    ("absolute", b"\0abs"),
    ("double absolute", b"\0\0abs"),
    ("empty key", b""),
    ("backslash", b"a\\b"),
    ("not UTF-8", b"a\xff\xfe"),
    // A literal '/' (0x2F) is not how a key spells a separator: `li/k`
    // would list as the path "li/k", whose key is `li\0k`.
    ("literal slash", b"li/k"),
];

#[test]
fn keys_that_are_not_valid_paths() {
    let long = [b'x'; 256];
    let mut cases: Vec<(&str, Vec<u8>)> = BAD_KEYS.iter().map(|(n, k)| (*n, k.to_vec())).collect();
    cases.push(("component of 256 bytes", long.to_vec()));
    let mut failures = Vec::new();
    for (case, k) in cases {
        let mut b = Build::new();
        // Sorted, so only the key itself is wrong.
        let mut e: Vec<(&[u8], Vec<u8>)> = vec![(b"a0", file(b"A")), (&k, file(b"hostile"))];
        e.sort_by(|x, y| x.0.cmp(y.0));
        let l = b.leaf(&e);
        let img = b.image(Some((l, 1, 2)), None);
        let r = catch_unwind(AssertUnwindSafe(|| {
            refused(&format!("key {case} {k:?}"), img, &[Probe::List], PATHISH)
        }));
        if let Err(p) = r {
            let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
            failures.push(msg);
        }
    }
    assert!(
        failures.is_empty(),
        "{} key(s) accepted:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Tree shape: cycles, levels, depth bombs
// ---------------------------------------------------------------------------

#[test]
fn child_pointer_back_to_itself() {
    // The root is sealed right after the leaf, at the leaf's end; a root of
    // one child is under 64 bytes, so it is stored uncompressed and its
    // sealed length is known. The tag cannot be known before sealing.
    let mut b = Build::new();
    let leaf = b.leaf(&[(b"a", file(b"A"))]);
    let own = Ptr {
        offset: leaf.end(),
        len: (5 + 4 + 40 + forge::OVERHEAD) as u32,
        generation: b.generation(),
        raw_len: (5 + 4 + 40) as u32,
        tag: [0; 16],
    };
    let root = b.internal(1, &[(b"", own)]);
    assert_eq!(
        (root.offset, root.len),
        (own.offset, own.len),
        "prediction of the root's place"
    );
    refused(
        "child = itself",
        b.image(Some((root, 2, 1)), None),
        &[Probe::List, Probe::Get("a")],
        CORRUPT,
    );
}

#[test]
fn levels_must_decrease() {
    // A level-1 node whose child is also a level-1 node (an ancestor-like
    // back edge: the only loop the tags allow).
    let mut b = Build::new();
    let leaf = b.leaf(&[(b"a", file(b"A"))]);
    let mid = b.internal(1, &[(b"", leaf)]);
    let root = b.internal(1, &[(b"", mid)]);
    refused(
        "level 1 under level 1",
        b.image(Some((root, 2, 1)), None),
        &[Probe::List, Probe::Get("a")],
        CORRUPT,
    );
    // A leaf claiming a higher level.
    let mut bad = leaf_plain(&[(b"x", file(b"1"))]);
    bad[0] = 3;
    refused(
        "leaf with level 3",
        under_good_root(&bad),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
    // Height claimed larger than the real tree.
    let mut b = Build::new();
    let leaf = b.leaf(&[(b"a", file(b"A"))]);
    refused(
        "height 5 over a leaf",
        b.image(Some((leaf, 5, 1)), None),
        &[Probe::List],
        CORRUPT,
    );
    // Height 0 with a root.
    let mut b = Build::new();
    let leaf = b.leaf(&[(b"a", file(b"A"))]);
    refused(
        "height 0",
        b.image(Some((leaf, 0, 1)), None),
        &[Probe::List],
        CORRUPT,
    );
}

#[test]
fn depth_bombs() {
    for h in [33u32, 255, 256, 1000, u32::MAX] {
        let mut b = Build::new();
        let leaf = b.leaf(&[(b"a", file(b"A"))]);
        refused(
            &format!("claimed height {h}"),
            b.image(Some((leaf, h, 1)), None),
            &[Probe::List],
            CORRUPT,
        );
    }
    // A real chain of single-child internal nodes, 33 levels: over the limit.
    let mut b = Build::new();
    let mut p = b.leaf(&[(b"a", file(b"A"))]);
    for level in 1..=32u8 {
        p = b.internal(level, &[(b"", p)]);
    }
    refused(
        "real chain of 33 levels",
        b.image(Some((p, 33, 1)), None),
        &[Probe::List],
        CORRUPT,
    );
    // 32 levels is within the limit: silly but well formed.
    let mut b = Build::new();
    let mut p = b.leaf(&[(b"a", file(b"A"))]);
    for level in 1..=31u8 {
        p = b.internal(level, &[(b"", p)]);
    }
    let lb = open(b.image(Some((p, 32, 1)), None)).expect("32 levels");
    assert_eq!(lb.get("a").unwrap(), b"A");
    lb.verify().expect("a 32-level chain is well formed");
}

// ---------------------------------------------------------------------------
// File data: lengths, frame indexes, packs
// ---------------------------------------------------------------------------

/// A file claiming 2^60 bytes over a one-frame layout: `get` must fail
/// fast without allocating the claimed length; `read_at` at a small
/// offset must answer (the first frame is real) and beyond it fail.
#[test]
fn file_claims_2_pow_60_bytes_with_one_frame() {
    let mut b = Build::new();
    let fr = b.frame(&drivers::content(1, 65536));
    let rec = Record::file(
        1 << 60,
        Content::Frames {
            frame_size: 65536,
            depth: 0,
            root: fr,
        },
    );
    let l = b.leaf(&[(b"huge", rec.encode())]);
    let lb = Arc::new(open(b.image(Some((l, 1, 1)), None)).unwrap());
    let l2 = lb.clone();
    let (r, biggest, took) = timed(10, "get 2^60", move || {
        let t = Instant::now();
        let (r, big) = biggest_alloc(|| l2.get("huge").map(|v| v.len()));
        (r.map_err(|e| (name(&e), e.to_string())), big, t.elapsed())
    });
    eprintln!(
        "[hostile] get(2^60 one frame): {r:?} in {took:?}, largest allocation {biggest} bytes"
    );
    assert!(
        matches!(r, Err(("LimitExceeded" | "Corrupt", _))),
        "get: {r:?}"
    );
    assert!(
        biggest < 64 << 20,
        "get allocated {biggest} bytes for a file whose layout holds 64 KiB"
    );
    // `None`: either answer is fine (the first frame is real, so a read
    // inside it may answer, with its bytes, or refuse the whole record).
    let frame0 = drivers::content(1, 65536);
    let probes = [
        (Probe::ReadAt("huge", 0), None),
        (Probe::ReadAt("huge", 65536 - 4096), None),
        (Probe::ReadAt("huge", 65536 - 10), Some(false)), // spans into frame 1
        (Probe::ReadAt("huge", 65536), Some(false)),
        (Probe::ReadAt("huge", 1 << 59), Some(false)),
        (Probe::ReadAt("huge", (1 << 60) - 1), Some(false)),
        (Probe::ReadAt("huge", u64::MAX), Some(true)), // past the end: Ok(0)
        (Probe::CopyTo("huge"), Some(false)),
        (Probe::Verify, Some(false)),
    ];
    for (p, ok) in probes {
        let l = lb.clone();
        let pp = p.clone();
        let r = timed(10, &format!("{p:?}"), move || run_probe(&l, &pp));
        eprintln!("[hostile] 2^60: {p:?} -> {r:?}");
        if let Some(ok) = ok {
            assert_eq!(r.is_ok(), ok, "{p:?}: {r:?}");
        }
        match r {
            Err((n, _)) => assert!(n == "Corrupt" || n == "LimitExceeded", "{p:?}: {n}"),
            Ok(_) => {
                if let Probe::ReadAt(_, off) = p
                    && off < 65536
                {
                    let mut buf = vec![0u8; 4096];
                    let n = lb.read_at("huge", off, &mut buf).unwrap();
                    let o = off as usize;
                    assert_eq!(
                        &buf[..n],
                        &frame0[o..o + n],
                        "read_at({off}) returned WRONG DATA"
                    );
                }
            }
        }
    }
    let scratch = Scratch::new("hostile-huge");
    let r = lb.extract_to_directory(scratch.dest(), &ExtractOptions::default());
    assert!(
        matches!(r, Err(Error::LimitExceeded { .. } | Error::Corrupt { .. })),
        "extract: {r:?}"
    );
}

/// A length under the 256 MiB direct-read threshold over a layout that
/// can hold one 64 KiB frame: the claim is impossible on its face, so
/// nothing near the claimed size should be allocated before refusing.
#[test]
fn impossible_length_is_refused_before_allocating() {
    let mut b = Build::new();
    let fr = b.frame(&drivers::content(1, 65536));
    let rec = Record::file(
        200 << 20,
        Content::Frames {
            frame_size: 65536,
            depth: 0,
            root: fr,
        },
    );
    let l = b.leaf(&[(b"f", rec.encode())]);
    let lb = open(b.image(Some((l, 1, 1)), None)).unwrap();
    let t = Instant::now();
    let (r, biggest) = biggest_alloc(|| lb.get("f").map(|v| v.len()));
    eprintln!(
        "[hostile] get(200 MiB claimed, one 64 KiB frame): {r:?} in {:?}, largest allocation {} MiB",
        t.elapsed(),
        biggest >> 20
    );
    assert!(
        matches!(r, Err(Error::Corrupt { .. } | Error::LimitExceeded { .. })),
        "{r:?}"
    );
    assert!(
        biggest <= 16 << 20,
        "get() allocated (and zero-filled) {} MiB for a file whose one-frame layout can hold 64 KiB",
        biggest >> 20
    );
}

/// `extract_all` (extraction to memory) of a file claiming 2^60 bytes
/// must return an error, not abort the process. Run in a subprocess.
#[test]
fn extract_all_with_huge_length_does_not_abort() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_extract_all_huge",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LOCKBOX_HOSTILE_CHILD", "extract_all")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD-DONE"),
        "extract_all on a file claiming 2^60 bytes killed the process ({:?}):\n{}\n{}",
        out.status,
        stdout
            .lines()
            .filter(|l| l.contains("CHILD"))
            .collect::<Vec<_>>()
            .join("\n"),
        stderr.lines().rev().take(6).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn child_extract_all_huge() {
    if std::env::var("LOCKBOX_HOSTILE_CHILD").as_deref() != Ok("extract_all") {
        return;
    }
    let mut b = Build::new();
    let fr = b.frame(&drivers::content(1, 65536));
    let rec = Record::file(
        1 << 60,
        Content::Frames {
            frame_size: 65536,
            depth: 0,
            root: fr,
        },
    );
    let l = b.leaf(&[(b"huge", rec.encode())]);
    let lb = open(b.image(Some((l, 1, 1)), None)).unwrap();
    println!("CHILD-START");
    let r = lb.extract_all("", |_, _| Ok(()));
    println!("CHILD-DONE {:?}", r.map(|s| s.files));
}

#[test]
fn frame_index_depth_and_shape() {
    let data = drivers::content(1, 65536);
    // Depth 5 (over the limit of 4).
    let mut b = Build::new();
    let fr = b.frame(&data);
    let idx = b.seal(kind::FRAME_INDEX, &forge::index_page(&[fr]));
    let rec = Record::file(
        65536,
        Content::Frames {
            frame_size: 65536,
            depth: 5,
            root: idx,
        },
    );
    let l = b.leaf(&[(b"f", rec.encode())]);
    refused(
        "index depth 5",
        b.image(Some((l, 1, 1)), None),
        &[Probe::Get("f"), Probe::ReadAt("f", 0)],
        CORRUPT,
    );
    // Depth 2 over a one-level index: frames read as index pages.
    let mut b = Build::new();
    let f1 = b.frame(&data);
    let f2 = b.frame(&data);
    let idx = b.seal(kind::FRAME_INDEX, &forge::index_page(&[f1, f2]));
    let rec = Record::file(
        2 * 65536,
        Content::Frames {
            frame_size: 65536,
            depth: 2,
            root: idx,
        },
    );
    let l = b.leaf(&[(b"f", rec.encode())]);
    refused(
        "index depth 2 over 1 level",
        b.image(Some((l, 1, 1)), None),
        &[Probe::Get("f"), Probe::ReadAt("f", 70000)],
        CORRUPT,
    );
    // An index page with 2049 entries, and one with a count that lies.
    let mut b = Build::new();
    let f1 = b.frame(&data);
    let many = vec![f1; 2049];
    let idx = b.seal(kind::FRAME_INDEX, &forge::index_page(&many));
    let rec = Record::file(
        2049 * 65536,
        Content::Frames {
            frame_size: 65536,
            depth: 1,
            root: idx,
        },
    );
    let l = b.leaf(&[(b"f", rec.encode())]);
    refused(
        "index of 2049",
        b.image(Some((l, 1, 1)), None),
        &[Probe::Get("f"), Probe::ReadAt("f", 0)],
        CORRUPT,
    );
    let mut b = Build::new();
    let f1 = b.frame(&data);
    let mut page = forge::index_page(&[f1]);
    page[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let idx = b.seal(kind::FRAME_INDEX, &page);
    let rec = Record::file(
        65536,
        Content::Frames {
            frame_size: 65536,
            depth: 1,
            root: idx,
        },
    );
    let l = b.leaf(&[(b"f", rec.encode())]);
    refused(
        "index count 2^32-1",
        b.image(Some((l, 1, 1)), None),
        &[Probe::Get("f"), Probe::ReadAt("f", 0)],
        CORRUPT,
    );
    // Frame size 0, and frames whose length differs from the layout.
    let mut b = Build::new();
    let f1 = b.frame(&data);
    let rec = Record::file(
        65536,
        Content::Frames {
            frame_size: 0,
            depth: 0,
            root: f1,
        },
    );
    let l = b.leaf(&[(b"f", rec.encode())]);
    refused(
        "frame size 0",
        b.image(Some((l, 1, 1)), None),
        &[Probe::Get("f"), Probe::ReadAt("f", 0)],
        CORRUPT,
    );
    let mut b = Build::new();
    let f1 = b.frame(&data[..1000]);
    let f2 = b.frame(&data[..1000]);
    let idx = b.seal(kind::FRAME_INDEX, &forge::index_page(&[f1, f2]));
    let rec = Record::file(
        2000,
        Content::Frames {
            frame_size: 1000,
            depth: 1,
            root: idx,
        },
    );
    let l = b.leaf(&[
        (b"f", rec.encode()),
        (
            b"g",
            Record::file(
                1500,
                Content::Frames {
                    frame_size: 1000,
                    depth: 1,
                    root: idx,
                },
            )
            .encode(),
        ),
    ]);
    let lb = open(b.image(Some((l, 1, 2)), None)).unwrap();
    assert_eq!(
        lb.get("f").unwrap(),
        [&data[..1000], &data[..1000]].concat(),
        "a legal 2-frame layout"
    );
    assert!(
        matches!(lb.get("g"), Err(Error::Corrupt { .. })),
        "last frame longer than the file"
    );
    // Index cycle: an index page whose entry points at its own offset.
    let mut b = Build::new();
    let f1 = b.frame(&data[..100]);
    let _ = f1;
    let own = Ptr {
        offset: f1.end(),
        len: (4 + 40 + forge::OVERHEAD) as u32,
        generation: b.generation(),
        raw_len: 44,
        tag: [1; 16],
    };
    let idx = b.seal(kind::FRAME_INDEX, &forge::index_page(&[own]));
    assert_eq!((idx.offset, idx.len), (own.offset, own.len));
    let rec = Record::file(
        100,
        Content::Frames {
            frame_size: 100,
            depth: 2,
            root: idx,
        },
    );
    let l = b.leaf(&[(b"f", rec.encode())]);
    refused(
        "index entry = itself",
        b.image(Some((l, 1, 1)), None),
        &[Probe::Get("f"), Probe::ReadAt("f", 50)],
        CORRUPT,
    );
}

#[test]
fn pointers_out_of_bounds_or_lying() {
    let data = drivers::content(2, 3000);
    type Mutate = Box<dyn Fn(Ptr) -> Ptr>;
    let mut cases: Vec<(&str, Mutate)> = vec![
        (
            "offset into the key slot table",
            Box::new(|p: Ptr| Ptr { offset: 4096, ..p }),
        ),
        ("offset 0", Box::new(|p: Ptr| Ptr { offset: 0, ..p })),
        (
            "past the end",
            Box::new(|p: Ptr| Ptr {
                offset: p.offset + 1_000_000,
                ..p
            }),
        ),
        (
            "offset + len overflows",
            Box::new(|p: Ptr| Ptr {
                offset: u64::MAX - 10,
                ..p
            }),
        ),
        ("len 0", Box::new(|p: Ptr| Ptr { len: 0, ..p })),
        ("len 40", Box::new(|p: Ptr| Ptr { len: 40, ..p })),
        (
            "len u32::MAX",
            Box::new(|p: Ptr| Ptr { len: u32::MAX, ..p }),
        ),
        (
            "raw_len lies (smaller)",
            Box::new(|p: Ptr| Ptr {
                raw_len: p.raw_len - 1,
                ..p
            }),
        ),
        (
            "raw_len u32::MAX",
            Box::new(|p: Ptr| Ptr {
                raw_len: u32::MAX,
                ..p
            }),
        ),
        (
            "generation lies",
            Box::new(|p: Ptr| Ptr {
                generation: p.generation - 1,
                ..p
            }),
        ),
        (
            "generation newer than the leaf",
            Box::new(|p: Ptr| Ptr {
                generation: p.generation + 1,
                ..p
            }),
        ),
        (
            "tag lies",
            Box::new(|p: Ptr| Ptr {
                tag: [0xAA; 16],
                ..p
            }),
        ),
        (
            "shifted by one",
            Box::new(|p: Ptr| Ptr {
                offset: p.offset + 1,
                ..p
            }),
        ),
    ];
    for (case, f) in cases.drain(..) {
        let mut b = Build::new();
        let fr = b.frame(&data);
        let bad = f(fr);
        let rec = Record::file(
            3000,
            Content::Frames {
                frame_size: 65536,
                depth: 0,
                root: bad,
            },
        );
        let l = b.leaf(&[(b"f", rec.encode())]);
        refused(
            &format!("frame ptr: {case}"),
            b.image(Some((l, 1, 1)), None),
            &[Probe::Get("f"), Probe::ReadAt("f", 0), Probe::CopyTo("f")],
            CORRUPT,
        );
    }
    // A TOC child pointer into the header.
    let mut b = Build::new();
    let good = b.leaf(&[(b"a", file(b"A"))]);
    let bad = Ptr { offset: 0, ..good };
    let root = b.internal(1, &[(b"", good), (b"m", bad)]);
    refused(
        "child ptr to the header",
        b.image(Some((root, 2, 2)), None),
        &[Probe::List],
        CORRUPT,
    );
}

#[test]
fn packed_content_beyond_its_frame() {
    let data = drivers::content(2, 1000);
    let mut failures = Vec::new();
    for (case, offset, len) in [
        ("end past the frame", 900u32, 200u64),
        ("offset past the frame", 5000, 10),
        ("offset u32::MAX", u32::MAX, 10),
        ("len u64::MAX", 10, u64::MAX),
        ("offset and len at the limits", u32::MAX, u64::MAX - 5),
    ] {
        // Built with the forge, so the pack-reference tree is right and
        // verify() gets as far as the packed entry.
        let (img, _) = forge_packed(&data, offset, len);
        let mut probes = vec![
            Probe::Get("p"),
            Probe::ReadAt("p", 0),
            Probe::ReadAt("p", len.saturating_sub(5)),
            Probe::CopyTo("p"),
            Probe::Var("v"),
        ];
        if len > u64::MAX - 20 {
            probes.push(Probe::ReadAt("p", u64::MAX - 20));
        }
        // Each probe on its own, so one failure does not hide the others.
        for p in probes.into_iter().map(Some).chain([None]) {
            let img = img.clone();
            let r = catch_unwind(AssertUnwindSafe(|| {
                refused(
                    &format!("packed: {case}"),
                    img,
                    p.as_slice(),
                    &["Corrupt", "LimitExceeded"],
                )
            }));
            if let Err(e) = r {
                failures.push(e.downcast_ref::<String>().cloned().unwrap_or_default());
            }
        }
    }
    failures.sort();
    failures.dedup();
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The control: the same construction, in range, reads and verifies.
    let (img, _) = forge_packed(&data, 100, 200);
    let lb = open(img).unwrap();
    assert_eq!(lb.get("p").unwrap(), &data[100..300]);
    assert_eq!(lb.var("v").unwrap().unwrap(), &data[100..300]);
    lb.verify().expect("forged packed control verifies");
}

/// An image holding one packed frame, a file `p` and a variable `v` that
/// both point into it at (`offset`, `len`), with a correct pack-reference
/// tree. Built from an empty lockbox with the forge.
fn forge_packed(frame: &[u8], offset: u32, len: u64) -> (Vec<u8>, forge::Keys) {
    let lb = Lockbox::builder().create_in_memory(key()).unwrap();
    let mut img = lb.image().unwrap();
    drop(lb);
    let keys = forge::unwrap_raw(&img, &drivers::RAW).unwrap();
    let rec = forge::newest_commit(&keys, &img).unwrap();
    let g = rec.seq + 1;
    let fr = forge::append_plain(&keys, &mut img, forge::kind::FRAME, g, frame);
    let packed = Content::Packed { frame: fr, offset };
    let leaf = forge::leaf(&[(b"p".to_vec(), Record::file(len, packed.clone()).encode())]);
    let lp = forge::append_plain(&keys, &mut img, forge::kind::TOC_NODE, g, &leaf);
    let vleaf = forge::leaf(&[(b"v".to_vec(), forge::var_value(len, &packed))]);
    let vp = forge::append_plain(&keys, &mut img, forge::kind::VAR_NODE, g, &vleaf);
    let pk = |tag: u8, k: &[u8]| {
        let mut x = fr.offset.to_be_bytes().to_vec();
        x.push(tag);
        x.extend_from_slice(k);
        (x, Vec::new())
    };
    let pleaf = forge::leaf(&[pk(b'T', b"p"), pk(b'V', b"v")]);
    let pp = forge::append_plain(&keys, &mut img, forge::kind::PACK_NODE, g, &pleaf);
    let root = |p: Ptr, count: u64| forge::Root {
        root: Some(p),
        height: 1,
        count,
    };
    forge::commit_both(
        &keys,
        &mut img,
        forge::CommitRecord {
            seq: g,
            toc: root(lp, 1),
            vars: root(vp, 1),
            packs: root(pp, 2),
            time: 1_700_000_000,
            ..Default::default()
        },
    );
    (img, keys)
}

// ---------------------------------------------------------------------------
// Decompression: hostile zstd streams (sealed with the forge: the hook
// compresses by itself and cannot carry a chosen codec byte)
// ---------------------------------------------------------------------------

/// An image with one framed file `f` whose only frame is `codec ‖ body`
/// sealed with the claimed `raw_len` (frame size = raw_len).
fn forge_frame(codec: u8, body: &[u8], raw_len: u32) -> Vec<u8> {
    let lb = Lockbox::builder().create_in_memory(key()).unwrap();
    let mut img = lb.image().unwrap();
    drop(lb);
    let keys = forge::unwrap_raw(&img, &drivers::RAW).unwrap();
    let g = forge::newest_commit(&keys, &img).unwrap().seq + 1;
    let fr = forge::append(&keys, &mut img, forge::kind::FRAME, g, raw_len, codec, body);
    let rec = Record::file(
        raw_len as u64,
        Content::Frames {
            frame_size: raw_len.max(1),
            depth: 0,
            root: fr,
        },
    );
    let leaf = forge::leaf(&[(b"f".to_vec(), rec.encode())]);
    let lp = forge::append_plain(&keys, &mut img, forge::kind::TOC_NODE, g, &leaf);
    forge::commit_both(
        &keys,
        &mut img,
        forge::CommitRecord {
            seq: g,
            toc: forge::Root {
                root: Some(lp),
                height: 1,
                count: 1,
            },
            time: 1_700_000_000,
            ..Default::default()
        },
    );
    img
}

#[test]
fn zstd_bombs_and_lying_codecs() {
    use std::io::Write;
    // Control: a real zstd frame with its true length reads and verifies.
    let data = drivers::content(2, 10_000);
    let z = zstd::bulk::compress(&data, 3).unwrap();
    let lb = open(forge_frame(1, &z, 10_000)).unwrap();
    assert_eq!(lb.get("f").unwrap(), data);
    lb.verify().expect("forged zstd control verifies");

    // 1. Header claims 1 GiB of content; raw_len says 1000.
    let zeros = vec![0u8; 64 << 20];
    let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
    eprintln!(
        "[hostile] zstd bomb: {} compressed bytes for {} MiB",
        bomb.len(),
        zeros.len() >> 20
    );
    drop(zeros);
    // 2. A frame without a content size and a 2 GiB window descriptor.
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_contentsize(false).unwrap();
    enc.window_log(31).unwrap();
    enc.long_distance_matching(true).unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..8 {
        enc.write_all(&chunk).unwrap();
    }
    let wide = enc.finish().unwrap();
    assert!(
        wide[4] & 0x20 == 0,
        "the crafted frame must not be single-segment"
    );
    // 3. Decodes to fewer bytes than raw_len; 4. concatenated frames past
    // raw_len; 5. garbage; 6. unknown codec; 7. stored with a lying length.
    let short = zstd::bulk::compress(&data[..500], 3).unwrap();
    let twice = [z.clone(), z.clone()].concat();
    for (case, codec, body, raw_len) in [
        (
            "content size 64 MiB, raw_len 1000",
            1u8,
            bomb.clone(),
            1000u32,
        ),
        (
            "content size 64 MiB, raw_len 32 MiB",
            1,
            bomb.clone(),
            32 << 20,
        ),
        (
            "window 2 GiB, no content size, raw_len 4096",
            1,
            wide.clone(),
            4096,
        ),
        ("decodes to 500, raw_len 1000", 1, short, 1000),
        ("two frames, raw_len of one", 1, twice, 10_000),
        ("garbage as zstd", 1, drivers::content(5, 300), 300),
        ("codec 2", 2, data[..300].to_vec(), 300),
        ("codec 255", 255, data[..300].to_vec(), 300),
        ("stored, raw_len + 1", 0, data[..300].to_vec(), 301),
        ("stored, raw_len - 1", 0, data[..300].to_vec(), 299),
        (
            "raw_len over 32 MiB",
            0,
            data[..300].to_vec(),
            (32 << 20) + 1,
        ),
    ] {
        let img = forge_frame(codec, &body, raw_len);
        let (_, biggest) = biggest_alloc(|| {
            refused(
                &format!("zstd: {case}"),
                img,
                &[Probe::Get("f"), Probe::ReadAt("f", 0), Probe::CopyTo("f")],
                CORRUPT,
            )
        });
        assert!(
            biggest <= (raw_len as usize).max(1 << 20) + (8 << 20),
            "zstd: {case}: largest allocation {biggest} bytes for raw_len {raw_len}"
        );
    }
}

// ---------------------------------------------------------------------------
// Symlinks
// ---------------------------------------------------------------------------

/// A symlink target that is not UTF-8 (the API cannot create one). Reads
/// must not silently change it (a lossy `String`), extraction must refuse
/// it, and verify must report it.
#[test]
fn symlink_target_not_utf8() {
    let mut b = Build::new();
    let l = b.leaf(&[
        (b"a", file(b"A")),
        (b"l", Record::symlink(b"ta\xffrget").encode()),
    ]);
    let lb = open(b.image(Some((l, 1, 2)), None)).unwrap();
    let scratch = Scratch::new("hostile-utf8");
    let r = lb.extract_to_directory(scratch.dest(), &ExtractOptions::default());
    assert!(
        matches!(r, Err(Error::InvalidPath { .. } | Error::Corrupt { .. })),
        "extract: {r:?}"
    );
    let st = lb.stat("l");
    eprintln!(
        "[hostile] non-UTF-8 target: stat {st:?}, verify {:?}",
        lb.verify()
    );
    assert!(
        !matches!(&st, Ok(Some(e)) if e.target.as_deref().is_some_and(|t| t.as_bytes() != b"ta\xffrget")),
        "stat(\"l\") returned target {:?}: the stored bytes were silently replaced (lossy UTF-8)",
        st.as_ref()
            .ok()
            .and_then(|o| o.as_ref())
            .and_then(|e| e.target.clone())
    );
    assert!(
        lb.verify().is_err(),
        "verify() passed an archive with a non-UTF-8 symlink target"
    );
}

#[test]
fn symlink_target_empty_nul_or_huge() {
    for (case, t) in [
        ("empty", Vec::new()),
        ("NUL", b"a\0b".to_vec()),
        ("4097 bytes", vec![b'x'; 4097]),
    ] {
        let mut b = Build::new();
        let l = b.leaf(&[(b"l", Record::symlink(&t).encode())]);
        let img = b.image(Some((l, 1, 1)), None);
        let lb = match open(img) {
            Ok(lb) => lb,
            Err(e) => {
                assert!(matches!(e, Error::Corrupt { .. }), "{case}: {e}");
                continue;
            }
        };
        let scratch = Scratch::new("hostile-target");
        let r = timed(10, case, {
            let d = scratch.dest();
            move || {
                lb.extract_to_directory(d, &ExtractOptions::default().allow_escaping_symlinks(true))
                    .map(|s| s.symlinks)
            }
        });
        eprintln!("[hostile] symlink target {case}: extract {r:?}");
        assert!(
            r.is_err(),
            "{case}: a symlink with this target was extracted"
        );
        assert!(drivers::tree(&scratch.outside()).is_empty());
    }
}

// ---------------------------------------------------------------------------
// Extraction of hostile trees
// ---------------------------------------------------------------------------

fn k(path: &str) -> Vec<u8> {
    forge::key_of(path)
}

/// Extracts `entries` (one TOC leaf, in this order) with the checks of
/// `drivers::extract_checked` (nothing outside dest, no leftovers, no
/// special bits, escaping links only when allowed, exact bytes).
fn extract_case(
    case: &str,
    mut entries: Vec<Hostile>,
    opts: &ExtractOptions,
    dest_exists: bool,
) -> drivers::Extracted {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let scratch = Scratch::new("hostile-extract");
    let image = drivers::hostile_image(&entries).expect("build");
    let r = catch_unwind(AssertUnwindSafe(|| {
        drivers::extract_checked(image, &entries, &scratch, opts, dest_exists, case)
    }));
    match r {
        Ok(Some(x)) => {
            eprintln!(
                "[hostile] extract {case}: {:?}",
                x.result.as_ref().map(|s| (s.files, s.dirs, s.symlinks))
            );
            x
        }
        Ok(None) => panic!("{case}: archive did not open"),
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn refused_extract(
    case: &str,
    entries: Vec<Hostile>,
    opts: &ExtractOptions,
    dest_exists: bool,
    want: &[&str],
) {
    let x = extract_case(case, entries, opts, dest_exists);
    match &x.result {
        Ok(s) => panic!("{case}: extraction succeeded ({s:?}), expected one of {want:?}"),
        Err(e) => assert!(
            want.contains(&name(e)),
            "{case}: {e} ({}), expected {want:?}",
            name(e)
        ),
    }
}

#[test]
fn extract_dotdot_names() {
    for name in ["../escape", "a/../../escape", "a/../b", ".."] {
        let entries = vec![
            (b"a0".to_vec(), Record::inline_file(b"ok")),
            (k(name), Record::inline_file(b"escaped")),
        ];
        refused_extract(
            &format!("name {name:?}"),
            entries.clone(),
            &ExtractOptions::default(),
            false,
            PATHISH,
        );
        let mut sorted = entries;
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let lb = open(drivers::hostile_image(&sorted).unwrap()).unwrap();
        assert!(
            lb.verify().is_err(),
            "verify() passed an archive holding {name:?}"
        );
    }
}

/// An absolute name: in key form a leading 0x00. It names a path inside
/// the sentinel directory beside `dest`.
#[test]
fn extract_absolute_name_lands_nowhere() {
    for opts in [
        ExtractOptions::default(),
        ExtractOptions::default().overwrite(true),
    ] {
        let scratch = Scratch::new("hostile-abs");
        let abs = format!("{}/pwned", scratch.outside().display());
        let entries = vec![
            (k("a"), Record::inline_file(b"fine")),
            (k(&abs), Record::inline_file(b"PWNED")),
        ];
        let mut sorted = entries.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let image = drivers::hostile_image(&sorted).unwrap();
        let lb = open(image).unwrap();
        let listed: Vec<_> = lb.list("").unwrap().collect();
        let r = lb.extract_to_directory(scratch.dest(), &opts);
        let outside = drivers::tree(&scratch.outside());
        eprintln!(
            "[hostile] absolute name {abs:?}: list {listed:?}, extract {r:?}, outside {outside:?}"
        );
        assert!(
            outside.is_empty(),
            "extracting an archive with the absolute name {abs:?} WROTE OUTSIDE dest: {outside:?} (result {r:?})"
        );
        assert!(
            matches!(r, Err(Error::InvalidPath { .. } | Error::Corrupt { .. })),
            "extract: {r:?}"
        );
        assert!(
            lb.verify().is_err(),
            "verify() passed an archive with an absolute name"
        );
        assert!(
            listed
                .iter()
                .all(|e| e.is_err() || !e.as_ref().unwrap().path.starts_with('/')),
            "list() returned an absolute path"
        );
    }
}

/// Two stored names that are the same path after normalisation (`a` and
/// `/a`). `list` must not show the path twice; extraction must refuse.
/// The extraction is only attempted once `list` refuses the archive: with
/// the absolute-name bug it would write `/a` on the real filesystem.
#[test]
fn extract_names_colliding_after_normalisation() {
    let entries = vec![
        (k("/a"), Record::inline_file(b"second")),
        (k("a"), Record::inline_file(b"first")),
    ];
    let image = drivers::hostile_image(&entries).unwrap();
    let lb = open(image).unwrap();
    let listed: Vec<String> = lb
        .list("")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path)
        .collect();
    let normalised: Vec<&str> = listed.iter().map(|p| p.trim_start_matches('/')).collect();
    let mut dedup = normalised.clone();
    dedup.dedup();
    eprintln!("[hostile] collide: list {listed:?}");
    assert_eq!(
        normalised, dedup,
        "list(\"\") shows one path twice ({listed:?}): `a` and `/a` are stored as different keys but are the same path"
    );
    assert!(
        lb.verify().is_err(),
        "verify() passed an archive holding `a` and `/a`"
    );
    refused_extract(
        "collide a and /a",
        entries,
        &ExtractOptions::default(),
        false,
        PATHISH,
    );
}

#[test]
fn extract_symlink_then_file_through_it() {
    let scratch = Scratch::new("hostile-link-probe");
    let sentinel = scratch.outside().display().to_string();
    drop(scratch);
    // The sentinel path differs per Scratch; extract_case makes its own,
    // so use a relative escape that lands in its sentinel (dest/../outside)
    // and an absolute one (any sentinel-like place outside dest).
    for (case, target) in [
        ("relative ../outside", "../outside".to_string()),
        ("absolute /tmp/x", format!("{sentinel}/x")),
        ("dot", ".".to_string()),
    ] {
        for allow in [false, true] {
            let entries = vec![
                (k("a"), Record::symlink(target.as_bytes())),
                (k("a/b"), Record::inline_file(b"through the link")),
            ];
            let opts = ExtractOptions::default().allow_escaping_symlinks(allow);
            let x = extract_case(
                &format!("link a -> {case}, file a/b, allow {allow}"),
                entries,
                &opts,
                false,
            );
            if let Ok(s) = &x.result {
                // Only acceptable if `a` became a real directory and the link was not created.
                panic!(
                    "{case}: symlink + file through it extracted without error: {s:?}, tree {:?}",
                    x.dest_tree
                );
            }
        }
    }
    // A symlink already in dest, and archive entries below it.
    for overwrite in [false, true] {
        refused_extract(
            &format!("pre-existing link, overwrite {overwrite}"),
            vec![(k("pre/x"), Record::inline_file(b"through"))],
            &ExtractOptions::default().overwrite(overwrite),
            true,
            PATHISH,
        );
    }
    // An archive directory over the pre-existing link.
    refused_extract(
        "dir over pre-existing link",
        vec![
            (k("pre"), Record::dir()),
            (k("pre/y"), Record::inline_file(b"y")),
        ],
        &ExtractOptions::default(),
        true,
        PATHISH,
    );
}

#[test]
fn extract_escaping_symlinks_refused_unless_allowed() {
    for target in ["../outside", "/etc", "a/../../x", "..", "sub/../../../y"] {
        refused_extract(
            &format!("escaping link -> {target}"),
            vec![(k("l"), Record::symlink(target.as_bytes()))],
            &ExtractOptions::default(),
            false,
            &["InvalidPath"],
        );
    }
    // Inside: allowed.
    let x = extract_case(
        "inside links",
        vec![
            (k("d"), Record::dir()),
            (k("d/l"), Record::symlink(b"../f")),
            (k("f"), Record::inline_file(b"F")),
            (k("l2"), Record::symlink(b"d/./l")),
        ],
        &ExtractOptions::default(),
        false,
    );
    assert!(x.result.is_ok(), "{:?}", x.result);
}

#[test]
fn extract_strips_special_mode_bits() {
    let mut f = Record::inline_file(b"suid");
    f.mode = 0o4755;
    let mut g = Record::inline_file(b"sgid");
    g.mode = 0o2777;
    let mut d = Record::dir();
    d.mode = 0o3777;
    let x = extract_case(
        "setuid/setgid/sticky",
        vec![(k("d"), d), (k("d/f"), f), (k("g"), g)],
        &ExtractOptions::default(),
        false,
    );
    assert!(x.result.is_ok(), "{:?}", x.result);
    // extract_checked asserted no 0o7000 bit on anything created.
    assert_eq!(x.dest_tree.get("d/f").map(|e| e.0), Some('f'));
}

#[test]
fn extract_limits_checked_before_writing() {
    let entries: Vec<Hostile> = (0..20)
        .map(|i| (k(&format!("f{i:02}")), Record::inline_file(b"0123456789")))
        .collect();
    let x = extract_case(
        "max_files",
        entries.clone(),
        &ExtractOptions::default().limits(10, 1 << 20, 1 << 30),
        false,
    );
    assert!(
        matches!(x.result, Err(Error::LimitExceeded { .. })),
        "{:?}",
        x.result
    );
    assert!(
        x.dest_tree.is_empty(),
        "files were written before the limit was checked"
    );
    let x = extract_case(
        "max_total_bytes",
        entries,
        &ExtractOptions::default().limits(100, 1 << 20, 150),
        false,
    );
    assert!(
        matches!(x.result, Err(Error::LimitExceeded { .. })),
        "{:?}",
        x.result
    );
}

// ---------------------------------------------------------------------------
// The write path over a hostile free-space index
// ---------------------------------------------------------------------------

/// Bytes of unused data area at `DATA_START` in `forge_free` images.
const FILLER: usize = 16384;

/// An image whose commit has one file `a` (inline) and a free-space index
/// holding `extents` (key: offset big-endian; value: length little-endian).
fn forge_free(extents: &[(u64, u64)]) -> Vec<u8> {
    let lb = Lockbox::builder().create_in_memory(key()).unwrap();
    let mut img = lb.image().unwrap();
    drop(lb);
    let keys = forge::unwrap_raw(&img, &drivers::RAW).unwrap();
    let g = forge::newest_commit(&keys, &img).unwrap().seq + 1;
    // 16 KiB of unused (zero) data area first, so extents can lie inside
    // [DATA_START, data_end) and still be wrong.
    img.resize(img.len() + FILLER, 0);
    let leaf = forge::leaf(&[(b"a".to_vec(), Record::inline_file(b"alpha").encode())]);
    let lp = forge::append_plain(&keys, &mut img, forge::kind::TOC_NODE, g, &leaf);
    let e: Vec<(Vec<u8>, Vec<u8>)> = extents
        .iter()
        .map(|(o, l)| (o.to_be_bytes().to_vec(), l.to_le_bytes().to_vec()))
        .collect();
    let fp = forge::append_plain(&keys, &mut img, forge::kind::FREE_NODE, g, &forge::leaf(&e));
    forge::commit_both(
        &keys,
        &mut img,
        forge::CommitRecord {
            seq: g,
            toc: forge::Root {
                root: Some(lp),
                height: 1,
                count: 1,
            },
            free: forge::Root {
                root: Some(fp),
                height: 1,
                count: extents.len() as u64,
            },
            time: 1_700_000_000,
            ..Default::default()
        },
    );
    img
}

/// A free-space index that lists the key-slot tables, the commit slots,
/// live regions, or extents near 2^64 as free. Writing after opening such
/// an archive must refuse it (`Corrupt`) or write safely: never panic,
/// never put new pages over the header, slot tables, commit slots or live
/// regions (which would destroy the archive on the next open).
#[test]
fn free_space_index_lies() {
    let live_leaf = {
        let img = forge_free(&[]);
        let keys = forge::unwrap_raw(&img, &drivers::RAW).unwrap();
        let rec = forge::newest_commit(&keys, &img).unwrap();
        rec.toc.root.unwrap()
    };
    let mut failures = Vec::new();
    for (case, extents) in [
        (
            "slot tables and commit slots free",
            vec![(4096u64, 16384u64)],
        ),
        ("header free", vec![(0, 4096)]),
        (
            "the live TOC leaf free",
            vec![(live_leaf.offset, live_leaf.len as u64)],
        ),
        ("extent ending past 2^64", vec![(u64::MAX - 10, 100)]),
        ("extent at 2^64 - 1", vec![(u64::MAX - 1, 1 << 20)]),
        ("zero-length extent", vec![(30000, 0)]),
        ("overlapping extents", vec![(20480, 5000), (22480, 5000)]),
        (
            "extent over the live leaf and beyond",
            vec![(20480 + 8192, 10_000)],
        ),
        (
            "extent past the committed end",
            vec![(20480 + FILLER as u64 + 4096, 4096)],
        ),
    ] {
        let img = forge_free(&extents);
        let big = drivers::content(1, 12_000); // incompressible: a 12 KiB packed frame
        let r = catch_unwind(AssertUnwindSafe(|| -> Result<String, String> {
            let mut lb = open(img).map_err(|e| format!("open: {e}"))?;
            lb.put("new/small", b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-small")
                .map_err(|e| format!("put: {e}"))?;
            lb.put("new/big", &big).map_err(|e| format!("put: {e}"))?;
            lb.commit().map_err(|e| format!("commit: {e}"))?;
            let img = lb.image().unwrap();
            drop(lb);
            // The commit succeeded: the archive must still open and hold
            // what was just written.
            let lb = open(img).map_err(|e| format!("DESTROYED: reopen after commit: {e}"))?;
            let got = lb
                .get("new/big")
                .map_err(|e| format!("DESTROYED: get new/big after commit: {e}"))?;
            if got != big {
                return Err("WRONG DATA: new/big".into());
            }
            Ok(format!(
                "committed and reopened; verify {:?}",
                lb.verify().map(|_| ()).map_err(|e| name(&e))
            ))
        }));
        let msg = match r {
            Ok(Ok(m)) => m,
            Ok(Err(m)) if m.starts_with("DESTROYED") || m.starts_with("WRONG") => {
                failures.push(format!("{case}: {m}"));
                m
            }
            Ok(Err(m)) => {
                // A refusal: it must be a typed Corrupt.
                if !m.contains("damaged") {
                    failures.push(format!("{case}: refused with an unexpected error: {m}"));
                }
                m
            }
            Err(p) => {
                let m = p
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| format!("{:?}", p.downcast_ref::<&str>()));
                failures.push(format!("{case}: PANIC: {m}"));
                m
            }
        };
        eprintln!("[hostile] free index, {case}: {msg}");
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Hostile lists of frames to repack (the redaction list's third part)
// ---------------------------------------------------------------------------

/// Paths and contents.
type Files = Vec<(String, Vec<u8>)>;

/// Five packed files in one frame, committed; the image, the packed frame,
/// the TOC leaf and the files.
fn packed_base() -> (Vec<u8>, Ptr, Ptr, Files) {
    let mut lb = Lockbox::builder().create_in_memory(key()).unwrap();
    let files: Files = (0..5)
        .map(|i| (format!("p/f{i}"), drivers::content(40 + i, 1000)))
        .collect();
    for (p, d) in &files {
        lb.put(p, d).unwrap();
    }
    lb.commit().unwrap();
    let img = lb.image().unwrap();
    drop(lb);
    let keys = forge::unwrap_raw(&img, &drivers::RAW).unwrap();
    let rec = forge::newest_commit(&keys, &img).unwrap();
    let regions = forge::walk(&keys, &img, &rec).unwrap();
    let frames: Vec<Ptr> = regions
        .iter()
        .filter(|r| r.kind == forge::kind::FRAME)
        .map(|r| r.ptr)
        .collect();
    assert_eq!(frames.len(), 1, "the five files share one packed frame");
    (img, frames[0], rec.toc.root.unwrap(), files)
}

/// `base` with one more commit (same trees) whose redaction list is
/// `list` (its plaintext, written as is). `dirty`: the redaction mark says
/// a writer used free space, so a writable open redoes the redaction and
/// runs the relocation commits at once; else the first commit does.
fn with_redaction_list(base: &[u8], list: &[u8], dirty: bool) -> Vec<u8> {
    let mut img = base.to_vec();
    let keys = forge::unwrap_raw(&img, &drivers::RAW).unwrap();
    let mut rec = forge::newest_commit(&keys, &img).unwrap();
    rec.seq += 1;
    rec.redact = Some(forge::append_plain(
        &keys,
        &mut img,
        forge::kind::REDACT_LIST,
        rec.seq,
        list,
    ));
    forge::commit_both(&keys, &mut img, rec);
    if dirty {
        img[14336..14344].copy_from_slice(&0u64.to_le_bytes());
    }
    img
}

/// A redaction list: `zero` and `plain` empty, then these repack extents
/// (or, with `count`, that count in front of them).
fn repack_list(extents: &[(u64, u64)], count: Option<u32>) -> Vec<u8> {
    let mut o = Vec::new();
    o.extend_from_slice(&0u32.to_le_bytes());
    o.extend_from_slice(&0u32.to_le_bytes());
    o.extend_from_slice(&count.unwrap_or(extents.len() as u32).to_le_bytes());
    for (off, len) in extents {
        o.extend_from_slice(&off.to_le_bytes());
        o.extend_from_slice(&len.to_le_bytes());
    }
    o
}

/// Frames to repack that are not live packed frames, or not in the data
/// area, or named twice, or a count that lies. A writable open (which
/// relocates at once when the mark is dirty) and the first commit (which
/// relocates otherwise) refuse them with `Corrupt`, never a panic, a hang or
/// a large allocation, and never by damaging the archive; reads, which do
/// not look at the list, still return the right bytes; `verify()` fails.
/// The control (the live frame, named once) is relocated: afterwards the
/// files read back, nothing is left to repack and the archive verifies.
#[test]
fn repack_list_lies() {
    let (base, frame, leaf, files) = packed_base();
    let end = base.len() as u64;
    let fr = (frame.offset, frame.len as u64);
    let control = repack_list(&[fr], None);
    let mut failures = Vec::new();
    for dirty in [true, false] {
        // control
        let img = with_redaction_list(&base, &control, dirty);
        let r = timed(20, "repack control", move || -> Result<(), String> {
            let mut lb = open(img).map_err(|e| format!("open: {e}"))?;
            lb.put("p/new", &drivers::content(99, 700))
                .map_err(|e| format!("put: {e}"))?;
            lb.commit().map_err(|e| format!("commit: {e}"))?;
            let left = testing::repack_pending(&lb).map_err(|e| e.to_string())?;
            let report = lb.verify().map_err(|e| format!("verify: {e}"))?;
            if left != 0 || report.repack_pending != 0 {
                return Err(format!("{left} frames left to repack"));
            }
            Ok(())
        });
        if let Err(e) = r {
            failures.push(format!("control (dirty mark {dirty}): {e}"));
        }
        for (case, list) in [
            ("count u32::MAX", repack_list(&[], Some(u32::MAX))),
            ("count larger than the list", repack_list(&[fr], Some(2))),
            ("over the header", repack_list(&[(0, 4096)], None)),
            ("past the committed end", repack_list(&[(end, 4096)], None)),
            (
                "ending past 2^64",
                repack_list(&[(u64::MAX - 10, 100)], None),
            ),
            ("zero length", repack_list(&[(frame.offset, 0)], None)),
            ("named twice", repack_list(&[fr, fr], None)),
            (
                "the TOC leaf",
                repack_list(&[(leaf.offset, leaf.len as u64)], None),
            ),
            (
                "the frame with a wrong length",
                repack_list(&[(frame.offset, frame.len as u64 - 1)], None),
            ),
            (
                "inside the frame",
                repack_list(&[(frame.offset + 1, frame.len as u64 - 1)], None),
            ),
        ] {
            let img = with_redaction_list(&base, &list, dirty);
            let what = format!("{case} (dirty mark {dirty})");
            let files2 = files.clone();
            let w = what.clone();
            let (r, big) = biggest_alloc(|| {
                timed(20, &what, move || -> Result<String, String> {
                    // reads do not use the list
                    let ro = Lockbox::builder()
                        .read_only(true)
                        .open_bytes(img.clone(), key())
                        .map_err(|e| format!("read-only open: {e}"))?;
                    for (p, d) in &files2 {
                        if ro.get(p).map_err(|e| format!("read-only get: {e}"))? != *d {
                            return Err(format!("WRONG DATA: {p}"));
                        }
                    }
                    if ro.verify().is_ok() {
                        return Err("verify() ACCEPTED the list".into());
                    }
                    let mut lb = match open(img) {
                        Ok(lb) => lb,
                        Err(e) if name(&e) == "Corrupt" => return Ok(format!("open: {e}")),
                        Err(e) => return Err(format!("open: {} ({e})", name(&e))),
                    };
                    let r = lb
                        .put("p/new", &drivers::content(99, 700))
                        .and_then(|()| lb.commit().map(|_| ()));
                    match r {
                        Err(e) if e.to_string().contains("damaged") => {}
                        Err(e) => return Err(format!("commit: {} ({e})", name(&e))),
                        Ok(()) => return Err(format!("{w}: the commit ACCEPTED the list")),
                    }
                    // refused without damage: a read-only open still reads
                    let img = lb.image().map_err(|e| format!("image: {e}"))?;
                    drop(lb);
                    let ro = Lockbox::builder()
                        .read_only(true)
                        .open_bytes(img, key())
                        .map_err(|e| format!("DAMAGED: read-only open: {e}"))?;
                    for (p, d) in &files2 {
                        if ro.get(p).map_err(|e| format!("DAMAGED: get: {e}"))? != *d {
                            return Err(format!("DAMAGED: {p} reads wrong"));
                        }
                    }
                    Ok("first commit refused".into())
                })
            });
            match r {
                Ok(m) => {
                    eprintln!("[hostile] repack list, {what}: {m}; largest allocation {big} B")
                }
                Err(e) => failures.push(format!("{what}: {e}")),
            }
            if big > 64 << 20 {
                failures.push(format!("{what}: allocated {big} B at once"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.join("\n").lines().count(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// More extraction: symlink chains, times
// ---------------------------------------------------------------------------

/// Each symlink stays inside `dest` when judged on its own, but `x`
/// resolves through `d/l` (-> `..`, the root) and then `..` again: to
/// `dest/..`, outside. An extraction without `allow_escaping_symlinks`
/// must not leave a link that resolves outside `dest`.
#[test]
fn extract_symlink_chain_escapes() {
    let entries = vec![
        (k("d"), Record::dir()),
        (k("d/l"), Record::symlink(b"..")),
        (k("x"), Record::symlink(b"d/l/../outside")),
    ];
    let scratch = Scratch::new("hostile-chain");
    let image = drivers::hostile_image(&entries).unwrap();
    let lb = open(image).unwrap();
    let r = lb.extract_to_directory(scratch.dest(), &ExtractOptions::default());
    let dest = std::fs::canonicalize(scratch.dest()).ok();
    let resolved = std::fs::canonicalize(scratch.dest().join("x")).ok();
    eprintln!("[hostile] symlink chain: extract {r:?}, dest/x resolves to {resolved:?}");
    if r.is_ok()
        && let (Some(d), Some(x)) = (&dest, &resolved)
    {
        assert!(
            x.starts_with(d),
            "extraction (escaping symlinks not allowed) left dest/x resolving OUTSIDE dest, to {x:?}: \
             links `d/l -> ..` and `x -> d/l/../outside` each pass the lexical check"
        );
    }
}

#[test]
fn extract_extreme_mtimes() {
    for (secs, nanos) in [
        (i64::MIN, 999_999_999u32),
        (i64::MAX, 999_999_999),
        (-1, 1),
        (0, 0),
    ] {
        let mut f = Record::inline_file(b"t");
        f.mtime = secs;
        f.nanos = nanos;
        let mut d = Record::dir();
        d.mtime = secs;
        d.nanos = nanos;
        let x = extract_case(
            &format!("mtime {secs}.{nanos}"),
            vec![(k("d"), d), (k("d/f"), f)],
            &ExtractOptions::default().restore_mtimes(true),
            false,
        );
        // Any typed result; extract_case caught panics would have failed.
        eprintln!(
            "[hostile] mtime {secs}.{nanos}: {:?}",
            x.result.as_ref().map(|s| s.files)
        );
    }
}

/// `a\0b` and `a/b` (a literal 0x2F) are different keys that both read
/// as the path "a/b": list must not show it twice, stat must agree.
#[test]
fn literal_slash_key_collides_with_separator_key() {
    let mut b = Build::new();
    let l = b.leaf(&[(b"a\0b", file(b"one")), (b"a/b", file(b"two"))]);
    let lb = open(b.image(Some((l, 1, 2)), None)).unwrap();
    let listed: Vec<_> = lb.list("").unwrap().collect();
    eprintln!("[hostile] a\\0b and a/b: list {listed:?}");
    let paths: Vec<String> = listed
        .iter()
        .filter_map(|e| e.as_ref().ok())
        .map(|e| e.path.clone())
        .collect();
    let mut dedup = paths.clone();
    dedup.dedup();
    assert_eq!(paths, dedup, "list(\"\") shows one path twice: {paths:?}");
    for p in &paths {
        let st = lb.stat(p);
        assert!(
            matches!(st, Ok(Some(_)) | Err(_)),
            "list shows {p:?}, stat says {st:?}"
        );
    }
    assert!(
        lb.verify().is_err(),
        "verify() passed a key with a literal '/'"
    );
}

/// The slot tables' checksum is not keyed: anyone can give one copy the
/// sequence number u64::MAX. A writable open then rewrites both tables
/// with "the next" sequence; that must not overflow (panic).
#[test]
fn slot_table_sequence_at_u64_max() {
    let mut lb = Lockbox::builder().create_in_memory(key()).unwrap();
    lb.put("a", b"A").unwrap();
    lb.commit().unwrap();
    let mut img = lb.image().unwrap();
    drop(lb);
    img[4096..4104].copy_from_slice(&u64::MAX.to_le_bytes());
    forge::fix_table_checksum(&mut img, 4096);
    for read_only in [true, false] {
        let i = img.clone();
        let r = timed(10, "open", move || {
            Lockbox::builder()
                .read_only(read_only)
                .open_bytes(i, key())
                .and_then(|lb| lb.get("a"))
        });
        eprintln!("[hostile] slot table seq u64::MAX, read_only {read_only}: {r:?}");
        assert!(
            matches!(&r, Ok(v) if v == b"A") || matches!(r, Err(Error::Corrupt { .. })),
            "{r:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Compaction of hostile archives
// ---------------------------------------------------------------------------

/// `compact` reads everything reachable and writes a fresh archive: over a
/// hostile archive it must fail with a typed error or produce an archive
/// that opens and verifies. Never a panic or a hang.
#[test]
fn compact_hostile_archives() {
    let mut images: Vec<(&str, Vec<u8>)> = Vec::new();
    {
        let mut b = Build::new();
        let l1 = b.leaf(&[(b"a", file(b"first")), (b"z", file(b"z1"))]);
        let l2 = b.leaf(&[(b"b", file(b"second")), (b"z", file(b"z2"))]);
        let root = b.internal(1, &[(b"", l1), (b"m", l2)]);
        images.push(("keys outside separators", b.image(Some((root, 2, 4)), None)));
    }
    images.push((
        "packed len u64::MAX",
        forge_packed(&drivers::content(2, 1000), 10, u64::MAX).0,
    ));
    images.push((
        "packed end past the frame",
        forge_packed(&drivers::content(2, 1000), 900, 200).0,
    ));
    {
        let mut b = Build::new();
        let fr = b.frame(&drivers::content(1, 65536));
        let rec = Record::file(
            1 << 60,
            Content::Frames {
                frame_size: 65536,
                depth: 0,
                root: fr,
            },
        );
        let l = b.leaf(&[(b"huge", rec.encode())]);
        images.push(("2^60 bytes in one frame", b.image(Some((l, 1, 1)), None)));
    }
    {
        let mut b = Build::new();
        let l = b.leaf(&[(b"a\0b", file(b"one")), (b"a/b", file(b"two"))]);
        images.push(("literal slash", b.image(Some((l, 1, 2)), None)));
    }
    {
        let mut b = Build::new();
        let l = b.leaf(&[(b"\0abs", file(b"abs")), (b"a", file(b"a"))]);
        images.push(("absolute name", b.image(Some((l, 1, 2)), None)));
    }
    images.push((
        "free extent over the slot tables",
        forge_free(&[(4096, 16384)]),
    ));
    images.push(("zstd content size lies", {
        let z = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
        forge_frame(1, &z, 1000)
    }));
    let mut failures = Vec::new();
    for (case, img) in images {
        let r = timed(20, case, move || -> Result<String, String> {
            let mut lb = open(img).map_err(|e| format!("open: {}", name(&e)))?;
            let st = lb
                .compact()
                .map_err(|e| format!("compact: {} ({e})", name(&e)))?;
            let out = lb.image().unwrap();
            drop(lb);
            let lb = open(out).map_err(|e| format!("COMPACTED ARCHIVE DOES NOT OPEN: {e}"))?;
            lb.verify()
                .map_err(|e| format!("COMPACTED ARCHIVE DOES NOT VERIFY: {e}"))?;
            Ok(format!("compacted: {st:?}"))
        });
        eprintln!("[hostile] compact {case}: {r:?}");
        if let Err(m) = &r
            && (m.contains("COMPACTED")
                || !(m.contains("Corrupt") || m.contains("LimitExceeded") || m.starts_with("open")))
        {
            failures.push(format!("{case}: {m}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
