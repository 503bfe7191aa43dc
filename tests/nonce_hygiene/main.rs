//! Nonce and key hygiene.
//!
//! Nonces are read from the bytes (not from the recorder hook that the
//! model and crash suites use, `testing::start_recording`): every region
//! reachable from each commit is found with `fuzz/src/forge.rs` (an
//! independent reader of the format that unwraps the master key from a
//! raw-key slot), and every write the lockbox makes is recorded by a
//! backend that keeps a log. Checked:
//!
//! - no nonce seals two different regions under one subkey, across many
//!   commits of a model-like workload, a rollback, and a crash (a handle
//!   abandoned after writing pages, the file reopened from the bytes on
//!   "disk" and written again at the same offsets);
//! - two lockboxes made with the same raw key have different archive ids
//!   and master keys, and the same plaintext gives different ciphertext;
//!   writing the same content twice gives different region bytes;
//! - `Debug` of keys and handles and `Display`/`Debug` of errors never
//!   show key bytes (raw, hex, master or subkeys) or a passphrase;
//! - KDF parameters over the limits in a slot are refused before running
//!   Argon2 (before allocating its memory), and an open with a wrong
//!   passphrase runs at most one KDF per slot.
//!
//! Modules: `counting` (large allocations), `nonces` (a backend that keeps
//! every write, and the nonces read back); the tests are here.

#[path = "../../fuzz/src/forge.rs"]
mod forge;

mod counting;
mod nonces;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use lockbox::{Error, KdfParams, Key, Lockbox};

use counting::*;
use nonces::*;

const RAW: [u8; 32] = [7u8; 32];

fn key() -> Key {
    Key::raw(RAW)
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if seed.is_multiple_of(3) {
                (i / 50) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Nonce uniqueness across commits, a rollback and a crash
// ---------------------------------------------------------------------------

/// One round of changes: small (inline and packed) files, a framed file of
/// whole incompressible 64 KiB frames, deletes, a rename and variables.
fn round(lb: &mut Lockbox, r: u64) {
    for i in 0..12u64 {
        let len = [10usize, 200, 1500, 9000][(i % 4) as usize];
        lb.put(&format!("r{}/f{i}", r % 3), &data(r * 100 + i, len))
            .unwrap();
    }
    lb.put(&format!("big{}", r % 2), &data(r * 7 + 1, 2 * 65536))
        .unwrap();
    if r > 0 {
        let _ = lb.delete(&format!("r{}/f3", (r + 1) % 3));
        let _ = lb.rename(&format!("r{}/f5", (r + 2) % 3), &format!("moved{r}"));
    }
    lb.set_var("counter", &r.to_le_bytes()).unwrap();
    lb.set_var(&format!("v{}", r % 4), &data(r + 5, 500 + r as usize * 10))
        .unwrap();
}

#[test]
fn nonces_are_never_reused() {
    let rec = Rec::default();
    let mut lb = Lockbox::builder()
        .node_capacity(1024)
        .create_on(Box::new(rec.clone()), key())
        .unwrap();
    let mut n = Nonces::default();
    let mut regions = 0;
    for r in 0..20 {
        round(&mut lb, r);
        lb.commit().unwrap();
        regions += n.snapshot(&rec.bytes(), &format!("commit {r}"));
        if r == 3 {
            // Staged pages written, then rolled back: the same offsets are
            // written again by the next round.
            lb.put("rolled/back", &data(999, 3 * 65536)).unwrap();
            lb.rollback();
        }
    }
    lb.add_key(Key::raw([9; 32])).unwrap();
    lb.remove_key(&Key::raw([9; 32])).unwrap();
    n.snapshot(&rec.bytes(), "after key changes");

    // A crash: pages written (a framed file of whole incompressible
    // frames, written at once), the handle abandoned without rollback.
    let before = rec.bytes();
    let base_writes = rec.writes().len();
    lb.put("crash/big", &data(4241, 4 * 65536)).unwrap();
    let crashed = rec.bytes();
    let crash_writes = rec.writes()[base_writes..].to_vec();
    std::mem::forget(lb);
    assert_ne!(crashed, before, "the staged frames reached the file");
    // Reopen from the bytes on "disk" and write the same shapes again.
    let rec2 = Rec::from_bytes(crashed.clone());
    let mut lb2 = Lockbox::builder()
        .open_on(Box::new(rec2.clone()), key())
        .unwrap();
    lb2.put("crash/big", &data(4244, 4 * 65536)).unwrap();
    round(&mut lb2, 100);
    lb2.commit().unwrap();
    n.snapshot(&rec2.bytes(), "after the crash");

    // The crashed handle's frames and the new handle's frames: stored
    // frames of 65536 + 41 bytes, so each write holds whole regions.
    let frame = 65536 + forge::OVERHEAD;
    let frames_in = |log: &[(u64, Vec<u8>)]| -> BTreeMap<u64, ([u8; 24], [u8; 32])> {
        let mut m = BTreeMap::new();
        for (off, b) in log {
            if *off >= forge::DATA_START && b.len() % frame == 0 {
                for r in b.chunks(frame) {
                    if r[..24].iter().any(|&x| x != 0) {
                        let at = off + (r.as_ptr() as usize - b.as_ptr() as usize) as u64;
                        m.insert(
                            at,
                            (r[..24].try_into().unwrap(), *blake3::hash(r).as_bytes()),
                        );
                    }
                }
            }
        }
        m
    };
    let a = frames_in(&crash_writes);
    let b = frames_in(&rec2.writes());
    let same_place: Vec<u64> = a.keys().filter(|o| b.contains_key(o)).copied().collect();
    eprintln!(
        "[nonce] crash: {} frames written before, {} after, {} at the same offsets",
        a.len(),
        b.len(),
        same_place.len()
    );
    assert!(
        !same_place.is_empty(),
        "the reopened handle should write where the crashed one did"
    );
    for o in &same_place {
        assert_ne!(
            a[o].0, b[o].0,
            "offset {o}: the same nonce after a crash rolled the commit back"
        );
    }
    let mut frame_nonces: BTreeMap<[u8; 24], BTreeSet<[u8; 32]>> = BTreeMap::new();
    for (nonce, h) in a.values().chain(b.values()) {
        frame_nonces.entry(*nonce).or_default().insert(*h);
    }
    assert!(
        frame_nonces.values().all(|v| v.len() == 1),
        "a nonce sealed two different frames across the crash"
    );

    let logged = n.writes(&rec.writes()) + n.writes(&rec2.writes());
    let distinct: BTreeSet<[u8; 24]> = n
        .seen
        .keys()
        .map(|(_, x)| *x)
        .chain(n.written.keys().copied())
        .collect();
    eprintln!(
        "[nonce] {regions} reachable regions over 20 commits, {logged} region writes logged, {} distinct nonces",
        distinct.len()
    );
    assert!(
        distinct.len() > 300,
        "too few nonces seen for the test to mean anything"
    );
    n.assert_unique();
}

// ---------------------------------------------------------------------------
// Same key, different archives; same content, different bytes
// ---------------------------------------------------------------------------

/// The regions of framed file `path` (its frames) in `image`.
fn frames_of(image: &[u8], path: &str) -> Vec<Vec<u8>> {
    let keys = forge::unwrap_raw(image, &RAW).unwrap();
    let rec = forge::newest_commit(&keys, image).unwrap();
    let (_, leaf) =
        forge::open(&keys, image, forge::kind::TOC_NODE, &rec.toc.root.unwrap()).unwrap();
    let forge::Node::Leaf(entries) = forge::decode_node(&leaf).unwrap() else {
        panic!("one leaf expected")
    };
    let (_, v) = entries
        .iter()
        .find(|(k, _)| *k == forge::key_of(path))
        .unwrap();
    match forge::Record::decode(v).unwrap().content {
        forge::Content::Frames { root, depth: 0, .. } => {
            vec![image[root.offset as usize..root.end() as usize].to_vec()]
        }
        c => panic!("{path}: {c:?}"),
    }
}

#[test]
fn same_key_different_archives_and_ciphertexts() {
    let content = data(3, 50_000); // compressible, one frame
    let make = || {
        let mut lb = Lockbox::builder().create_in_memory(key()).unwrap();
        lb.put("f", &content).unwrap();
        lb.commit().unwrap();
        lb.image().unwrap()
    };
    let (a, b) = (make(), make());
    let (ka, kb) = (
        forge::unwrap_raw(&a, &RAW).unwrap(),
        forge::unwrap_raw(&b, &RAW).unwrap(),
    );
    assert_ne!(
        ka.archive_id, kb.archive_id,
        "two lockboxes share an archive id"
    );
    assert_ne!(ka.master, kb.master, "two lockboxes share a master key");
    let (fa, fb) = (frames_of(&a, "f"), frames_of(&b, "f"));
    assert_eq!(fa[0].len(), fb[0].len(), "same content, same sealed length");
    assert_ne!(fa[0][..24], fb[0][..24], "same nonce in two archives");
    let same = fa[0][24..]
        .iter()
        .zip(&fb[0][24..])
        .filter(|(x, y)| x == y)
        .count();
    assert!(
        same < fa[0].len() / 64,
        "ciphertexts of the same plaintext share {same} bytes"
    );

    // The same content twice in one archive is stored once (one sealing,
    // one nonce: `data::dedup`) ...
    let mut lb = Lockbox::builder().create_in_memory(key()).unwrap();
    lb.put("f", &content).unwrap();
    lb.put("g", &content).unwrap();
    lb.commit().unwrap();
    let img = lb.image().unwrap();
    let (f, g) = (frames_of(&img, "f"), frames_of(&img, "g"));
    assert_eq!(f, g, "the same content was stored twice");
    // ... and sealed again only once every copy is gone: then under a new
    // nonce, into new ciphertext.
    lb.delete("f").unwrap();
    lb.delete("g").unwrap();
    lb.commit().unwrap();
    lb.put("h", &content).unwrap();
    lb.commit().unwrap();
    let img2 = lb.image().unwrap();
    let h = frames_of(&img2, "h");
    assert_ne!(f[0][..24], h[0][..24], "a rewrite reused a nonce");
    assert_ne!(
        f[0][24..],
        h[0][24..],
        "a rewrite of the same content reproduced its ciphertext"
    );
}

// ---------------------------------------------------------------------------
// Nothing secret in Debug or Display
// ---------------------------------------------------------------------------

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every way `secret` might show up in text: hex (both cases), a Rust
/// `{:?}` array, the raw bytes as text, and any 8-byte window in hex.
fn leaks(text: &str, secret: &[u8]) -> Option<String> {
    let h = hex(secret);
    let lower = text.to_lowercase();
    if lower.contains(&h) {
        return Some("hex".into());
    }
    for w in secret.windows(8) {
        if lower.contains(&hex(w)) {
            return Some(format!("hex window {}", hex(w)));
        }
    }
    let arr = format!("{secret:?}");
    if text.contains(&arr[1..arr.len() - 1]) {
        return Some("debug array".into());
    }
    if let Ok(s) = std::str::from_utf8(secret)
        && s.len() >= 4
        && text.contains(s)
    {
        return Some("raw text".into());
    }
    None
}

#[test]
fn no_key_material_in_debug_or_display() {
    // Runs Argon2: keep the allocation counters of the KDF tests clean.
    let _g = COUNT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let raw: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(0xA1));
    let pass = "correct horse battery staple 9f3e";
    let kdf = KdfParams {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };
    let dir = std::env::temp_dir().join(format!("lockbox-nonce-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("k.lbox");
    let mut lb = Lockbox::builder()
        .kdf(kdf)
        .create(&path, Key::raw(raw))
        .unwrap();
    lb.add_key(Key::passphrase(pass)).unwrap();
    lb.put("a", b"x").unwrap();
    lb.commit().unwrap();
    drop(lb);
    let img = std::fs::read(&path).unwrap();
    let keys = forge::unwrap_raw(&img, &raw).unwrap();
    let master = keys.master;
    let subkeys: Vec<[u8; 32]> = [
        "lockbox v1 2026-11 metadata pages",
        "lockbox v1 2026-11 data frames",
        "lockbox v1 2026-11 commit slots",
        "lockbox v1 2026-11 content hash",
    ]
    .iter()
    .map(|c| blake3::derive_key(c, &master))
    .collect();

    let mut texts: Vec<(String, String)> = Vec::new();
    texts.push(("Key::raw Debug".into(), format!("{:?}", Key::raw(raw))));
    texts.push(("Key::raw Debug alt".into(), format!("{:#?}", Key::raw(raw))));
    texts.push((
        "Key::passphrase Debug".into(),
        format!("{:?}", Key::passphrase(pass)),
    ));
    let lb = Lockbox::builder()
        .kdf(kdf)
        .open(&path, Key::passphrase(pass))
        .unwrap();
    texts.push(("Lockbox Debug".into(), format!("{lb:?}")));
    texts.push(("Lockbox Debug alt".into(), format!("{lb:#?}")));
    drop(lb);
    // Errors: wrong raw key, wrong passphrase, damage, bad KDF parameters.
    let mut errs: Vec<Error> = Vec::new();
    let mut wrong = raw;
    wrong[0] ^= 1;
    errs.extend(Lockbox::open(&path, Key::raw(wrong)).err());
    errs.extend(
        Lockbox::builder()
            .kdf(kdf)
            .open(&path, Key::passphrase(format!("{pass}!")))
            .err(),
    );
    errs.extend(
        Lockbox::builder()
            .kdf(KdfParams {
                m_kib: 1,
                t: 1,
                p: 1,
            })
            .create_in_memory(Key::passphrase(pass))
            .err(),
    );
    let mut bad = img.clone();
    let last = bad.len() - 5;
    bad[last] ^= 0x40;
    if let Ok(lb) = Lockbox::builder().open_bytes(bad, Key::raw(raw)) {
        errs.extend(lb.verify().err());
        errs.extend(lb.get("a").err());
    }
    let mut bad = img.clone();
    bad[forge::COMMIT_SLOTS[0] as usize + 30] ^= 1;
    bad[forge::COMMIT_SLOTS[1] as usize + 30] ^= 1;
    errs.extend(Lockbox::builder().open_bytes(bad, Key::raw(raw)).err());
    assert!(errs.len() >= 4, "expected several errors, got {errs:?}");
    for e in &errs {
        texts.push((format!("error Display {e:?}"), e.to_string()));
        texts.push(("error Debug".into(), format!("{e:?}")));
        texts.push(("error Debug alt".into(), format!("{e:#?}")));
    }
    let secrets: Vec<(&str, Vec<u8>)> = [
        ("raw key", raw.to_vec()),
        ("master key", master.to_vec()),
        ("passphrase", pass.as_bytes().to_vec()),
    ]
    .into_iter()
    .chain(subkeys.iter().map(|k| ("subkey", k.to_vec())))
    .collect();
    for (what, text) in &texts {
        for (name, s) in &secrets {
            assert!(
                leaks(text, s).is_none(),
                "{what} shows the {name} ({:?}): {text}",
                leaks(text, s)
            );
        }
    }
    eprintln!(
        "[secrets] {} texts checked against {} secrets",
        texts.len(),
        secrets.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// KDF limits and one KDF per slot
// ---------------------------------------------------------------------------

const MIN_KDF: KdfParams = KdfParams {
    m_kib: 19 * 1024,
    t: 2,
    p: 1,
};

/// Patches slot `i` of both slot tables and recomputes their checksums
/// (format.md §3: slot i at 16 + 128·i; m at +1, t at +5, p at +9;
/// BLAKE3 of bytes 0..4064 at 4064).
fn patch_kdf(image: &mut [u8], i: usize, m: u32, t: u32, p: u32) {
    for table in forge::SLOT_TABLES {
        let s = table + 16 + 128 * i;
        image[s + 1..s + 5].copy_from_slice(&m.to_le_bytes());
        image[s + 5..s + 9].copy_from_slice(&t.to_le_bytes());
        image[s + 9..s + 13].copy_from_slice(&p.to_le_bytes());
        forge::fix_table_checksum(image, table);
    }
}

fn passphrase_image(slots: usize) -> Vec<u8> {
    let mut lb = Lockbox::builder()
        .kdf(MIN_KDF)
        .create_in_memory(Key::passphrase("pw0"))
        .unwrap();
    for i in 1..slots {
        lb.add_key(Key::passphrase(format!("pw{i}"))).unwrap();
    }
    lb.put("a", b"A").unwrap();
    lb.commit().unwrap();
    lb.image().unwrap()
}

#[test]
fn kdf_parameters_over_the_limits_are_refused_before_allocating() {
    let _g = COUNT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let one = passphrase_image(1);
    let img = passphrase_image(2);
    // Sanity: the patching is right (the same values open).
    let mut same = img.clone();
    patch_kdf(&mut same, 0, MIN_KDF.m_kib, MIN_KDF.t, MIN_KDF.p);
    assert!(
        Lockbox::builder()
            .open_bytes(same, Key::passphrase("pw0"))
            .is_ok()
    );
    let max_m = 4 * 1024 * 1024;
    for (case, m, t, p) in [
        ("m = 4 GiB + 1 KiB", max_m + 1, 2, 1),
        ("m = u32::MAX", u32::MAX, 2, 1),
        ("t = 17", MIN_KDF.m_kib, 17, 1),
        ("t = u32::MAX", MIN_KDF.m_kib, u32::MAX, 1),
        ("p = 17", MIN_KDF.m_kib, 2, 17),
        ("p = 0", MIN_KDF.m_kib, 2, 0),
    ] {
        // One slot, over the limit: refused, nothing large allocated.
        let mut bad = one.clone();
        patch_kdf(&mut bad, 0, m, t, p);
        let t0 = Instant::now();
        let (r, big, largest) = count_big(|| {
            Lockbox::builder()
                .open_bytes(bad, Key::passphrase("pw0"))
                .map(|_| ())
        });
        let took = t0.elapsed();
        eprintln!(
            "[kdf] {case}: {r:?} in {took:?}, {big} allocations >= 16 MiB, largest {largest}"
        );
        assert!(
            matches!(r, Err(Error::InvalidKdfParams(_))),
            "{case}: {r:?}"
        );
        assert_eq!(
            big, 0,
            "{case}: {big} large allocation(s) before refusing (largest {largest} bytes)"
        );
        assert!(took.as_millis() < 2000, "{case}: refusing took {took:?}");
        // Two slots, the first over the limit: the second still opens
        // (one bad slot does not lock the others out), and the bad one
        // costs no KDF run.
        let mut bad = img.clone();
        patch_kdf(&mut bad, 0, m, t, p);
        let (r, big, largest) = count_big(|| {
            Lockbox::builder()
                .open_bytes(bad, Key::passphrase("pw1"))
                .map(|lb| lb.get("a").unwrap())
        });
        assert_eq!(
            r.unwrap(),
            b"A",
            "{case}: the valid second slot no longer opens"
        );
        assert_eq!(
            big, 1,
            "{case}: opening through slot 1 ran {big} KDFs (largest allocation {largest})"
        );
    }
}

#[test]
fn wrong_passphrase_runs_one_kdf_per_slot() {
    let _g = COUNT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let img = passphrase_image(3);
    // One KDF: the first slot matches.
    let t0 = Instant::now();
    let (r, one, _) = count_big(|| {
        Lockbox::builder()
            .open_bytes(img.clone(), Key::passphrase("pw0"))
            .map(|_| ())
    });
    let t_one = t0.elapsed();
    r.unwrap();
    // Three slots, none matches.
    let t0 = Instant::now();
    let (r, wrong, _) = count_big(|| {
        Lockbox::builder()
            .open_bytes(img.clone(), Key::passphrase("nope"))
            .map(|_| ())
    });
    let t_wrong = t0.elapsed();
    // A raw key runs no KDF at all against passphrase slots.
    let (r2, raw_runs, _) = count_big(|| {
        Lockbox::builder()
            .open_bytes(img.clone(), Key::raw([1; 32]))
            .map(|_| ())
    });
    eprintln!(
        "[kdf] right passphrase: {one} KDF allocation(s) in {t_one:?}; wrong: {wrong} in {t_wrong:?} (3 slots); raw key: {raw_runs}"
    );
    assert!(matches!(r, Err(Error::WrongKey)), "{r:?}");
    assert!(matches!(r2, Err(Error::WrongKey)), "{r2:?}");
    assert_eq!(
        one, 1,
        "opening with the first slot's passphrase ran {one} KDFs"
    );
    assert_eq!(
        wrong, 3,
        "a wrong passphrase against 3 slots ran {wrong} KDFs (allocations of m)"
    );
    assert_eq!(raw_runs, 0, "a raw key ran a KDF against passphrase slots");
    // Timing, generously: at most one KDF per slot plus slack.
    assert!(
        t_wrong.as_secs_f64() <= 3.0 * t_one.as_secs_f64() * 2.0 + 0.5,
        "wrong passphrase took {t_wrong:?}, one KDF {t_one:?}"
    );
}
