//! Round trips on both backends: frame-boundary sizes, a 64 MiB streamed file,
//! 10,000 small files, symlinks and explicit directories.

mod common;

use common::*;
use lockbox::{Entry, EntryKind, Key, Lockbox, Profile};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// The RSS measurement is process-wide: it runs alone (write lock) while all
/// other tests of this file share the read lock.
static RSS_GATE: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    RSS_GATE.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    RSS_GATE.write().unwrap_or_else(|e| e.into_inner())
}

const EDGE_SIZES: [usize; 11] = [
    0, 1, 2, 4095, 4096, 65535, 65536, 65537, 131071, 131072, 131073,
];

fn check_file(lb: &Lockbox, path: &str, expected: &[u8], when: &str) {
    let got = lb
        .get(path)
        .unwrap_or_else(|e| panic!("{when}: get({path}) failed: {e:?}"));
    assert_eq!(got.len(), expected.len(), "{when}: get({path}) length");
    assert!(got == expected, "{when}: get({path}) content differs");

    let mut out = Vec::new();
    let n = lb
        .copy_to(path, &mut out)
        .unwrap_or_else(|e| panic!("{when}: copy_to({path}): {e:?}"));
    assert_eq!(
        n,
        expected.len() as u64,
        "{when}: copy_to({path}) return value"
    );
    assert!(out == expected, "{when}: copy_to({path}) content differs");

    let st = lb
        .stat(path)
        .unwrap_or_else(|e| panic!("{when}: stat({path}): {e:?}"))
        .unwrap_or_else(|| panic!("{when}: stat({path}) is None"));
    assert_eq!(st.path, path, "{when}: stat path");
    assert_eq!(st.kind, EntryKind::File, "{when}: stat({path}) kind");
    assert_eq!(st.len, expected.len() as u64, "{when}: stat({path}) len");
    assert_eq!(st.mode & 0o7777, 0o644, "{when}: stat({path}) mode");
    assert!(st.target.is_none(), "{when}: stat({path}) target of a file");
}

fn edge_sizes(backend: Backend) {
    let _g = shared();
    let mut h = Harness::create(backend);
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (i, &size) in EDGE_SIZES.iter().enumerate() {
        for style in 0..3u64 {
            let data = content(style + 3 * i as u64, size);
            let p = format!("put/{size}-{style}");
            h.lb_mut()
                .put(&p, &data)
                .unwrap_or_else(|e| panic!("put {p}: {e:?}"));
            expected.insert(p, data.clone());
            let p = format!("reader/{size}-{style}");
            // a reader that hands out odd-sized chunks
            let n = h
                .lb_mut()
                .put_reader(
                    &p,
                    ChunkReader {
                        data: &data,
                        pos: 0,
                        chunk: 1000 + i * 7,
                    },
                )
                .unwrap_or_else(|e| panic!("put_reader {p}: {e:?}"));
            assert_eq!(n, size as u64, "put_reader({p}) return value");
            expected.insert(p, data);
        }
    }
    for (p, d) in &expected {
        check_file(h.lb(), p, d, "staged");
    }
    h.lb_mut().commit().expect("commit");
    for (p, d) in &expected {
        check_file(h.lb(), p, d, "committed");
    }
    h.reopen();
    for (p, d) in &expected {
        check_file(h.lb(), p, d, "reopened");
    }
    let listed: Vec<String> = list_all(h.lb(), "").into_iter().map(|e| e.path).collect();
    let mut want: Vec<String> = expected.keys().cloned().collect();
    want.sort_by(|a, b| cmp_paths(a, b));
    assert_eq!(listed, want, "list(\"\") after reopen");
}

struct ChunkReader<'a> {
    data: &'a [u8],
    pos: usize,
    chunk: usize,
}

impl std::io::Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn edge_sizes_file() {
    edge_sizes(Backend::File);
}

#[test]
fn edge_sizes_memory() {
    edge_sizes(Backend::Memory);
}

// ---------------------------------------------------------------------------
// 64 MiB streamed
// ---------------------------------------------------------------------------

const BIG: u64 = 64 << 20;
const BIG_SEED: u64 = 0xB16_F11E;
const RSS_LIMIT_KIB: u64 = 48 * 1024;

fn rss_report(label: &str) -> Option<u64> {
    let rss = proc_status_kib("VmRSS");
    eprintln!(
        "[rss] {label}: VmRSS={:?} KiB RssAnon={:?} KiB RssFile={:?} KiB",
        rss,
        proc_status_kib("RssAnon"),
        proc_status_kib("RssFile")
    );
    rss
}

fn check_big(lb: &Lockbox, path: &str, when: &str) {
    let st = lb.stat(path).expect("stat big").expect("big file exists");
    assert_eq!(st.kind, EntryKind::File, "{when}: kind");
    assert_eq!(st.len, BIG, "{when}: stat len");
    let mut w = CompareWriter::new(BIG_SEED, BIG);
    let n = lb
        .copy_to(path, &mut w)
        .unwrap_or_else(|e| panic!("{when}: copy_to: {e:?}"));
    assert_eq!(n, BIG, "{when}: copy_to return value");
    w.finish(when);
}

#[test]
fn big_64mib_streamed_file_backend_bounded_rss() {
    let _g = exclusive();
    let mut h = Harness::create(Backend::File);
    let before = rss_report("before put_reader");
    let n = h
        .lb_mut()
        .put_reader(
            "big/stream.bin",
            GenReader::new(BIG_SEED, BIG).with_max_chunk(100_003),
        )
        .expect("put_reader 64 MiB");
    assert_eq!(n, BIG, "put_reader return value");
    let after_put = rss_report("after put_reader");
    h.lb_mut().commit().expect("commit");
    let after_commit = rss_report("after commit");
    check_big(h.lb(), "big/stream.bin", "committed");
    let after_read = rss_report("after copy_to");
    h.reopen();
    check_big(h.lb(), "big/stream.bin", "reopened");
    let after_reopen_read = rss_report("after reopen + copy_to");
    let file_len = std::fs::metadata(&h.path).unwrap().len();
    eprintln!("[big] lockbox file length {file_len} bytes for {BIG} logical bytes");

    if let Some(before) = before {
        for (label, v) in [
            ("put_reader", after_put),
            ("commit", after_commit),
            ("copy_to", after_read),
            ("reopen + copy_to", after_reopen_read),
        ] {
            let v = v.expect("VmRSS readable");
            let growth = v.saturating_sub(before);
            assert!(
                growth < RSS_LIMIT_KIB,
                "VmRSS grew by {growth} KiB (limit {RSS_LIMIT_KIB} KiB) after {label} of a 64 MiB file"
            );
        }
    } else {
        eprintln!("/proc/self/status not available: RSS assertion skipped");
    }
}

#[test]
fn big_64mib_streamed_memory_backend() {
    let _g = shared();
    let mut h = Harness::create(Backend::Memory);
    let n = h
        .lb_mut()
        .put_reader(
            "big/stream.bin",
            GenReader::new(BIG_SEED, BIG).with_max_chunk(65536),
        )
        .expect("put_reader 64 MiB");
    assert_eq!(n, BIG);
    check_big(h.lb(), "big/stream.bin", "staged");
    h.lb_mut().commit().expect("commit");
    h.reopen();
    check_big(h.lb(), "big/stream.bin", "reopened");
}

// ---------------------------------------------------------------------------
// 10,000 small files
// ---------------------------------------------------------------------------

fn small_path(i: u64) -> String {
    // not zero-padded, and with "-x" sibling directories, so that the
    // component-wise order differs from plain byte order
    if i.is_multiple_of(5) {
        format!("d{}-x/f{}", i % 37, i)
    } else {
        format!("d{}/f{}", i % 37, i)
    }
}

fn small_content(i: u64) -> Vec<u8> {
    let mut rng = XorShift::new(i ^ 0xA5A5);
    let len = rng.below(2000) as usize;
    content(i, len)
}

fn many_small(backend: Backend) {
    let _g = shared();
    const N: u64 = 10_000;
    let mut h = Harness::create(backend);
    for i in 0..N {
        let p = small_path(i);
        h.lb_mut()
            .put(&p, &small_content(i))
            .unwrap_or_else(|e| panic!("put {p}: {e:?}"));
    }
    h.lb_mut().commit().expect("commit");
    h.reopen();
    let lb = h.lb();
    for i in 0..N {
        let p = small_path(i);
        let want = small_content(i);
        let got = lb.get(&p).unwrap_or_else(|e| panic!("get {p}: {e:?}"));
        assert!(
            got == want,
            "content of {p} differs (len got {} want {})",
            got.len(),
            want.len()
        );
        let st = lb
            .stat(&p)
            .unwrap()
            .unwrap_or_else(|| panic!("stat {p} None"));
        assert_eq!(st.len, want.len() as u64, "stat({p}).len");
        assert_eq!(st.kind, EntryKind::File);
    }
    let mut want: Vec<String> = (0..N).map(small_path).collect();
    want.sort_by(|a, b| cmp_paths(a, b));
    let listed: Vec<Entry> = list_all(lb, "");
    assert_eq!(listed.len(), want.len(), "list(\"\") count");
    for (k, (e, w)) in listed.iter().zip(&want).enumerate() {
        assert_eq!(&e.path, w, "list(\"\") entry #{k} out of order or wrong");
    }
    // a prefix listing
    let sub: Vec<String> = list_all(lb, "d3").into_iter().map(|e| e.path).collect();
    let want_sub: Vec<String> = want
        .iter()
        .filter(|p| p.starts_with("d3/"))
        .cloned()
        .collect();
    assert_eq!(sub, want_sub, "list(\"d3\")");
}

#[test]
fn many_small_files_file() {
    many_small(Backend::File);
}

#[test]
fn many_small_files_memory() {
    many_small(Backend::Memory);
}

// ---------------------------------------------------------------------------
// Symlinks, explicit directories and variables
// ---------------------------------------------------------------------------

fn links_and_dirs(backend: Backend) {
    let _g = shared();
    let mut h = Harness::create(backend);
    {
        let lb = h.lb_mut();
        lb.put("docs/a.txt", b"hello").unwrap();
        lb.symlink("links/to-a", "../docs/a.txt").unwrap();
        lb.symlink("top-link", "docs").unwrap();
        lb.mkdir("empty").unwrap();
        lb.mkdir("nested/empty/dir").unwrap();
        lb.set_var("name", b"value").unwrap();
        lb.set_var("empty-var", b"").unwrap();
    }
    let check = |lb: &Lockbox, when: &str| {
        let l = lb
            .stat("links/to-a")
            .unwrap()
            .unwrap_or_else(|| panic!("{when}: link missing"));
        assert_eq!(l.kind, EntryKind::Symlink, "{when}");
        assert_eq!(l.target.as_deref(), Some("../docs/a.txt"), "{when}");
        assert_eq!(l.len, "../docs/a.txt".len() as u64, "{when}: symlink len");
        assert_eq!(l.mode & 0o7777, 0o777, "{when}: symlink mode");
        let t = lb.stat("top-link").unwrap().unwrap();
        assert_eq!(t.kind, EntryKind::Symlink, "{when}");
        assert_eq!(t.target.as_deref(), Some("docs"), "{when}");
        for d in ["empty", "nested/empty/dir"] {
            let e = lb
                .stat(d)
                .unwrap()
                .unwrap_or_else(|| panic!("{when}: dir {d} missing"));
            assert_eq!(e.kind, EntryKind::Dir, "{when}: {d}");
            assert_eq!(e.mode & 0o7777, 0o755, "{when}: {d} mode");
        }
        // implicit parents
        for d in ["nested", "nested/empty", "docs", "links"] {
            let e = lb
                .stat(d)
                .unwrap()
                .unwrap_or_else(|| panic!("{when}: implicit dir {d}"));
            assert_eq!(e.kind, EntryKind::Dir, "{when}: {d}");
        }
        assert!(
            matches!(lb.get("links/to-a"), Err(lockbox::Error::NotAFile(_))),
            "{when}"
        );
        assert!(
            matches!(lb.get("empty"), Err(lockbox::Error::NotAFile(_))),
            "{when}"
        );
        assert_eq!(lb.get("docs/a.txt").unwrap(), b"hello", "{when}");
        let listed: Vec<(String, EntryKind)> = list_all(lb, "")
            .into_iter()
            .map(|e| (e.path, e.kind))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("docs/a.txt".to_string(), EntryKind::File),
                ("empty".to_string(), EntryKind::Dir),
                ("links/to-a".to_string(), EntryKind::Symlink),
                ("nested/empty/dir".to_string(), EntryKind::Dir),
                ("top-link".to_string(), EntryKind::Symlink),
            ],
            "{when}: list(\"\")"
        );
        assert_eq!(
            lb.var("name").unwrap().as_deref(),
            Some(&b"value"[..]),
            "{when}"
        );
        assert_eq!(
            lb.var("empty-var").unwrap().as_deref(),
            Some(&b""[..]),
            "{when}"
        );
        assert_eq!(lb.var("missing").unwrap(), None, "{when}");
        let vars: Vec<(String, Vec<u8>)> =
            lb.vars().unwrap().collect::<lockbox::Result<_>>().unwrap();
        assert_eq!(
            vars,
            vec![
                ("empty-var".to_string(), vec![]),
                ("name".to_string(), b"value".to_vec())
            ],
            "{when}: vars()"
        );
    };
    check(h.lb(), "staged");
    h.lb_mut().commit().unwrap();
    check(h.lb(), "committed");
    h.reopen();
    check(h.lb(), "reopened");
}

#[test]
fn symlinks_dirs_vars_file() {
    links_and_dirs(Backend::File);
}

#[test]
fn symlinks_dirs_vars_memory() {
    links_and_dirs(Backend::Memory);
}

#[test]
fn uncommitted_changes_are_not_durable() {
    let _g = shared();
    for backend in [Backend::File, Backend::Memory] {
        let mut h = Harness::create(backend);
        h.lb_mut().put("kept", b"1").unwrap();
        h.lb_mut().commit().unwrap();
        h.lb_mut().put("lost", b"2").unwrap();
        h.lb_mut().put("kept", b"changed").unwrap();
        h.reopen();
        assert_eq!(h.lb().get("kept").unwrap(), b"1", "{backend:?}");
        assert!(
            h.lb().stat("lost").unwrap().is_none(),
            "{backend:?}: uncommitted file survived"
        );
    }
}

/// Streamed contents of one session read into buffers the ones before
/// them left (1 MiB frames under `BulkImport`): a shorter content after a
/// longer one stores only its own bytes, in every frame.
#[test]
fn streams_of_falling_and_rising_sizes_store_only_their_bytes() {
    let _g = shared();
    let mib = 1 << 20;
    let sizes = [
        3 * mib + 5,
        mib + 1,
        mib,
        700 << 10,
        10 << 10,
        2 * mib - 3,
        100,
    ];
    let mut lb = Lockbox::builder()
        .profile(Profile::BulkImport)
        .create_in_memory(Key::raw([3; 32]))
        .unwrap();
    let datas: Vec<Vec<u8>> = (sizes.iter().enumerate())
        .map(|(i, &n)| content(100 + i as u64, n))
        .collect();
    for (i, d) in datas.iter().enumerate() {
        let r = ChunkReader {
            data: d,
            pos: 0,
            chunk: 300_001,
        };
        assert_eq!(lb.put_reader(&format!("s/{i}"), r).unwrap(), d.len() as u64);
    }
    for (i, d) in datas.iter().enumerate() {
        check_file(&lb, &format!("s/{i}"), d, "staged");
    }
    lb.commit().unwrap();
    lb.verify().unwrap();
    for (i, d) in datas.iter().enumerate() {
        check_file(&lb, &format!("s/{i}"), d, "committed");
    }
}
