//! Typed errors: wrong key, version, not-a-lockbox, AlreadyExists, hostile
//! paths, locking, read-only handles, passphrases and KDF limits, damage.

mod common;

use common::*;
use lockbox::{Error, KdfParams, Key, Lockbox};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

const MAGIC: &[u8; 8] = b"LOCKBOX\x1a";

fn min_kdf() -> KdfParams {
    KdfParams {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    }
}

fn make_small(path: &Path) {
    let mut lb = Lockbox::create(path, key()).expect("create");
    lb.put("a.txt", b"alpha").unwrap();
    lb.put("dir/b.bin", &content(3, 100_000)).unwrap();
    lb.set_var("v", b"var").unwrap();
    lb.commit().unwrap();
}

#[test]
fn wrong_raw_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.lbox");
    make_small(&path);
    let e = expect_err(
        Lockbox::open(&path, Key::raw([8u8; 32])),
        "open with a wrong key",
    );
    assert!(matches!(e, Error::WrongKey), "got {e:?}");
    // the right key still works afterwards
    let lb = Lockbox::open(&path, key()).expect("open with the right key");
    assert_eq!(lb.get("a.txt").unwrap(), b"alpha");

    let mut mem = Lockbox::builder().create_in_memory(key()).unwrap();
    mem.put("x", b"y").unwrap();
    mem.commit().unwrap();
    let img = mem.image().unwrap();
    let e = expect_err(
        Lockbox::builder().open_bytes(img, Key::raw([0u8; 32])),
        "open_bytes wrong key",
    );
    assert!(matches!(e, Error::WrongKey), "got {e:?}");
}

#[test]
fn patched_version_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.lbox");
    make_small(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[0..8], MAGIC, "header magic");
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        1,
        "format version field"
    );
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let e = expect_err(Lockbox::open(&path, key()), "open a version-2 file");
    match e {
        Error::UnsupportedVersion { found, supported } => {
            assert_eq!(found, 2);
            assert_eq!(supported, 1);
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    // read-only open and open_bytes refuse too
    let e = expect_err(
        Lockbox::builder().read_only(true).open(&path, key()),
        "read-only open v2",
    );
    assert!(
        matches!(e, Error::UnsupportedVersion { found: 2, .. }),
        "got {e:?}"
    );
    let e = expect_err(
        Lockbox::builder().open_bytes(bytes.clone(), key()),
        "open_bytes v2",
    );
    assert!(
        matches!(e, Error::UnsupportedVersion { found: 2, .. }),
        "got {e:?}"
    );
    // a huge version number too
    bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = expect_err(
        Lockbox::builder().open_bytes(bytes, key()),
        "open_bytes v=u32::MAX",
    );
    assert!(matches!(e, Error::UnsupportedVersion { .. }), "got {e:?}");
}

#[test]
fn not_a_lockbox() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = XorShift::new(42);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one byte", vec![b'L']),
        ("random 4 KiB", rng.bytes(4096)),
        ("random 100 KiB", rng.bytes(100_000)),
        (
            "text",
            b"Hello, this is just a text file.\nIt is not a lockbox.\n".repeat(50),
        ),
        ("zeros", vec![0u8; 8192]),
        ("magic prefix only", MAGIC[..7].to_vec()),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(format!("{}.bin", name.replace(' ', "_")));
        std::fs::write(&path, &bytes).unwrap();
        let e = expect_err(Lockbox::open(&path, key()), name);
        assert!(
            matches!(e, Error::NotALockbox),
            "{name}: open gave {e:?}, expected NotALockbox"
        );
        let e = expect_err(Lockbox::builder().read_only(true).open(&path, key()), name);
        assert!(
            matches!(e, Error::NotALockbox),
            "{name}: read-only open gave {e:?}"
        );
        let e = expect_err(Lockbox::builder().open_bytes(bytes.clone(), key()), name);
        assert!(
            matches!(e, Error::NotALockbox),
            "{name}: open_bytes gave {e:?}"
        );
        // the file is left alone
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name}: file was modified by a failed open"
        );
    }
}

#[test]
fn create_over_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.txt");
    std::fs::write(&other, b"precious").unwrap();
    let e = expect_err(Lockbox::create(&other, key()), "create over a text file");
    assert!(matches!(e, Error::AlreadyExists(_)), "got {e:?}");
    assert_eq!(
        std::fs::read(&other).unwrap(),
        b"precious",
        "existing file was modified"
    );

    let lbp = dir.path().join("x.lbox");
    make_small(&lbp);
    let before = std::fs::read(&lbp).unwrap();
    let e = expect_err(Lockbox::create(&lbp, key()), "create over a lockbox");
    assert!(matches!(e, Error::AlreadyExists(_)), "got {e:?}");
    let e = expect_err(
        Lockbox::builder().kdf(min_kdf()).create(&lbp, key()),
        "builder create over a lockbox",
    );
    assert!(matches!(e, Error::AlreadyExists(_)), "got {e:?}");
    assert_eq!(
        std::fs::read(&lbp).unwrap(),
        before,
        "existing lockbox was modified"
    );
    let lb = Lockbox::open(&lbp, key()).unwrap();
    assert_eq!(lb.get("a.txt").unwrap(), b"alpha");
}

#[test]
fn hostile_paths_refused() {
    let long256 = "x".repeat(256);
    let hostile: Vec<String> = vec![
        "..".into(),
        ".".into(),
        "a/../b".into(),
        "a/..".into(),
        "../a".into(),
        "/".into(),
        "".into(),
        "//".into(),
        "a//b".into(),
        "a/".into(),
        "./a".into(),
        "a/.".into(),
        "a/./b".into(),
        "a\\b".into(),
        "\\".into(),
        "a\0b".into(),
        "\0".into(),
        long256.clone(),
        format!("a/{long256}/b"),
    ];
    let mut lb = Lockbox::builder().create_in_memory(key()).unwrap();
    lb.put("ok/file", b"ok").unwrap();
    for p in &hostile {
        let is_invalid = |e: &Error| matches!(e, Error::InvalidPath { .. });
        let e = expect_err(lb.put(p, b"evil"), &format!("put({p:?})"));
        assert!(
            is_invalid(&e),
            "put({p:?}) gave {e:?}, expected InvalidPath"
        );
        let e = expect_err(
            lb.put_reader(p, &b"evil"[..]),
            &format!("put_reader({p:?})"),
        );
        assert!(
            is_invalid(&e),
            "put_reader({p:?}) gave {e:?}, expected InvalidPath"
        );
        let e = expect_err(lb.symlink(p, "ok/file"), &format!("symlink({p:?})"));
        assert!(
            is_invalid(&e),
            "symlink({p:?}) gave {e:?}, expected InvalidPath"
        );
        let e = expect_err(lb.mkdir(p), &format!("mkdir({p:?})"));
        assert!(
            is_invalid(&e),
            "mkdir({p:?}) gave {e:?}, expected InvalidPath"
        );
        let e = expect_err(lb.get(p), &format!("get({p:?})"));
        assert!(
            is_invalid(&e),
            "get({p:?}) gave {e:?}, expected InvalidPath"
        );
        let e = expect_err(lb.stat(p), &format!("stat({p:?})"));
        assert!(
            is_invalid(&e),
            "stat({p:?}) gave {e:?}, expected InvalidPath"
        );
        let e = expect_err(lb.rename("ok/file", p), &format!("rename(ok/file, {p:?})"));
        assert!(
            is_invalid(&e),
            "rename(ok/file, {p:?}) gave {e:?}, expected InvalidPath"
        );
        let e = expect_err(lb.rename(p, "ok/new"), &format!("rename({p:?}, ok/new)"));
        assert!(
            is_invalid(&e),
            "rename({p:?}, ok/new) gave {e:?}, expected InvalidPath"
        );
        if !p.is_empty() && p != "/" && p != "//" {
            // "" (and "/" which normalises to it) names the root for delete
            let e = expect_err(lb.delete(p), &format!("delete({p:?})"));
            assert!(
                is_invalid(&e),
                "delete({p:?}) gave {e:?}, expected InvalidPath"
            );
        }
    }
    // nothing was created by any refused call
    let listed: Vec<String> = list_all(&lb, "").into_iter().map(|e| e.path).collect();
    assert_eq!(listed, vec!["ok/file".to_string()]);
    assert_eq!(lb.get("ok/file").unwrap(), b"ok");
    lb.commit().unwrap();
    let listed: Vec<String> = list_all(&lb, "").into_iter().map(|e| e.path).collect();
    assert_eq!(listed, vec!["ok/file".to_string()]);
}

#[test]
fn leading_slash_and_long_components_accepted() {
    let mut lb = Lockbox::builder().create_in_memory(key()).unwrap();
    lb.put("/a/b", b"slash").unwrap();
    assert_eq!(lb.get("a/b").unwrap(), b"slash");
    assert_eq!(lb.get("/a/b").unwrap(), b"slash");
    let st = lb.stat("/a/b").unwrap().expect("stat /a/b");
    assert_eq!(st.path, "a/b", "a leading '/' is dropped");
    let long255 = "y".repeat(255);
    let p = format!("dir/{long255}/{long255}");
    lb.put(&p, b"long")
        .expect("255-byte components are accepted");
    // multi-byte UTF-8: 85 three-byte characters = 255 bytes
    let wide = "€".repeat(85);
    assert_eq!(wide.len(), 255);
    lb.put(&wide, b"wide")
        .expect("a 255-byte UTF-8 component is accepted");
    let e = expect_err(
        lb.put(&format!("{wide}x"), b"too wide"),
        "256-byte UTF-8 component",
    );
    assert!(matches!(e, Error::InvalidPath { .. }), "got {e:?}");
    lb.commit().unwrap();
    let img = lb.image().unwrap();
    let lb = Lockbox::builder().open_bytes(img, key()).unwrap();
    assert_eq!(lb.get(&p).unwrap(), b"long");
    assert_eq!(lb.get(&wide).unwrap(), b"wide");
    let mut listed: Vec<String> = list_all(&lb, "").into_iter().map(|e| e.path).collect();
    let mut want = vec!["a/b".to_string(), p.clone(), wide.clone()];
    want.sort_by(|a, b| cmp_paths(a, b));
    assert_eq!(listed, want);
    listed.clear();
}

#[test]
fn two_writers_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lock.lbox");
    let first = Lockbox::create(&path, key()).expect("create");
    // the creating handle holds the writer lock
    let e = expect_err(
        Lockbox::open(&path, key()),
        "second writer while the creator is alive",
    );
    assert!(matches!(e, Error::Locked), "got {e:?}");
    drop(first);

    let mut w = Lockbox::open(&path, key()).expect("open writer");
    w.put("f", b"1").unwrap();
    w.commit().unwrap();
    let e = expect_err(Lockbox::open(&path, key()), "second writer");
    assert!(matches!(e, Error::Locked), "second writer: got {e:?}");
    let e = expect_err(
        Lockbox::builder().open(&path, key()),
        "second writer via builder",
    );
    assert!(
        matches!(e, Error::Locked),
        "second writer via builder: got {e:?}"
    );
    let e = expect_err(
        Lockbox::builder().read_only(true).open(&path, key()),
        "reader while a writer is open",
    );
    assert!(
        matches!(e, Error::Locked),
        "reader while a writer is open: got {e:?}"
    );
    // still usable after the refused opens
    w.put("g", b"2").unwrap();
    w.commit().unwrap();
    drop(w);

    let w2 = Lockbox::open(&path, key()).expect("open after the first writer was dropped");
    assert_eq!(w2.get("g").unwrap(), b"2");
    drop(w2);

    // two readers share
    let r1 = Lockbox::builder()
        .read_only(true)
        .open(&path, key())
        .expect("reader 1");
    let r2 = Lockbox::builder()
        .read_only(true)
        .open(&path, key())
        .expect("reader 2");
    assert_eq!(r1.get("f").unwrap(), b"1");
    assert_eq!(r2.get("g").unwrap(), b"2");
    drop(r1);
    drop(r2);
    let w3 = Lockbox::open(&path, key()).expect("writer after readers are gone");
    drop(w3);
}

#[test]
fn writes_on_read_only_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.lbox");
    make_small(&path);
    let before = std::fs::read(&path).unwrap();
    let mut ro = Lockbox::builder()
        .read_only(true)
        .open(&path, key())
        .expect("read-only open");
    let checks: Vec<(&str, lockbox::Result<()>)> = vec![
        ("put", ro.put("new", b"x")),
        ("put over existing", ro.put("a.txt", b"x")),
        ("put_reader", ro.put_reader("new2", &b"x"[..]).map(|_| ())),
        ("symlink", ro.symlink("l", "a.txt")),
        ("mkdir", ro.mkdir("d")),
        ("delete", ro.delete("a.txt").map(|_| ())),
        ("delete dir", ro.delete("dir").map(|_| ())),
        ("rename", ro.rename("a.txt", "b.txt")),
        ("set_var", ro.set_var("v", b"new")),
        ("remove_var", ro.remove_var("v").map(|_| ())),
    ];
    for (what, r) in checks {
        let e = expect_err(r, what);
        assert!(
            matches!(e, Error::ReadOnly),
            "{what} on a read-only handle gave {e:?}"
        );
    }
    assert!(!ro.has_changes());
    assert_eq!(ro.get("a.txt").unwrap(), b"alpha");
    assert_eq!(ro.get("dir/b.bin").unwrap(), content(3, 100_000));
    assert_eq!(ro.var("v").unwrap().as_deref(), Some(&b"var"[..]));
    assert!(ro.stat("new").unwrap().is_none());
    ro.verify().expect("verify on a read-only handle");
    drop(ro);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a read-only handle modified the file"
    );
}

#[test]
fn passphrase_right_and_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw.lbox");
    let mut lb = Lockbox::builder()
        .kdf(min_kdf())
        .create(&path, Key::passphrase("correct horse"))
        .expect("create with a passphrase");
    lb.put("secret", b"s3cr3t").unwrap();
    lb.commit().unwrap();
    drop(lb);
    let lb =
        Lockbox::open(&path, Key::passphrase("correct horse")).expect("open with the passphrase");
    assert_eq!(lb.get("secret").unwrap(), b"s3cr3t");
    drop(lb);
    let e = expect_err(
        Lockbox::open(&path, Key::passphrase("wrong")),
        "wrong passphrase",
    );
    assert!(matches!(e, Error::WrongKey), "wrong passphrase gave {e:?}");
    // a raw key on a passphrase-only lockbox
    let e = expect_err(
        Lockbox::open(&path, key()),
        "raw key on a passphrase lockbox",
    );
    assert!(matches!(e, Error::WrongKey), "raw key gave {e:?}");
    // a passphrase on a raw-key lockbox
    let raw = dir.path().join("raw.lbox");
    make_small(&raw);
    let e = expect_err(
        Lockbox::open(&raw, Key::passphrase("correct horse")),
        "passphrase on a raw lockbox",
    );
    assert!(
        matches!(e, Error::WrongKey),
        "passphrase on a raw-key lockbox gave {e:?}"
    );
}

#[test]
fn kdf_below_minimum_refused() {
    let dir = tempfile::tempdir().unwrap();
    let weak = [
        KdfParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        },
        KdfParams {
            m_kib: 19 * 1024 - 1,
            t: 2,
            p: 1,
        },
        KdfParams {
            m_kib: 19 * 1024,
            t: 1,
            p: 1,
        },
        KdfParams {
            m_kib: 19 * 1024,
            t: 2,
            p: 0,
        },
    ];
    for (k, params) in weak.into_iter().enumerate() {
        let path = dir.path().join(format!("weak{k}.lbox"));
        let e = expect_err(
            Lockbox::builder()
                .kdf(params)
                .create(&path, Key::passphrase("pw")),
            &format!("create with weak KDF #{k}"),
        );
        assert!(
            matches!(e, Error::InvalidKdfParams(_)),
            "weak KDF #{k}: got {e:?}"
        );
        let e = expect_err(
            Lockbox::builder()
                .kdf(params)
                .create_in_memory(Key::passphrase("pw")),
            &format!("create_in_memory with weak KDF #{k}"),
        );
        assert!(
            matches!(e, Error::InvalidKdfParams(_)),
            "weak KDF #{k} in memory: got {e:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Damage
// ---------------------------------------------------------------------------

struct Expected {
    files: Vec<(String, Vec<u8>)>,
    vars: Vec<(String, Vec<u8>)>,
}

/// What reading a damaged archive showed. The contract allows two states:
/// the latest commit, or (when the newest commit slot or its root does not
/// verify) the previous commit, which in these tests is the empty archive.
/// Mixing the two, or any wrong byte, is a failure.
#[derive(Default, Debug)]
struct Outcome {
    errs: Vec<&'static str>,
    latest: usize,
    empty: usize,
}

impl Outcome {
    fn fell_back(&self) -> bool {
        self.empty > 0
    }
    fn kinds(&self) -> Vec<&'static str> {
        let mut k = self.errs.clone();
        k.sort();
        k.dedup();
        k
    }
}

/// Opens `bytes` and reads everything.
fn read_everything(bytes: Vec<u8>, exp: &Expected, do_verify: bool, what: &str) -> Outcome {
    match Lockbox::builder().open_bytes(bytes, key()) {
        Ok(lb) => read_all_from(&lb, exp, do_verify, what),
        Err(e) => Outcome {
            errs: vec![err_name(&e)],
            ..Outcome::default()
        },
    }
}

/// Reads every file (get, stat, read_at), the listing and the variables.
/// Panics (test failure) on wrong data or on a mix of states.
fn read_all_from(lb: &Lockbox, exp: &Expected, do_verify: bool, what: &str) -> Outcome {
    let mut o = Outcome::default();
    for (p, want) in &exp.files {
        match lb.get(p) {
            Ok(got) => {
                assert!(
                    &got == want,
                    "{what}: get({p}) returned WRONG DATA ({} bytes)",
                    got.len()
                );
                o.latest += 1;
            }
            Err(Error::NotFound(_)) => o.empty += 1,
            Err(e) => o.errs.push(err_name(&e)),
        }
        match lb.stat(p) {
            Ok(Some(e)) => {
                assert_eq!(e.len, want.len() as u64, "{what}: stat({p}) wrong len");
                o.latest += 1;
            }
            Ok(None) => o.empty += 1,
            Err(e) => o.errs.push(err_name(&e)),
        }
        let mut buf = [0u8; 4096];
        let off = (want.len() / 2) as u64;
        match lb.read_at(p, off, &mut buf) {
            Ok(n) => {
                let w = &want[off as usize..];
                assert_eq!(n, w.len().min(4096), "{what}: read_at({p}) count");
                assert!(
                    buf[..n] == w[..n],
                    "{what}: read_at({p}) returned WRONG DATA"
                );
                o.latest += 1;
            }
            Err(Error::NotFound(_)) => o.empty += 1,
            Err(e) => o.errs.push(err_name(&e)),
        }
    }
    match lb.list("") {
        Ok(it) => {
            let mut seen = Vec::new();
            let mut complete = true;
            for item in it {
                match item {
                    Ok(e) => seen.push(e.path),
                    Err(e) => {
                        o.errs.push(err_name(&e));
                        complete = false;
                        break;
                    }
                }
            }
            let mut want: Vec<&String> = exp.files.iter().map(|(p, _)| p).collect();
            want.sort_by(|a, b| cmp_paths(a, b));
            for (k, s) in seen.iter().enumerate() {
                assert_eq!(Some(&s), want.get(k), "{what}: list entry #{k} is wrong");
            }
            if !seen.is_empty() {
                o.latest += 1;
            } else if complete && !want.is_empty() {
                o.empty += 1;
            }
            if complete && !seen.is_empty() {
                assert_eq!(
                    seen.len(),
                    want.len(),
                    "{what}: list(\"\") is incomplete without an error"
                );
            }
        }
        Err(e) => o.errs.push(err_name(&e)),
    }
    for (n, want) in &exp.vars {
        match lb.var(n) {
            Ok(Some(v)) => {
                assert!(&v == want, "{what}: var({n}) returned WRONG DATA");
                o.latest += 1;
            }
            Ok(None) => o.empty += 1,
            Err(e) => o.errs.push(err_name(&e)),
        }
    }
    if do_verify && let Err(e) = lb.verify() {
        o.errs.push(err_name(&e));
    }
    assert!(
        o.latest == 0 || o.empty == 0,
        "{what}: reads mix the latest commit ({} answers) with a missing/older state ({} answers)",
        o.latest,
        o.empty
    );
    o
}

/// Mostly TOC: many empty files with incompressible names, a small node
/// capacity so that the TOC is many pages.
fn toc_heavy(path: &Path) -> Expected {
    let mut rng = XorShift::new(4242);
    let mut lb = Lockbox::builder()
        .node_capacity(4096)
        .create(path, key())
        .expect("create");
    let mut files = Vec::new();
    for i in 0..3000 {
        let name: String = (0..24)
            .map(|_| format!("{:02x}", rng.next_u64() as u8))
            .collect();
        files.push((format!("d{:02}/{name}", i % 17), Vec::new()));
    }
    for i in 0..5u64 {
        files.push((format!("content/{i}"), content(i, 300)));
    }
    for (p, d) in &files {
        lb.put(p, d).unwrap();
    }
    lb.commit().unwrap();
    Expected {
        files,
        vars: vec![],
    }
}

#[test]
fn damaged_toc_byte_gives_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dmg.lbox");
    let exp = toc_heavy(&path);
    let orig = std::fs::read(&path).unwrap();
    let len = orig.len();
    eprintln!("[damage] file length {len}");
    for (k, frac) in [(1usize, 2usize), (2, 5), (3, 5)] {
        let pos = len * k / frac;
        let mut bytes = orig.clone();
        bytes[pos] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let what = format!("byte {pos} of {len} flipped");
        let o = catch_unwind(AssertUnwindSafe(|| match Lockbox::open(&path, key()) {
            Ok(lb) => read_all_from(&lb, &exp, true, &what),
            Err(e) => Outcome {
                errs: vec![err_name(&e)],
                ..Outcome::default()
            },
        }))
        .unwrap_or_else(|_| panic!("{what}: the library PANICKED"));
        eprintln!(
            "[damage] {what}: {} errors, kinds {:?}, fell back to the previous commit: {}",
            o.errs.len(),
            o.kinds(),
            o.fell_back()
        );
        assert!(
            o.errs.contains(&"Corrupt") || o.fell_back(),
            "{what}: no Error::Corrupt from open, get, stat, read_at, list or verify"
        );
        assert!(
            o.errs.iter().all(|e| *e == "Corrupt"),
            "{what}: damage must be reported as Error::Corrupt, saw {:?}",
            o.kinds()
        );
    }
}

#[test]
fn byte_flip_sweep_never_panics_or_lies() {
    let mut lb = Lockbox::builder().create_in_memory(key()).unwrap();
    let mut files = Vec::new();
    for i in 0..40u64 {
        files.push((format!("s/f{i}"), content(i, (i * 37 % 900) as usize)));
    }
    files.push(("big".to_string(), content(7, 70_000)));
    for (p, d) in &files {
        lb.put(p, d).unwrap();
    }
    lb.set_var("v", b"value").unwrap();
    lb.commit().unwrap();
    let img = lb.image().unwrap();
    let exp = Expected {
        files,
        vars: vec![("v".to_string(), b"value".to_vec())],
    };
    let len = img.len();
    let positions = 700usize;
    let stride = (len / positions).max(1);
    let mut corrupt_seen = 0;
    let mut undetected = 0;
    let mut fell_back = 0;
    let mut pos = 0;
    let mut k = 0;
    while pos < len {
        let mut bytes = img.clone();
        bytes[pos] ^= 0x01 << (k % 8);
        let what = format!("bit {} of byte {pos} of {len}", k % 8);
        let o = catch_unwind(AssertUnwindSafe(|| {
            read_everything(bytes, &exp, k % 4 == 0, &what)
        }))
        .unwrap_or_else(|_| {
            panic!("{what}: the library PANICKED (or returned wrong data, see above)")
        });
        if o.errs.contains(&"Corrupt") {
            corrupt_seen += 1;
        }
        if o.fell_back() {
            fell_back += 1;
        } else if o.errs.is_empty() {
            undetected += 1;
        }
        pos += stride + (k % 3);
        k += 1;
    }
    eprintln!(
        "[sweep] {k} positions in a {len}-byte image: {corrupt_seen} gave Corrupt, {fell_back} opened as the previous commit, {undetected} had no visible effect"
    );
    assert!(
        corrupt_seen > 0,
        "no flipped byte ever produced Error::Corrupt"
    );
}

#[test]
fn truncated_file_gives_error_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.lbox");
    make_small(&path);
    let orig = std::fs::read(&path).unwrap();
    let exp = Expected {
        files: vec![
            ("a.txt".into(), b"alpha".to_vec()),
            ("dir/b.bin".into(), content(3, 100_000)),
        ],
        vars: vec![("v".into(), b"var".to_vec())],
    };
    let len = orig.len();
    for cut in [
        0,
        8,
        12,
        100,
        4096,
        len / 4,
        len / 2,
        len - 4096.min(len / 2),
        len - 1,
    ] {
        let bytes = orig[..cut].to_vec();
        let what = format!("truncated to {cut} of {len}");
        let o = catch_unwind(AssertUnwindSafe(|| {
            read_everything(bytes, &exp, true, &what)
        }))
        .unwrap_or_else(|_| panic!("{what}: the library PANICKED"));
        eprintln!(
            "[truncate] {what}: errors {:?}, fell back {}",
            o.kinds(),
            o.fell_back()
        );
        if cut <= len / 2 {
            assert!(
                !o.errs.is_empty() || o.fell_back(),
                "{what}: no error and no fallback"
            );
        }
    }
}
