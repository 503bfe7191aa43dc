//! Damage to a small lockbox with a few pages of every kind (TOC leaves
//! and internal nodes, variable nodes, packed frames, framed files with an
//! index page, pack references, free-space index, redaction list):
//!
//! - one bit flipped at every byte offset;
//! - truncation at every 4096-byte boundary and at 50 random lengths;
//! - two regions of equal length swapped;
//! - regions of an older commit pasted back at their old offsets (replay);
//! - regions of another lockbox made with the same raw key spliced in.
//!
//! For every damaged image: `open` is `Ok` or a typed error; every `get`,
//! `read_at`, `stat`, `list` and `var` returns the right answer or a typed
//! error, never different bytes; and `verify()` does not pass when a byte
//! of a region reachable from the commit changed. Panics are caught and
//! reported with the case. Region boundaries come from
//! `fuzz/src/forge.rs`, an independent reader of the format.

#[path = "../fuzz/src/forge.rs"]
mod forge;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use lockbox::{EntryKind, Error, Key, Lockbox};

const RAW: [u8; 32] = [7u8; 32];

fn key() -> Key {
    Key::raw(RAW)
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Compressible bytes: runs of 32..96 equal bytes.
fn runs(seed: u64, len: usize) -> Vec<u8> {
    let r = content(seed, len / 16 + 4);
    let mut v = Vec::with_capacity(len);
    let mut i = 0;
    while v.len() < len {
        let n = 32 + (r[i] as usize % 64);
        v.extend(std::iter::repeat_n(r[i + 1], n.min(len - v.len())));
        i += 2;
    }
    v
}

/// What a lockbox should show: files, symlinks, directories, variables.
#[derive(Clone, Debug, Default, PartialEq)]
struct Expected {
    files: BTreeMap<String, Vec<u8>>,
    links: BTreeMap<String, String>,
    dirs: Vec<String>,
    vars: BTreeMap<String, Vec<u8>>,
}

/// Builds the small lockbox in memory. Returns the image after the second
/// commit (for replays), the final image, and what each shows.
fn build(seed: u64) -> ((Vec<u8>, Expected), (Vec<u8>, Expected)) {
    let mut lb = Lockbox::builder()
        .node_capacity(1024)
        .create_in_memory(key())
        .unwrap();
    let mut e = Expected::default();
    let put = |lb: &mut Lockbox, e: &mut Expected, p: &str, d: Vec<u8>| {
        lb.put(p, &d).unwrap();
        e.files.insert(p.to_string(), d);
    };
    for i in 0..24u64 {
        let len = [5usize, 60, 128, 129, 300, 900][i as usize % 6];
        let d = if i % 2 == 0 {
            runs(seed + i, len)
        } else {
            content(seed + i, len.min(200))
        };
        put(&mut lb, &mut e, &format!("dir{}/file-{i:02}.txt", i % 3), d);
    }
    // A framed file: three compressible frames and an index page.
    put(&mut lb, &mut e, "big/framed.bin", runs(seed * 2, 140_000));
    // Two one-frame files, the second the first with every byte xor 0x55:
    // their frames compress to the same length (equal-length regions).
    let a = runs(seed * 3, 40_000);
    let b: Vec<u8> = a.iter().map(|x| x ^ 0x55).collect();
    put(&mut lb, &mut e, "twins/a", a);
    put(&mut lb, &mut e, "twins/b", b);
    lb.symlink("link", "dir0/file-00.txt").unwrap();
    e.links.insert("link".into(), "dir0/file-00.txt".into());
    lb.mkdir("empty").unwrap();
    e.dirs.push("empty".into());
    for (n, v) in [
        ("v1", content(seed + 50, 20)),
        ("v2", runs(seed + 51, 700)),
        ("v3", runs(seed + 52, 3000)),
    ] {
        lb.set_var(n, &v).unwrap();
        e.vars.insert(n.into(), v);
    }
    lb.commit().unwrap();
    // Second commit: deletes and replacements free space.
    for i in [1u64, 4, 7, 10] {
        let p = format!("dir{}/file-{i:02}.txt", i % 3);
        lb.delete(&p).unwrap();
        e.files.remove(&p);
    }
    // Incompressible, so its packed frame is stored: the same length as
    // the one the third commit writes (equal-length regions for swaps).
    put(&mut lb, &mut e, "dir2/file-05.txt", content(seed + 99, 400));
    lb.commit().unwrap();
    let older = (lb.image().unwrap(), e.clone());
    // Third commit: the freed space is in the free-space index now; a few
    // more changes reuse some of it and leave a redaction list.
    put(&mut lb, &mut e, "dir0/new.txt", content(seed + 123, 400));
    lb.delete("dir1/file-13.txt").unwrap();
    e.files.remove("dir1/file-13.txt");
    lb.set_var("v2", b"short now").unwrap();
    e.vars.insert("v2".into(), b"short now".to_vec());
    lb.commit().unwrap();
    // Fourth commit: its pages go into space the third commit freed (the
    // second commit's superseded pages), so replaying the second commit's
    // regions lands on live ones.
    for i in [0u64, 3, 6] {
        put(
            &mut lb,
            &mut e,
            &format!("dir{}/file-{i:02}.txt", i % 3),
            runs(seed + 300 + i, 100 + 50 * i as usize),
        );
    }
    lb.set_var("v1", b"changed").unwrap();
    e.vars.insert("v1".into(), b"changed".to_vec());
    lb.commit().unwrap();
    lb.verify().expect("the undamaged lockbox verifies");
    ((older.0, older.1), (lb.image().unwrap(), e))
}

fn err_name(e: &Error) -> &'static str {
    match e {
        Error::Corrupt { .. } => "Corrupt",
        Error::NotALockbox => "NotALockbox",
        Error::UnsupportedVersion { .. } => "UnsupportedVersion",
        Error::WrongKey => "WrongKey",
        Error::NotFound(_) => "NotFound",
        Error::Io(_) => "Io",
        Error::LimitExceeded { .. } => "LimitExceeded",
        Error::InvalidPath { .. } => "InvalidPath",
        Error::NotAFile(_) => "NotAFile",
        Error::InvalidKdfParams(_) => "InvalidKdfParams",
        _ => "other",
    }
}

/// Errors a damaged image may give. `NotFound` only when the whole state
/// is another commit's (see `Outcome`); anything else is typed but odd.
const DAMAGE: &[&str] = &["Corrupt", "NotALockbox", "UnsupportedVersion"];
/// Damage to a key slot (with its table's checksum made to match) may
/// also make the key fail, or ask for KDF parameters over the limits.
const KEY_DAMAGE: &[&str] = &[
    "Corrupt",
    "NotALockbox",
    "UnsupportedVersion",
    "WrongKey",
    "InvalidKdfParams",
];

#[derive(Default, Debug)]
struct Outcome {
    opened: bool,
    errors: Vec<&'static str>,
    verify_ok: bool,
}

/// Opens `image` and reads everything, checking every answer against one
/// of the acceptable states `states` (the latest commit; for replays also
/// the older one). A read returns that state's bytes or an error; never
/// other bytes. Returns what happened; panics (a failure) on wrong data.
fn check(
    image: Vec<u8>,
    states: &[&Expected],
    what: &str,
    do_verify: bool,
    allowed: &[&str],
) -> Outcome {
    let mut o = Outcome::default();
    let lb = match Lockbox::builder()
        .cache_bytes(1 << 20)
        .open_bytes(image, key())
    {
        Ok(lb) => lb,
        Err(e) => {
            let n = err_name(&e);
            assert!(allowed.contains(&n), "{what}: open failed with {n} ({e})");
            o.errors.push(n);
            return o;
        }
    };
    o.opened = true;
    // Which state each answer matches, for the "no mixing" rule.
    let latest = states[0];
    let mut paths: Vec<&String> = latest.files.keys().collect();
    for s in &states[1..] {
        paths.extend(s.files.keys());
    }
    paths.sort();
    paths.dedup();
    for p in paths {
        let want: Vec<Option<&Vec<u8>>> = states.iter().map(|s| s.files.get(p)).collect();
        match lb.get(p) {
            Ok(v) => assert!(
                want.contains(&Some(&v)),
                "{what}: get({p}) returned WRONG DATA ({} bytes)",
                v.len()
            ),
            Err(Error::NotFound(_)) => assert!(
                want.iter().any(|w| w.is_none()),
                "{what}: get({p}) said NotFound for a file every acceptable state has"
            ),
            Err(e) => o.errors.push(err_name(&e)),
        }
        let mut buf = [0u8; 777];
        for off in [0u64, 1000, 65_530] {
            match lb.read_at(p, off, &mut buf) {
                Ok(n) => assert!(
                    want.iter().flatten().any(|w| {
                        let s = &w[(off as usize).min(w.len())..];
                        n == s.len().min(777) && buf[..n] == s[..n]
                    }),
                    "{what}: read_at({p}, {off}) returned WRONG DATA"
                ),
                Err(Error::NotFound(_)) => {}
                Err(e) => o.errors.push(err_name(&e)),
            }
        }
    }
    for (p, t) in &latest.links {
        match lb.stat(p) {
            Ok(Some(e)) => assert!(
                e.kind == EntryKind::Symlink && e.target.as_deref() == Some(t.as_str()),
                "{what}: stat({p}) WRONG: {e:?}"
            ),
            Ok(None) => {}
            Err(e) => o.errors.push(err_name(&e)),
        }
    }
    match lb.list("") {
        Ok(it) => {
            let mut prev: Option<Vec<u8>> = None;
            for item in it {
                match item {
                    Ok(e) => {
                        let known = states.iter().any(|s| {
                            s.files.get(&e.path).is_some_and(|d| {
                                d.len() as u64 == e.len && e.kind == EntryKind::File
                            }) || s.links.contains_key(&e.path)
                                || s.dirs.contains(&e.path)
                        });
                        assert!(
                            known,
                            "{what}: list() returned an entry no state has: {e:?}"
                        );
                        let k = forge::key_of(&e.path);
                        assert!(
                            prev.as_ref().is_none_or(|p| *p < k),
                            "{what}: list() out of order at {}",
                            e.path
                        );
                        prev = Some(k);
                    }
                    Err(e) => {
                        o.errors.push(err_name(&e));
                        break;
                    }
                }
            }
        }
        Err(e) => o.errors.push(err_name(&e)),
    }
    let mut var_names: Vec<&String> = states.iter().flat_map(|s| s.vars.keys()).collect();
    var_names.sort();
    var_names.dedup();
    for n in var_names {
        match lb.var(n) {
            Ok(Some(v)) => assert!(
                states.iter().any(|s| s.vars.get(n) == Some(&v)),
                "{what}: var({n}) returned WRONG DATA"
            ),
            Ok(None) => {}
            Err(e) => o.errors.push(err_name(&e)),
        }
    }
    if do_verify {
        match lb.verify() {
            Ok(_) => o.verify_ok = true,
            Err(e) => o.errors.push(err_name(&e)),
        }
    }
    for e in &o.errors {
        assert!(
            allowed.contains(e),
            "{what}: unexpected error kind {e} on a damaged image"
        );
    }
    o
}

/// Reachable regions of the final image, as sorted `(start, end)` spans.
fn reachable(image: &[u8]) -> (Vec<forge::Region>, Vec<(u64, u64)>) {
    let keys = forge::unwrap_raw(image, &RAW).unwrap();
    let rec = forge::newest_commit(&keys, image).unwrap();
    let regions = forge::walk(&keys, image, &rec).unwrap();
    let mut spans: Vec<(u64, u64)> = regions
        .iter()
        .map(|r| (r.ptr.offset, r.ptr.end()))
        .collect();
    spans.sort();
    (regions, spans)
}

fn in_spans(spans: &[(u64, u64)], at: u64) -> bool {
    let i = spans.partition_point(|&(s, _)| s <= at);
    i > 0 && at < spans[i - 1].1
}

/// Runs `cases` (each a damaged image, a name, whether verify must fail,
/// whether to run verify) on worker threads; collects failures.
fn run_cases(
    label: &str,
    n: usize,
    make: impl Fn(usize) -> Option<(Vec<u8>, String, bool, bool)> + Sync,
    states: &[&Expected],
    allowed: &[&str],
) -> (usize, BTreeMap<&'static str, usize>) {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4);
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let kinds = Mutex::new(BTreeMap::<&'static str, usize>::new());
    let ran = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                QUIET.with(|q| q.set(true));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let Some((img, what, must_fail, do_verify)) = make(i) else {
                        continue;
                    };
                    ran.fetch_add(1, Ordering::Relaxed);
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        check(img, states, &what, do_verify || must_fail, allowed)
                    }));
                    match r {
                        Ok(o) => {
                            if must_fail && o.verify_ok {
                                failures.lock().unwrap().push(format!(
                                    "{what}: a reachable byte changed but verify() PASSED"
                                ));
                            }
                            let mut k = kinds.lock().unwrap();
                            let key = if !o.opened {
                                "open refused"
                            } else if o.errors.is_empty() {
                                "no visible effect"
                            } else {
                                "read/verify errors"
                            };
                            *k.entry(key).or_default() += 1;
                        }
                        Err(p) => {
                            let msg = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{what}: PANIC or WRONG DATA: {msg}"));
                        }
                    }
                }
            });
        }
    });
    let f = failures.into_inner().unwrap();
    let kinds = kinds.into_inner().unwrap();
    let ran = ran.into_inner();
    eprintln!("[{label}] {ran} cases: {kinds:?}; {} failures", f.len());
    assert!(
        f.is_empty(),
        "[{label}] {} of {ran} cases failed (first 20):\n{}",
        f.len(),
        f.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    (ran, kinds)
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Silences the panic message of panics on `run_cases` workers (they are
/// caught and reported, with the case, at the end); other threads keep
/// the default hook.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                prev(info)
            }
        }));
    });
}

#[test]
fn bit_flip_at_every_byte() {
    let t = Instant::now();
    let (_, (img, exp)) = build(1);
    let (_, spans) = reachable(&img);
    let len = img.len();
    let reach_bytes: u64 = spans.iter().map(|(s, e)| e - s).sum();
    eprintln!(
        "[flip] image {len} bytes, {} reachable regions holding {reach_bytes} bytes",
        spans.len()
    );
    quiet_panics();
    let (ran, _) = run_cases(
        "flip",
        len,
        |at| {
            let mut b = img.clone();
            let bit = (at * 5 + 3) % 8;
            b[at] ^= 1 << bit;
            let must_fail = in_spans(&spans, at as u64);
            // verify on every reachable byte (where it must fail) and on
            // every 16th other byte.
            Some((
                b,
                format!("bit {bit} of byte {at}/{len}"),
                must_fail,
                at % 16 == 0,
            ))
        },
        &[&exp],
        DAMAGE,
    );
    assert_eq!(ran, len);
    eprintln!("[flip] {ran} cases in {:?}", t.elapsed());
}

#[test]
fn truncation_at_every_page_boundary_and_random_lengths() {
    let (_, (img, exp)) = build(2);
    let len = img.len();
    let mut cuts: Vec<usize> = (0..len).step_by(4096).collect();
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..50 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cuts.push((x % len as u64) as usize);
    }
    cuts.extend([
        len - 1,
        len - 16,
        len - 41,
        20480,
        20481,
        12288 + 553,
        12288 + 552,
    ]);
    quiet_panics();
    let (ran, kinds) = run_cases(
        "truncate",
        cuts.len(),
        |i| {
            let c = cuts[i];
            Some((
                img[..c].to_vec(),
                format!("truncated to {c}/{len}"),
                c < len,
                true,
            ))
        },
        &[&exp],
        DAMAGE,
    );
    assert_eq!(
        kinds.get("no visible effect"),
        None,
        "a truncated image showed no error"
    );
    eprintln!("[truncate] {ran} cases");
}

#[test]
fn swapped_regions_of_equal_length() {
    let (_, (img, exp)) = build(3);
    let (regions, _) = reachable(&img);
    let mut by_len: BTreeMap<u32, Vec<forge::Ptr>> = BTreeMap::new();
    for r in &regions {
        by_len.entry(r.ptr.len).or_default().push(r.ptr);
    }
    let mut pairs = Vec::new();
    for v in by_len.values() {
        for i in 0..v.len() {
            for j in i + 1..v.len() {
                pairs.push((v[i], v[j]));
            }
        }
    }
    // Also equal-length windows of unequal regions: the first N bytes of
    // each of two neighbours, so kinds that never share a length are covered.
    for w in regions.windows(2) {
        let n = w[0].ptr.len.min(w[1].ptr.len);
        pairs.push((
            forge::Ptr { len: n, ..w[0].ptr },
            forge::Ptr { len: n, ..w[1].ptr },
        ));
    }
    let equal = by_len.values().filter(|v| v.len() > 1).count();
    eprintln!(
        "[swap] {} regions, {equal} lengths shared by 2+ regions, {} pairs",
        regions.len(),
        pairs.len()
    );
    assert!(
        equal >= 1,
        "the fixture should have at least one pair of equal-length regions"
    );
    quiet_panics();
    run_cases(
        "swap",
        pairs.len(),
        |i| {
            let (a, b) = pairs[i];
            let mut m = img.clone();
            let (ra, rb) = (
                a.offset as usize..a.end() as usize,
                b.offset as usize..b.end() as usize,
            );
            let x = img[ra.clone()].to_vec();
            m.copy_within(rb.clone(), ra.start);
            m[rb].copy_from_slice(&x);
            let changed = m != img;
            Some((
                m,
                format!("swap {}+{} with {}+{}", a.offset, a.len, b.offset, b.len),
                changed,
                true,
            ))
        },
        &[&exp],
        DAMAGE,
    );
}

#[test]
fn replayed_regions_of_an_older_commit() {
    let ((old, old_exp), (img, exp)) = build(4);
    let (old_regions, _) = reachable(&old);
    let (_, spans) = reachable(&img);
    // Each region of the older commit pasted back at its offset; plus both
    // commit slots of the older commit (a rollback of the whole state,
    // which the format documents as undetectable: reads may then show the
    // older commit, but never a mix of bytes).
    let mut cases: Vec<(u64, u64)> = old_regions
        .iter()
        .map(|r| (r.ptr.offset, r.ptr.end()))
        .collect();
    cases.push((forge::COMMIT_SLOTS[0], forge::COMMIT_SLOTS[0] + 553));
    cases.push((forge::COMMIT_SLOTS[1], forge::COMMIT_SLOTS[1] + 553));
    let slot_case = cases.len() - 2;
    let overlapping = old_regions
        .iter()
        .filter(|r| {
            let (s, e) = (r.ptr.offset, r.ptr.end().min(img.len() as u64));
            (s..e).any(|at| img[at as usize] != old[at as usize] && in_spans(&spans, at))
        })
        .count();
    eprintln!(
        "[replay] {} regions of the older commit, {overlapping} of them overlap changed bytes of reachable regions",
        old_regions.len()
    );
    assert!(
        overlapping > 0,
        "the fixture should reuse space the older commit's regions held"
    );
    quiet_panics();
    let (ran, kinds) = run_cases(
        "replay",
        cases.len() + 1,
        |i| {
            let mut m = img.clone();
            let (what, pasted): (String, Vec<(u64, u64)>) = if i == cases.len() {
                (
                    "both commit slots of the older commit".into(),
                    cases[slot_case..].to_vec(),
                )
            } else {
                (
                    format!("older region {}..{}", cases[i].0, cases[i].1),
                    vec![cases[i]],
                )
            };
            let mut must_fail = false;
            for &(s, e) in &pasted {
                let e = e.min(m.len() as u64).min(old.len() as u64);
                for at in s..e {
                    if m[at as usize] != old[at as usize] && in_spans(&spans, at) {
                        must_fail = true;
                    }
                }
                m[s as usize..e as usize].copy_from_slice(&old[s as usize..e as usize]);
            }
            if m == img {
                return None;
            }
            let rollback = i >= slot_case;
            Some((m, what, must_fail && !rollback, true))
        },
        &[&exp, &old_exp],
        DAMAGE,
    );
    eprintln!("[replay] {ran} cases: {kinds:?}");
}

#[test]
fn regions_spliced_from_another_lockbox_with_the_same_key() {
    let (_, (img, exp)) = build(5);
    let (_, (other, _)) = build(5);
    assert_ne!(
        forge::archive_id(&img).unwrap(),
        forge::archive_id(&other).unwrap()
    );
    let (other_regions, _) = reachable(&other);
    let (_, spans) = reachable(&img);
    let mut cases: Vec<(u64, u64)> = other_regions
        .iter()
        .map(|r| (r.ptr.offset, r.ptr.end()))
        .collect();
    cases.push((forge::COMMIT_SLOTS[0], forge::COMMIT_SLOTS[0] + 553));
    cases.push((forge::COMMIT_SLOTS[1], forge::COMMIT_SLOTS[1] + 553));
    cases.push((4096, 8192)); // a whole key slot table
    quiet_panics();
    let (ran, kinds) = run_cases(
        "splice",
        cases.len(),
        |i| {
            let (s, e) = cases[i];
            let e = e.min(img.len() as u64);
            if s >= e {
                return None;
            }
            let mut m = img.clone();
            m[s as usize..e as usize].copy_from_slice(&other[s as usize..e as usize]);
            let must_fail =
                (s..e).any(|at| m[at as usize] != img[at as usize] && in_spans(&spans, at));
            Some((
                m,
                format!("region {s}..{e} from the other lockbox"),
                must_fail,
                true,
            ))
        },
        &[&exp],
        DAMAGE,
    );
    eprintln!("[splice] {ran} cases: {kinds:?}");
}

/// The header and slot-table checksums are plain BLAKE3, not keyed:
/// anyone can change a field and make the checksum match. Every byte of
/// the header body and of both slot tables' used part (and a stride of
/// the unused part) is flipped with the checksums recomputed.
#[test]
fn header_and_slot_table_fields_with_checksums_recomputed() {
    let (_, (img, exp)) = build(6);
    let mut offsets: Vec<usize> = (0..96).collect();
    for t in forge::SLOT_TABLES {
        offsets.extend(t..t + 16 + 128);
        offsets.extend((t + 16 + 128..t + forge::TABLE_LEN - 32).step_by(97));
    }
    // Whole fields at extreme values: sequence numbers, slot count.
    let mut extremes: Vec<(usize, Vec<u8>)> = Vec::new();
    for t in forge::SLOT_TABLES {
        for v in [0u64, 1, u64::MAX, u64::MAX - 1] {
            extremes.push((t, v.to_le_bytes().to_vec()));
        }
        for c in [0u8, 2, 16, 17, 255] {
            extremes.push((t + 8, vec![c]));
        }
    }
    let n = offsets.len();
    quiet_panics();
    let (ran, kinds) = run_cases(
        "checksummed fields",
        n + extremes.len(),
        |i| {
            let mut b = img.clone();
            let what = if i < n {
                let at = offsets[i];
                b[at] ^= 1 << (at % 8);
                format!("bit {} of byte {at}, checksums recomputed", at % 8)
            } else {
                let (at, v) = &extremes[i - n];
                b[*at..*at + v.len()].copy_from_slice(v);
                format!("bytes {at}.. set to {v:?}, checksums recomputed")
            };
            forge::fix_header_checksum(&mut b);
            forge::fix_table_checksum(&mut b, forge::SLOT_TABLES[0]);
            forge::fix_table_checksum(&mut b, forge::SLOT_TABLES[1]);
            Some((b, what, false, true))
        },
        &[&exp],
        KEY_DAMAGE,
    );
    eprintln!("[fields] {ran} cases: {kinds:?}");
}
