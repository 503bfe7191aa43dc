//! Space: growth under churn, reuse of freed space across reopen, the cost
//! of a one-file delete, and rollback (requirements §3 "Freed space goes to a
//! persisted free-space index and is reused by later writes", "a one-entry
//! commit writes little"; issue #3 "Growth under churn").
//!
//! Run with `--nocapture` to see the figures.

mod support;

use lockbox::{Key, Lockbox};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use support::*;

fn key() -> Key {
    raw_key(7)
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

fn verify(lb: &Lockbox, what: &str) {
    if let Err(e) = lb.verify() {
        panic!("verify() after {what}: {e:?}");
    }
}

/// Checks every file of `want` and that nothing else is listed.
fn check_files(lb: &Lockbox, want: &BTreeMap<String, Vec<u8>>, what: &str) {
    let listed: Vec<String> = lb
        .list("")
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.kind == lockbox::EntryKind::File)
        .map(|e| e.path)
        .collect();
    let mut want_paths: Vec<&String> = want.keys().collect();
    want_paths.sort();
    let mut got: Vec<&String> = listed.iter().collect();
    got.sort();
    assert_eq!(got, want_paths, "{what}: listed files differ");
    for (p, d) in want {
        assert!(&lb.get(p).unwrap() == d, "{what}: {p} differs");
    }
}

// ---------------------------------------------------------------------------
// Growth under churn
// ---------------------------------------------------------------------------

struct ChurnResult {
    before: u64,
    after: u64,
    peak: u64,
}

/// Samples the length of the file at `path` every 100 µs from another
/// thread while `f` runs, and returns `f`'s result with the largest length
/// seen: the peak inside a commit (between the changes' own commit and the
/// end of its relocation commits), which the lengths after each commit do
/// not show.
fn with_peak<T>(path: &Path, f: impl FnOnce() -> T) -> (T, u64) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(std::fs::metadata(path).map_or(0, |m| m.len()));
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
            peak
        });
        let r = f();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = watcher.join().unwrap().max(file_len(path));
        (r, peak)
    })
}

/// `n` files of `size` bytes; `rounds` rounds of: replace a random 20 %,
/// delete a random 10 %, add as many new ones; one commit per round,
/// `verify()` after each. Then `compact()`.
fn churn(n: usize, size: usize, rounds: usize, seed: u64, check_all: bool) -> ChurnResult {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("churn.lbox");
    let mut lb = Lockbox::create(&path, key()).unwrap();
    let mut rng = Rng::new(seed);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut next = 0usize;
    let new_name = |next: &mut usize| {
        *next += 1;
        format!("dir{:02}/file{:07}.dat", *next % 37, *next)
    };
    for _ in 0..n {
        let p = new_name(&mut next);
        let d = rng.content(size);
        lb.put(&p, &d).unwrap();
        files.insert(p, d);
    }
    lb.commit().unwrap();
    verify(&lb, "the initial commit");
    let initial = file_len(&path);
    let mut peak = initial;
    eprintln!(
        "[space] churn {n} x {size} B: initial file {:.2} MiB",
        initial as f64 / 1048576.0
    );
    for round in 0..rounds {
        let names: Vec<String> = files.keys().cloned().collect();
        let mut order: Vec<usize> = (0..names.len()).collect();
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let replace = n / 5;
        let delete = n / 10;
        for &i in &order[..replace] {
            let d = rng.content(size);
            lb.put(&names[i], &d).unwrap();
            files.insert(names[i].clone(), d);
        }
        for &i in &order[replace..replace + delete] {
            assert_eq!(lb.delete(&names[i]).unwrap(), 1);
            files.remove(&names[i]);
        }
        for _ in 0..delete {
            let p = new_name(&mut next);
            let d = rng.content(size);
            lb.put(&p, &d).unwrap();
            files.insert(p, d);
        }
        let (stats, round_peak) = with_peak(&path, || lb.commit().unwrap());
        verify(&lb, &format!("churn round {round}"));
        let len = file_len(&path);
        peak = peak.max(round_peak);
        eprintln!(
            "[space]   round {round}: file {:.2} MiB ({:.2} x initial), peak during the commit \
             {:.2} MiB; the commit wrote {:.2} MiB in {} relocation commits after its own, {:.1?}",
            len as f64 / 1048576.0,
            len as f64 / initial as f64,
            round_peak as f64 / 1048576.0,
            stats.bytes_written as f64 / 1048576.0,
            stats.relocations,
            stats.duration
        );
        assert_eq!(stats.sequence, lb.sequence(), "CommitStats::sequence");
        assert!(
            stats.relocations > 0,
            "a 30 % churn runs relocation commits"
        );
    }
    if check_all {
        check_files(&lb, &files, "after churn");
    }
    let before = file_len(&path);
    let cs = lb.compact().unwrap();
    let after = file_len(&path);
    assert_eq!(cs.bytes_before, before, "CompactStats::bytes_before");
    assert_eq!(cs.bytes_after, after, "CompactStats::bytes_after");
    verify(&lb, "compact");
    if check_all {
        check_files(&lb, &files, "after compact");
    }
    eprintln!(
        "[space] churn {n} x {size} B, {rounds} rounds: before compact {before} B \
         ({:.2} MiB), after {after} B ({:.2} MiB), ratio {:.3} (limit 1.5); peak {:.2} MiB \
         ({:.3} x after); {:.1?}",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        before as f64 / after as f64,
        peak as f64 / 1048576.0,
        peak as f64 / after as f64,
        started.elapsed()
    );
    ChurnResult {
        before,
        after,
        peak,
    }
}

/// Issue 3: under churn the file stays under 1.5 x what a fresh
/// `compact()` gives. The user's commit leaves the packs it touches to
/// relocation commits, which repack them a batch at a time into space the
/// previous batch freed (`relocate.rs`), so the file peaks at about its
/// live size plus the new data plus one batch instead of twice its live
/// size. Measured 1.42 x at this size (2.03 x before relocation commits).
#[test]
fn churn_stays_under_one_and_a_half_times_compacted() {
    let r = churn(5_000, 2048, 10, test_seed(0x5EED), true);
    assert!(
        (r.before as f64) < 1.5 * r.after as f64,
        "after churn the file is {} B, {:.3} x the {} B a fresh compact() gives (limit 1.5)",
        r.before,
        r.before as f64 / r.after as f64,
        r.after
    );
    assert!(r.peak >= r.before);
}

/// The issue's own numbers (50,000 x 2 KiB, ten rounds). Slow in debug:
/// `cargo test --release --test space -- --ignored --nocapture`.
#[test]
#[ignore = "full-size churn (50,000 files); run with --release --ignored"]
fn churn_full_size_50k() {
    let r = churn(50_000, 2048, 10, test_seed(0x5EED), false);
    assert!(
        (r.before as f64) < 1.5 * r.after as f64,
        "after churn the file is {} B, {:.3} x the {} B a fresh compact() gives (limit 1.5)",
        r.before,
        r.before as f64 / r.after as f64,
        r.after
    );
}

// ---------------------------------------------------------------------------
// Freed space survives reopen
// ---------------------------------------------------------------------------

#[test]
fn freed_space_is_reused_after_reopen() {
    const SLACK: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reuse.lbox");
    let mut rng = Rng::new(test_seed(1));
    let big = rng.bytes(2 << 20);
    let mut lb = Lockbox::create(&path, key()).unwrap();
    lb.put("keep.txt", b"a small file that stays").unwrap();
    lb.put("big.bin", &big).unwrap();
    lb.commit().unwrap();
    let peak = file_len(&path);
    lb.delete("big.bin").unwrap();
    lb.commit().unwrap();
    verify(&lb, "delete");
    let after_delete = file_len(&path);
    drop(lb);

    let mut lb = Lockbox::open(&path, key()).unwrap();
    let big2 = rng.bytes(2 << 20);
    lb.put("big2.bin", &big2).unwrap();
    lb.commit().unwrap();
    verify(&lb, "the second 2 MiB put");
    let second = file_len(&path);
    eprintln!(
        "[space] reuse after reopen: peak {peak} B, after delete {after_delete} B, \
         after the second 2 MiB {second} B (limit {})",
        peak + SLACK
    );
    assert!(
        second <= peak + SLACK,
        "freed space was not reused after reopen: the file grew to {second} B, \
         first peak {peak} B (+{SLACK} B slack)"
    );
    assert_eq!(lb.get("big2.bin").unwrap(), big2);
    assert_eq!(lb.get("keep.txt").unwrap(), b"a small file that stays");
    // and once more, through a third handle, with several commits between
    drop(lb);
    let mut lb = Lockbox::open(&path, key()).unwrap();
    lb.delete("big2.bin").unwrap();
    lb.commit().unwrap();
    lb.put("note", b"x").unwrap();
    lb.commit().unwrap();
    drop(lb);
    let mut lb = Lockbox::open(&path, key()).unwrap();
    lb.put("big3.bin", &big).unwrap();
    lb.commit().unwrap();
    verify(&lb, "the third 2 MiB put");
    let third = file_len(&path);
    eprintln!("[space] after a third 2 MiB (two reopens later): {third} B");
    assert!(
        third <= peak + SLACK,
        "freed space was not reused: the file grew to {third} B, first peak {peak} B"
    );
}

// ---------------------------------------------------------------------------
// A one-file delete in a large lockbox writes little
// ---------------------------------------------------------------------------

/// What one one-file delete cost.
struct DeleteCost {
    what: &'static str,
    path: String,
    reported: u64,
    written: u64,
    pages: u64,
}

/// A 20,000-entry lockbox (~20 MiB: 1.5 KiB packed files, 100 B inline
/// ones, four 1 MiB files); `scattered`: consecutive puts go to different
/// directories (so the members of one pack are far apart in the TOC), else
/// consecutive puts are path neighbours (as a directory import makes them).
/// Deletes three single files, one commit each.
fn one_file_deletes(scattered: bool) -> (u64, lockbox::VerifyReport, Vec<DeleteCost>) {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.lbox");
    let mut lb = Lockbox::create(&path, key()).unwrap();
    let mut rng = Rng::new(test_seed(2));
    let n = 20_000;
    let name = |i: usize| {
        if scattered {
            format!("d{:03}/sub{}/f{i:06}.txt", i % 200, i % 7)
        } else {
            format!("d{:03}/sub{}/f{i:06}.txt", i / 100, i / 10 % 7)
        }
    };
    for i in 0..n {
        let len = if i % 10 == 0 { 100 } else { 1500 };
        lb.put(&name(i), &rng.content(len)).unwrap();
    }
    for i in 0..4 {
        lb.put(&format!("large/{i}.bin"), &rng.bytes(1 << 20))
            .unwrap();
    }
    lb.commit().unwrap();
    // a second commit so the free-space index and a redaction list exist
    lb.put(&name(0), b"changed").unwrap();
    lb.commit().unwrap();
    let size = file_len(&path);
    let report = lb.verify().unwrap();
    let layout = if scattered { "scattered" } else { "sequential" };

    let mut cases = Vec::new();
    for (what, i) in [
        ("packed 1.5 KiB file", 4123),
        ("inline 100 B file", 4110),
        ("packed 1.5 KiB file", 12077),
    ] {
        let p = name(i);
        let io0 = lb.io_stats();
        assert_eq!(lb.delete(&p).unwrap(), 1, "{p}");
        let stats = lb.commit().unwrap();
        let io1 = lb.io_stats();
        let written = io1.bytes_written - io0.bytes_written;
        eprintln!(
            "[space] one-file delete, {layout} layout ({what}) in a {:.1} MiB lockbox of {} \
             entries (TOC height {}): commit reports {} B written, {} metadata pages; backend \
             saw {} B in {} writes, {} syncs",
            size as f64 / 1048576.0,
            report.entries,
            report.toc_height,
            stats.bytes_written,
            stats.pages_written,
            written,
            io1.writes - io0.writes,
            io1.syncs - io0.syncs
        );
        assert!(
            stats.bytes_written <= written,
            "CommitStats::bytes_written {} exceeds what the backend saw ({written})",
            stats.bytes_written
        );
        cases.push(DeleteCost {
            what,
            path: p,
            reported: stats.bytes_written,
            written,
            pages: stats.pages_written,
        });
    }
    verify(&lb, "the deletes");
    eprintln!(
        "[space] one-file delete test ({layout}): {:.1?}",
        started.elapsed()
    );
    (size, report, cases)
}

/// Requirements §3: "A commit that changes one entry writes O(tree height)
/// metadata pages", "a one-entry commit writes little". The page bound
/// allows every tree a commit touches (TOC, pack references, free-space
/// index) a path of height + 1 pages, plus the redaction list and a spare;
/// the byte bound allows that, a repacked 64 KiB pack frame, and zeroing
/// what was freed.
fn check_delete_costs(
    size: u64,
    report: &lockbox::VerifyReport,
    cases: &[DeleteCost],
    repacked_members: u64,
) {
    // Deleting a packed file repacks its frame (redaction): each surviving
    // member gets a new record, so with scattered members one TOC leaf per
    // member may change: O(pack members + height), not O(file).
    const BYTES: u64 = 256 * 1024;
    let pages = 3 * (report.toc_height as u64 + 1) + 2 + repacked_members;
    let bytes = BYTES + repacked_members * 16 * 1024;
    let bad: Vec<String> = cases
        .iter()
        .filter(|c| c.pages > pages || c.written > bytes)
        .map(|c| {
            format!(
                "{} ({}): {} metadata pages (limit {pages}), {} B written (limit {bytes}; \
                 commit reported {} B)",
                c.what, c.path, c.pages, c.written, c.reported
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "one-file deletes in a {size} B lockbox of {} entries (TOC height {}) wrote too much:\n{}",
        report.entries,
        report.toc_height,
        bad.join("\n")
    );
}

#[test]
fn one_file_delete_in_a_large_lockbox_writes_little() {
    let (size, report, cases) = one_file_deletes(false);
    check_delete_costs(size, &report, &cases, 0);
}

/// The same with the files of each pack scattered over the tree (an
/// application writing to unrelated paths between commits).
#[test]
fn one_file_delete_writes_little_when_pack_members_are_scattered() {
    let (size, report, cases) = one_file_deletes(true);
    // A 64 KiB pack of 1.5 KiB files has at most 43 members.
    check_delete_costs(size, &report, &cases, 43);
}

// ---------------------------------------------------------------------------
// Rollback
// ---------------------------------------------------------------------------

#[test]
fn rollback_after_large_writes_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollback.lbox");
    let mut rng = Rng::new(test_seed(3));
    let mut lb = Lockbox::create(&path, key()).unwrap();
    let mut want = BTreeMap::new();
    for i in 0..50 {
        let d = rng.content(3000);
        lb.put(&format!("f{i}"), &d).unwrap();
        want.insert(format!("f{i}"), d);
    }
    let mid = rng.bytes(1 << 20);
    lb.put("mid.bin", &mid).unwrap();
    want.insert("mid.bin".to_string(), mid);
    lb.commit().unwrap();
    let len0 = file_len(&path);

    // 1. Large data at the tail, then rollback.
    let big = rng.bytes(8 << 20);
    lb.put_reader("big.bin", &big[..]).unwrap();
    lb.put("big2.bin", &big[..3 << 20]).unwrap();
    for i in 0..20 {
        lb.put(&format!("new{i}"), &rng.content(2000)).unwrap();
    }
    lb.delete("f3").unwrap();
    assert!(
        file_len(&path) > len0,
        "the staged large data went to the file"
    );
    lb.rollback();
    let len1 = file_len(&path);
    eprintln!("[space] rollback: before {len0} B, after staging and rollback {len1} B");
    assert!(
        len1 <= len0,
        "rollback left the file at {len1} B, before {len0} B"
    );
    verify(&lb, "rollback");
    check_files(&lb, &want, "after rollback");
    let insp = lb.inspect().unwrap();
    assert!(
        insp.unreachable_nonzero.is_empty(),
        "rollback left non-zero bytes outside the committed regions: {:?}",
        insp.unreachable_nonzero
    );

    // 2. Free space exists (a deleted 1 MiB file); staged writes reuse it;
    //    rollback must give it back zeroed, and not grow the file.
    lb.delete("mid.bin").unwrap();
    want.remove("mid.bin");
    lb.commit().unwrap();
    lb.put("x", b"one more commit moves the freed space into the index")
        .unwrap();
    want.insert(
        "x".into(),
        b"one more commit moves the freed space into the index".to_vec(),
    );
    lb.commit().unwrap();
    let len2 = file_len(&path);
    lb.put("reuse.bin", &big[..900 << 10]).unwrap();
    lb.put_reader("tail.bin", &big[..4 << 20]).unwrap();
    lb.rollback();
    let len3 = file_len(&path);
    eprintln!("[space] rollback over reused free space: before {len2} B, after {len3} B");
    assert!(
        len3 <= len2,
        "rollback left the file at {len3} B, before {len2} B"
    );
    verify(&lb, "the second rollback");
    check_files(&lb, &want, "after the second rollback");
    let insp = lb.inspect().unwrap();
    assert!(
        insp.unreachable_nonzero.is_empty(),
        "rollback left non-zero bytes outside the committed regions: {:?}",
        insp.unreachable_nonzero
    );

    // 3. The handle goes on working, the space is reusable, and the file
    //    reopens as the last commit.
    lb.put("after.bin", &big[..900 << 10]).unwrap();
    want.insert("after.bin".into(), big[..900 << 10].to_vec());
    lb.commit().unwrap();
    verify(&lb, "a commit after the rollbacks");
    let len4 = file_len(&path);
    assert!(
        len4 <= len2 + 64 * 1024,
        "the space given back by rollback was not reused: {len4} B, before {len2} B"
    );
    drop(lb);
    let lb = Lockbox::open(&path, key()).unwrap();
    verify(&lb, "reopen");
    check_files(&lb, &want, "after reopen");
}

/// Rollback on an in-memory lockbox: the image does not grow either.
#[test]
fn rollback_in_memory() {
    let mut rng = Rng::new(test_seed(4));
    let mut lb = Lockbox::builder().create_in_memory(key()).unwrap();
    lb.put("a", &rng.content(5000)).unwrap();
    lb.commit().unwrap();
    let len0 = lb.inspect().unwrap().file_len;
    lb.put("big", &rng.bytes(3 << 20)).unwrap();
    lb.rollback();
    let insp = lb.inspect().unwrap();
    assert!(insp.file_len <= len0, "{} > {len0}", insp.file_len);
    assert!(insp.unreachable_nonzero.is_empty());
    verify(&lb, "rollback");
    assert_eq!(lb.stat("big").unwrap(), None);
}
