//! `compact()` (requirements §2 "rewrite to the smallest file, atomically";
//! issue #3): after churn it shrinks the file and keeps every entry, mode,
//! mtime, symlink target and variable byte-exact, keeps the key slots,
//! continues the sequence numbers, leaves no temporary file, works in
//! memory, commits staged changes first, and reports progress.
//!
//! Run with `--nocapture` to see the figures.

mod support;

use lockbox::{Key, Lockbox, Profile, Progress};
use std::path::Path;
use support::*;

fn pass() -> Key {
    Key::passphrase("compact passphrase")
}

/// A lockbox's visible state after a deterministic churn: files of every
/// storage kind (inline, packed, framed), symlinks, explicit directories,
/// variables of every size; several commits of overwrites, deletes and
/// renames.
fn churn(lb: &mut Lockbox, seed: u64) {
    let mut rng = Rng::new(seed);
    let size = |rng: &mut Rng| match rng.below(10) {
        0..=2 => rng.range(1, 129),
        3..=8 => rng.range(200, 20_000),
        _ => rng.range(70_000, 300_000),
    };
    lb.mkdir("empty/dir").unwrap();
    lb.mkdir("kept").unwrap();
    for round in 0..6 {
        for i in 0..150 {
            let p = format!("r{}/d{}/f{i}", rng.below(3), rng.below(5));
            let n = size(&mut rng);
            let d = rng.content(n);
            lb.put(&p, &d).unwrap();
        }
        for i in 0..10 {
            let _ = lb.symlink(&format!("links/l{round}_{i}"), &format!("../r{}/x", i % 3));
        }
        for i in 0..12 {
            let n = size(&mut rng);
            let d = rng.content(n);
            lb.set_var(&format!("var{}", (round * 5 + i) % 25), &d)
                .unwrap();
        }
        // delete a share of what exists
        let files: Vec<String> = lb
            .list("")
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.kind == lockbox::EntryKind::File && !e.path.starts_with("imported/"))
            .map(|e| e.path)
            .collect();
        for p in files.iter().filter(|_| rng.chance(1, 3)) {
            lb.delete(p).unwrap();
        }
        let _ = lb.remove_var(&format!("var{}", rng.below(25)));
        if round % 2 == 1 {
            let from = format!("r{}", rng.below(3));
            let to = format!("moved{round}");
            if lb.stat(&from).unwrap().is_some() {
                lb.rename(&from, &to).unwrap();
            }
        }
        lb.commit().unwrap();
    }
    lb.put("empty.txt", b"").unwrap();
    lb.set_var("empty-var", b"").unwrap();
    lb.commit().unwrap();
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn check_same(want: &Snapshot, got: &Snapshot, what: &str) {
    assert!(
        want == got,
        "{what}: the visible state changed: {}",
        snapshot_diff(want, got)
    );
}

fn check_clean(lb: &Lockbox, what: &str) {
    lb.verify()
        .unwrap_or_else(|e| panic!("{what}: verify: {e:?}"));
    let insp = lb.inspect().unwrap();
    assert_eq!(
        insp.slot_sequences,
        [Some(lb.sequence()); 2],
        "{what}: both commit slots hold the current commit"
    );
    assert!(
        insp.unreachable_nonzero.is_empty(),
        "{what}: non-zero bytes outside every reachable region: {:?}",
        insp.unreachable_nonzero
    );
}

#[test]
fn compact_after_churn_keeps_everything_and_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.lbox");
    let mut lb = Lockbox::builder()
        .kdf(cheap_kdf())
        .create(&path, pass())
        .unwrap();
    lb.add_key(raw_key(3)).unwrap();
    churn(&mut lb, test_seed(11));
    let want = snapshot(&lb);
    let seq_before = lb.sequence();
    let len_before = std::fs::metadata(&path).unwrap().len();
    // garbage left by an interrupted compaction is removed
    std::fs::write(dir.path().join("c.lbox.compact-tmp"), b"leftover").unwrap();

    let stats = lb.compact().unwrap();
    let len_after = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "[compact] after churn: {} entries, {} variables; {len_before} B -> {len_after} B \
         ({:.1} %), sequence {seq_before} -> {}; {:.1?}",
        want.entries.len(),
        want.vars.len(),
        100.0 * len_after as f64 / len_before as f64,
        lb.sequence(),
        stats.duration
    );
    assert_eq!(stats.bytes_before, len_before);
    assert_eq!(stats.bytes_after, len_after);
    assert_eq!(
        stats.entries,
        (want.entries.len() + want.vars.len()) as u64,
        "CompactStats::entries counts entries and variables"
    );
    assert!(
        len_after < len_before,
        "compact did not shrink the file: {len_before} -> {len_after}"
    );
    assert!(
        lb.sequence() > seq_before,
        "sequence went from {seq_before} to {} across compact",
        lb.sequence()
    );
    assert!(!lb.has_changes());
    check_same(&want, &snapshot(&lb), "same handle after compact");
    check_clean(&lb, "after compact");
    assert_eq!(lb.key_count(), 2);
    assert_eq!(
        dir_names(dir.path()),
        vec!["c.lbox".to_string()],
        "compact left other files next to the archive"
    );
    // the compacted handle still holds the writer lock
    match Lockbox::open(&path, raw_key(3)) {
        Err(lockbox::Error::Locked) => {}
        other => panic!(
            "a second writer while the compacted handle is open: {:?}, expected Locked",
            other.map(|_| "opened").map_err(|e| err_kind(&e))
        ),
    }

    // the handle goes on: sequence numbers keep increasing
    let seq_c = lb.sequence();
    lb.put("after/compact.txt", b"written after compact")
        .unwrap();
    lb.commit().unwrap();
    assert!(lb.sequence() > seq_c);
    let want2 = snapshot(&lb);
    let seq2 = lb.sequence();
    drop(lb);

    // both keys open the compacted file
    let lb = Lockbox::open(&path, pass()).unwrap();
    assert_eq!(lb.sequence(), seq2);
    assert_eq!(lb.key_count(), 2);
    check_same(&want2, &snapshot(&lb), "reopened with the passphrase");
    check_clean(&lb, "reopened");
    drop(lb);
    let mut lb = Lockbox::open(&path, raw_key(3)).unwrap();
    check_same(&want2, &snapshot(&lb), "reopened with the raw key");

    // compacting a compacted file: no smaller, no larger (within slack)
    let len1 = std::fs::metadata(&path).unwrap().len();
    let s2 = lb.compact().unwrap();
    let len2 = std::fs::metadata(&path).unwrap().len();
    eprintln!("[compact] again: {len1} B -> {len2} B");
    assert!(
        len2 <= len1 + 4096,
        "a second compact grew the file: {len1} -> {len2}"
    );
    assert_eq!(s2.bytes_after, len2);
    check_same(&want2, &snapshot(&lb), "after the second compact");
    check_clean(&lb, "after the second compact");
    assert!(lb.sequence() > seq2);
    drop(lb);
    match Lockbox::open(&path, raw_key(99)) {
        Err(lockbox::Error::WrongKey) => {}
        other => panic!(
            "a wrong key on the compacted file: {:?}",
            other.map(|_| "opened").map_err(|e| err_kind(&e))
        ),
    }
}

#[test]
fn compact_keeps_passphrase_slots_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.lbox");
    let mut lb = Lockbox::builder()
        .kdf(cheap_kdf())
        .create(&path, pass())
        .unwrap();
    lb.add_key(Key::passphrase("second")).unwrap();
    lb.add_key(raw_key(4)).unwrap();
    lb.remove_key(&Key::passphrase("second")).unwrap();
    churn(&mut lb, test_seed(12));
    let want = snapshot(&lb);
    lb.compact().unwrap();
    drop(lb);
    for k in [pass(), raw_key(4)] {
        let lb = Lockbox::open(&path, k).unwrap();
        check_same(&want, &snapshot(&lb), "reopen");
        assert_eq!(lb.key_count(), 2);
    }
    match Lockbox::open(&path, Key::passphrase("second")) {
        Err(lockbox::Error::WrongKey) => {}
        other => panic!(
            "a removed key opened the compacted file: {:?}",
            other.map(|_| "opened").map_err(|e| err_kind(&e))
        ),
    }
}

#[test]
fn compact_in_memory() {
    let mut lb = Lockbox::builder().create_in_memory(raw_key(5)).unwrap();
    churn(&mut lb, test_seed(13));
    let want = snapshot(&lb);
    let seq = lb.sequence();
    let before = lb.image().unwrap().len();
    let stats = lb.compact().unwrap();
    let img = lb.image().unwrap();
    eprintln!(
        "[compact] in memory: {before} B -> {} B (stats {} -> {})",
        img.len(),
        stats.bytes_before,
        stats.bytes_after
    );
    assert!(img.len() < before, "in-memory compact did not shrink");
    assert!(lb.sequence() > seq);
    check_same(&want, &snapshot(&lb), "in memory after compact");
    check_clean(&lb, "in memory after compact");
    let lb2 = Lockbox::builder().open_bytes(img, raw_key(5)).unwrap();
    check_same(&want, &snapshot(&lb2), "image of the compacted lockbox");
    lb2.verify().unwrap();
}

#[test]
fn compact_commits_staged_changes_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.lbox");
    let mut lb = Lockbox::create(&path, raw_key(6)).unwrap();
    lb.put("a.txt", b"committed").unwrap();
    lb.put("b.txt", b"to be deleted").unwrap();
    lb.set_var("v", b"old").unwrap();
    lb.commit().unwrap();
    let seq = lb.sequence();
    lb.put("staged.txt", &Rng::new(1).content(5000)).unwrap();
    lb.put("staged-big.bin", &Rng::new(2).bytes(300_000))
        .unwrap();
    lb.delete("b.txt").unwrap();
    lb.set_var("v", b"new").unwrap();
    lb.symlink("ln", "a.txt").unwrap();
    assert!(lb.has_changes());
    let want = snapshot(&lb);
    lb.compact().unwrap();
    assert!(
        !lb.has_changes(),
        "staged changes still staged after compact"
    );
    assert!(lb.sequence() > seq + 1, "a commit and the compaction");
    check_same(&want, &snapshot(&lb), "after compact");
    lb.rollback(); // nothing left to roll back
    check_same(&want, &snapshot(&lb), "rollback after compact");
    drop(lb);
    let lb = Lockbox::open(&path, raw_key(6)).unwrap();
    check_same(&want, &snapshot(&lb), "reopened");
    assert_eq!(lb.stat("b.txt").unwrap(), None);
    assert_eq!(lb.var("v").unwrap().as_deref(), Some(&b"new"[..]));
}

#[test]
fn compact_reports_progress() {
    let mut lb = Lockbox::builder().create_in_memory(raw_key(7)).unwrap();
    churn(&mut lb, test_seed(14));
    let want = snapshot(&lb);
    let total = (want.entries.len() + want.vars.len()) as u64;
    let mut seen: Vec<Progress> = Vec::new();
    lb.compact_with_progress(|p| seen.push(*p)).unwrap();
    assert!(!seen.is_empty(), "the progress callback was never called");
    for (i, p) in seen.iter().enumerate() {
        assert_eq!(
            p.files,
            i as u64 + 1,
            "progress.files must increase by one per call"
        );
        assert_eq!(p.files_total, Some(total), "files_total");
        if i > 0 {
            assert!(p.bytes >= seen[i - 1].bytes, "bytes went backwards");
        }
    }
    let last = seen.last().unwrap();
    assert_eq!(
        Some(last.files),
        last.files_total,
        "progress must reach files_total"
    );
    let file_bytes: u64 = want.files.values().map(|d| d.len() as u64).sum();
    assert!(
        last.bytes >= file_bytes,
        "progress.bytes {} < the {file_bytes} bytes of file content",
        last.bytes
    );
    eprintln!("[compact] progress: {} calls, last {:?}", seen.len(), last);
    check_same(&want, &snapshot(&lb), "after compact_with_progress");
}

#[test]
fn compact_needs_a_writable_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.lbox");
    let mut lb = Lockbox::create(&path, raw_key(8)).unwrap();
    lb.put("x", b"y").unwrap();
    lb.commit().unwrap();
    drop(lb);
    let before = std::fs::read(&path).unwrap();
    let mut ro = Lockbox::builder()
        .read_only(true)
        .open(&path, raw_key(8))
        .unwrap();
    match ro.compact() {
        Err(lockbox::Error::ReadOnly) => {}
        other => panic!(
            "compact on a read-only handle: {:?}",
            other.map_err(|e| err_kind(&e))
        ),
    }
    drop(ro);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(dir_names(dir.path()), vec!["ro.lbox".to_string()]);
}

#[test]
fn compact_of_an_empty_lockbox() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.lbox");
    let mut lb = Lockbox::create(&path, raw_key(9)).unwrap();
    let seq = lb.sequence();
    let stats = lb.compact().unwrap();
    assert_eq!(stats.entries, 0);
    assert!(lb.sequence() > seq);
    check_clean(&lb, "empty after compact");
    // everything deleted, then compacted: back to the empty size
    lb.put("a", &Rng::new(3).bytes(500_000)).unwrap();
    lb.set_var("v", b"1").unwrap();
    lb.commit().unwrap();
    lb.delete("").unwrap();
    lb.remove_var("v").unwrap();
    lb.commit().unwrap();
    let s = lb.compact().unwrap();
    eprintln!(
        "[compact] empty: {} B; emptied: {} -> {} B",
        stats.bytes_after, s.bytes_before, s.bytes_after
    );
    assert!(
        s.bytes_after <= stats.bytes_after + 4096,
        "an emptied lockbox compacts to {} B, an empty one is {} B",
        s.bytes_after,
        stats.bytes_after
    );
    drop(lb);
    let lb = Lockbox::open(&path, raw_key(9)).unwrap();
    assert_eq!(lb.list("").unwrap().count(), 0);
    lb.verify().unwrap();
}

/// More entries than one internal batch of the copy (50,000): the new file
/// is committed in several steps before it replaces the old one.
#[test]
fn compact_more_entries_than_one_batch() {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.lbox");
    let mut lb = Lockbox::create(&path, raw_key(10)).unwrap();
    let mut rng = Rng::new(test_seed(15));
    for i in 0..66_000u32 {
        let n = if i % 3 == 0 { 20 } else { 300 };
        lb.put(&format!("d{}/f{i}", i % 97), &rng.content(n))
            .unwrap();
    }
    for i in 0..40 {
        lb.set_var(&format!("v{i}"), &rng.content(i * 50)).unwrap();
    }
    lb.commit().unwrap();
    for i in (0..66_000u32).step_by(10) {
        lb.delete(&format!("d{}/f{i}", i % 97)).unwrap();
    }
    lb.commit().unwrap();
    let want = snapshot(&lb);
    let seq = lb.sequence();
    let mut calls = 0u64;
    let stats = lb.compact_with_progress(|_| calls += 1).unwrap();
    eprintln!(
        "[compact] {} entries + 40 variables: {} -> {} B, sequence {seq} -> {}; {:.1?}",
        want.entries.len(),
        stats.bytes_before,
        stats.bytes_after,
        lb.sequence(),
        started.elapsed()
    );
    assert_eq!(calls, (want.entries.len() + want.vars.len()) as u64);
    assert!(
        want.entries.len() > 50_000,
        "the test needs more than one batch"
    );
    // the new file's first commit, one intermediate commit, the last one
    assert!(
        lb.sequence() >= seq + 3,
        "expected an intermediate commit: sequence {seq} -> {}",
        lb.sequence()
    );
    check_same(&want, &snapshot(&lb), "after a multi-batch compact");
    check_clean(&lb, "after a multi-batch compact");
    assert_eq!(dir_names(dir.path()), vec!["many.lbox".to_string()]);
    drop(lb);
    let lb = Lockbox::open(&path, raw_key(10)).unwrap();
    check_same(&want, &snapshot(&lb), "reopened");
}

/// Entries imported with `add_path` carry their own modes and mtimes
/// (not the defaults `put` gives); compaction keeps them exactly, and an
/// extraction of the compacted lockbox with `restore_mtimes` restores them
/// to the nanosecond (which `Entry` does not show).
#[test]
fn compact_keeps_imported_modes_and_mtimes() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, UNIX_EPOCH};
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("tree");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("private/empty")).unwrap();
    let mut rng = Rng::new(test_seed(16));
    let files: [(&str, u32, usize, u64); 5] = [
        ("bin/tool", 0o755, 20_000, 1_000_000_000),
        ("private/key", 0o600, 300, 1_100_000_000),
        ("readme", 0o644, 90, 1_200_000_000),
        ("shared.log", 0o640, 150_000, 1_300_000_000),
        ("private/notes", 0o400, 5000, 1_400_000_000),
    ];
    for (p, mode, len, mtime) in files {
        let path = root.join(p);
        std::fs::write(&path, rng.content(len)).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::new(mtime, 123_456_789))
            .unwrap();
        drop(f);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::os::unix::fs::symlink("../readme", root.join("bin/readme-link")).unwrap();
    std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();

    let mut lb = Lockbox::builder().create_in_memory(raw_key(11)).unwrap();
    lb.add_path(&root, "imported").unwrap();
    lb.commit().unwrap();
    churn(&mut lb, test_seed(17)); // other entries come and go around them
    let want = snapshot(&lb);
    let modes: Vec<(String, u32, i64)> = want
        .entries
        .iter()
        .filter(|e| e.path.starts_with("imported/"))
        .map(|e| (e.path.clone(), e.mode & 0o7777, e.mtime))
        .collect();
    for (p, mode, _, mtime) in files {
        let e = want
            .entries
            .iter()
            .find(|e| e.path == format!("imported/{p}"))
            .unwrap_or_else(|| panic!("imported/{p} missing"));
        assert_eq!(
            (e.mode & 0o7777, e.mtime),
            (mode, mtime as i64),
            "add_path kept imported/{p}'s mode and mtime"
        );
    }
    lb.compact().unwrap();
    check_same(&want, &snapshot(&lb), "imported entries after compact");
    let after: Vec<(String, u32, i64)> = snapshot(&lb)
        .entries
        .iter()
        .filter(|e| e.path.starts_with("imported/"))
        .map(|e| (e.path.clone(), e.mode & 0o7777, e.mtime))
        .collect();
    assert_eq!(after, modes);
    check_clean(&lb, "after compact");

    // extracting the compacted lockbox restores modes and mtimes
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("x");
    lb.extract_to_directory(
        &dest,
        &lockbox::ExtractOptions::default().restore_mtimes(true),
    )
    .unwrap();
    for (p, mode, len, mtime) in files {
        let m = std::fs::metadata(dest.join("imported").join(p)).unwrap();
        assert_eq!(m.len(), len as u64, "{p}");
        assert_eq!(m.permissions().mode() & 0o7777, mode, "extracted {p} mode");
        assert_eq!(
            m.modified().unwrap(),
            UNIX_EPOCH + Duration::new(mtime, 123_456_789),
            "extracted {p} mtime (nanoseconds included: compaction keeps them)"
        );
    }
}

/// `compact` writes the copy as the handle writes new data now: a lockbox
/// imported under `BulkImport` (1 MiB packs) and compacted from a handle
/// set to `BulkImport` after it was opened comes out no larger; compacted
/// under the default profile, its small files go into 64 KiB packs and the
/// file grows. Both keep every entry.
#[test]
fn compact_packs_as_the_current_profile() {
    let mut lb = Lockbox::builder()
        .profile(Profile::BulkImport)
        .create_in_memory(raw_key(9))
        .unwrap();
    // Files made of lines drawn from a corpus of 5,000 random ones (like
    // sources sharing boilerplate): a 1 MiB pack sees many repeats, a
    // 64 KiB one few.
    let mut rng = Rng::new(test_seed(21));
    let corpus: Vec<Vec<u8>> = (0..5000)
        .map(|_| {
            let len = 30 + rng.below(50) as usize;
            let mut l = rng.bytes(len);
            l.iter_mut().for_each(|b| *b = b'a' + *b % 26);
            l.push(b'\n');
            l
        })
        .collect();
    for i in 0..3000 {
        let lines = 5 + rng.below(40) as usize;
        let text: Vec<u8> = (0..lines)
            .flat_map(|_| corpus[rng.below(5000) as usize].iter().copied())
            .collect();
        lb.put(&format!("d{:02}/f{i:04}", i % 40), &text).unwrap();
    }
    lb.commit().unwrap();
    let want = snapshot(&lb);
    let img = lb.image().unwrap();
    let before = img.len();
    let compacted = |bulk: bool| {
        let mut lb = Lockbox::builder()
            .open_bytes(img.clone(), raw_key(9))
            .unwrap();
        if bulk {
            lb.set_profile(Profile::BulkImport);
        }
        lb.compact().unwrap();
        check_same(&want, &snapshot(&lb), "after compact");
        lb.image().unwrap().len()
    };
    let (bulk, default) = (compacted(true), compacted(false));
    eprintln!("[compact] by profile: {before} B -> BulkImport {bulk} B, default {default} B");
    assert!(
        bulk <= before,
        "BulkImport compaction grew {before} -> {bulk}"
    );
    assert!(bulk < default, "BulkImport {bulk} B, default {default} B");
}
