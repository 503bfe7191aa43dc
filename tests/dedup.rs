//! Duplicate small contents are stored once (within a session: since the
//! last commit or rollback), read back per path, and deleting some of the
//! paths never takes the bytes of the others; deleting all leaves nothing.
//! Large (framed) contents too, in a session and across commits, whether
//! put from memory, streamed or imported: their frames are freed with
//! their last user.
//!
//! Duplicates across commits: a packed content of at least 4 KiB committed
//! once is found again through the content index, in any later session, and
//! shared; the index never outlives the content (deleting the last user
//! removes its entry, so a later copy is stored afresh), and sharing never
//! keeps the dead bytes of a member that moved to another range.

use lockbox::{ExtractOptions, Key, Lockbox, Profile};

mod common;
use common::{Draw, XorShift};

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    XorShift::new(seed).bytes(len)
}

/// 8 KiB of incompressible bytes carrying a 16-byte marker.
fn content(seed: u64, marker: &[u8; 16]) -> Vec<u8> {
    let mut v = random_bytes(seed, 8192);
    v[100..116].copy_from_slice(marker);
    v
}

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).expect("stat").len()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn duplicates_in_one_commit_are_stored_once_and_survive_partial_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let (dup, distinct) = (
        dir.path().join("dup.lbox"),
        dir.path().join("distinct.lbox"),
    );
    let marker = *b"DEDUP-MARKER-001";
    let data = content(1, &marker);

    let mut lb = Lockbox::create(&dup, Key::raw([3; 32])).unwrap();
    for i in 0..200 {
        lb.put(&format!("d/{i:03}"), &data).unwrap();
    }
    lb.commit().unwrap();
    let mut other = Lockbox::create(&distinct, Key::raw([3; 32])).unwrap();
    for i in 0..200 {
        other
            .put(&format!("d/{i:03}"), &content(1000 + i, &marker))
            .unwrap();
    }
    other.commit().unwrap();
    let (a, b) = (file_len(&dup), file_len(&distinct));
    assert!(
        a * 10 < b,
        "200 copies of one 8 KiB content take {a} bytes, 200 distinct ones {b}"
    );

    lb.verify().unwrap();
    for i in 0..200 {
        assert_eq!(lb.get(&format!("d/{i:03}")).unwrap(), data, "path {i}");
    }
    // Deleting all but one keeps the last one's bytes.
    for i in 1..200 {
        lb.delete(&format!("d/{i:03}")).unwrap();
    }
    lb.commit().unwrap();
    lb.verify().unwrap();
    assert_eq!(lb.get("d/000").unwrap(), data);
    drop(lb);
    let mut lb = Lockbox::open(&dup, Key::raw([3; 32])).unwrap();
    assert_eq!(lb.get("d/000").unwrap(), data);
    let seen = lb.inspect().unwrap();
    assert!(
        seen.plaintexts.iter().any(|p| contains(p, &marker)),
        "the live copy decrypts"
    );
    // Deleting the last one leaves no trace of the content.
    lb.delete("d/000").unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    gone(&lb, &marker, "the last copy deleted");
    let raw = std::fs::read(&dup).unwrap();
    assert!(!contains(&raw, &marker));
}

#[test]
fn a_replaced_first_copy_never_lends_other_bytes() {
    let mut lb = Lockbox::builder()
        .create_in_memory(Key::raw([4; 32]))
        .unwrap();
    let x = content(7, b"XXXXXXXXXXXXXXXX");
    let y = content(8, b"YYYYYYYYYYYYYYYY");
    // Same length, other bytes, while the pack is still in memory.
    lb.put("a", &x).unwrap();
    lb.put("a", &y).unwrap();
    lb.put("b", &x).unwrap();
    assert_eq!(lb.get("b").unwrap(), x);
    // The same after the first copy's pack was written: fill packs.
    lb.put("c", &x).unwrap();
    for i in 0..2000 {
        lb.put(&format!("fill/{i}"), &random_bytes(50 + i, 4096))
            .unwrap();
    }
    lb.put("c", &y).unwrap();
    lb.put("d", &x).unwrap();
    lb.put("e", &y).unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    for (p, want) in [("a", &y), ("b", &x), ("c", &y), ("d", &x), ("e", &y)] {
        assert_eq!(&lb.get(p).unwrap(), want, "{p}");
    }
    // A rolled-back copy is not shared either.
    lb.put("f", &content(9, b"ZZZZZZZZZZZZZZZZ")).unwrap();
    lb.rollback();
    lb.put("g", &content(9, b"ZZZZZZZZZZZZZZZZ")).unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    assert_eq!(lb.get("g").unwrap(), content(9, b"ZZZZZZZZZZZZZZZZ"));
    assert!(lb.stat("f").unwrap().is_none());
}

#[test]
fn imported_duplicates_are_stored_once_and_extracted_to_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let body = random_bytes(77, 20_000);
    for d in 0..20 {
        let sub = src.join(format!("pkg{d:02}"));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("LICENSE"), &body).unwrap();
        std::fs::write(sub.join("own.txt"), format!("package {d}")).unwrap();
    }
    let path = dir.path().join("t.lbox");
    let mut lb = bulk().create(&path, Key::raw([5; 32])).unwrap();
    let st = lb.add_path(&src, "").unwrap();
    assert_eq!(st.files, 40);
    lb.commit().unwrap();
    lb.verify().unwrap();
    let len = file_len(&path);
    assert!(
        len < 20480 + 4 * body.len() as u64 + 64 * 1024,
        "20 copies of a 20 KB incompressible file: lockbox of {len} bytes"
    );
    let out = dir.path().join("out");
    lb.extract_to_directory(&out, &ExtractOptions::default())
        .unwrap();
    for d in 0..20 {
        let sub = out.join(format!("pkg{d:02}"));
        assert_eq!(std::fs::read(sub.join("LICENSE")).unwrap(), body);
        assert_eq!(
            std::fs::read_to_string(sub.join("own.txt")).unwrap(),
            format!("package {d}")
        );
    }
}

/// Copies staged after the first copy's pack was written (in the same
/// session) share its bytes too; the originals can go and the copies
/// stay; a first copy replaced since, or whose pack lost members before
/// it was written (moving the others), never makes a copy read other
/// bytes.
#[test]
fn duplicates_of_written_packs_are_shared_and_stay_correct() {
    let build = |dups: bool| {
        let mut lb = Lockbox::builder()
            .create_in_memory(Key::raw([6; 32]))
            .unwrap();
        for i in 0..100 {
            lb.put(&format!("first/{i:03}"), &content(i, b"FIRST-COPY-00000"))
                .unwrap();
        }
        // 8 MiB of other files: the first copies' packs are written.
        for i in 0..2000 {
            lb.put(&format!("fill/{i}"), &random_bytes(5000 + i, 4096))
                .unwrap();
        }
        for i in 0..100 {
            let seed = if dups { i } else { 10_000 + i };
            lb.put(
                &format!("second/{i:03}"),
                &content(seed, b"FIRST-COPY-00000"),
            )
            .unwrap();
        }
        lb.commit().unwrap();
        lb.verify().unwrap();
        lb
    };
    let shared = build(true);
    let distinct = build(false);
    smaller_by(
        &shared,
        &distinct,
        700 * 1024,
        "100 written-pack duplicates of 8 KiB",
    );
    let mut lb = shared;
    for i in 0..100 {
        let want = content(i, b"FIRST-COPY-00000");
        assert!(
            lb.get(&format!("second/{i:03}")).unwrap() == want,
            "second/{i:03}"
        );
        lb.delete(&format!("first/{i:03}")).unwrap();
    }
    lb.commit().unwrap();
    lb.verify().unwrap();
    for i in 0..100 {
        let want = content(i, b"FIRST-COPY-00000");
        assert!(
            lb.get(&format!("second/{i:03}")).unwrap() == want,
            "second/{i:03}"
        );
    }

    // Staleness: "a" holds x, its pack is written, "a" becomes y (same
    // length): "b" with x must get x.
    let x = content(70, b"XXXXXXXXXXXXXXXX");
    let y = content(71, b"YYYYYYYYYYYYYYYY");
    lb.put("a", &x).unwrap();
    for i in 0..2000 {
        lb.put(&format!("fill2/{i}"), &random_bytes(9000 + i, 4096))
            .unwrap();
    }
    lb.put("a", &y).unwrap();
    lb.put("b", &x).unwrap();
    // A pack that loses a member before it is written moves the others:
    // "c" (z) is noted, "dead" dies in the same pack, the pack is written
    // rewritten; "d" with z must still read z.
    let z = content(72, b"ZZZZZZZZZZZZZZZZ");
    lb.put("dead", &random_bytes(73, 8192)).unwrap();
    lb.put("c", &z).unwrap();
    lb.delete("dead").unwrap();
    for i in 0..2000 {
        lb.put(&format!("fill3/{i}"), &random_bytes(19_000 + i, 4096))
            .unwrap();
    }
    lb.put("d", &z).unwrap();
    // The trap that rewrite sets: "m" holds v, then w (same length) in the
    // same open pack; the rewrite drops v and moves w to v's offset, so
    // "m" points at the noted place again, with other bytes: "n" with v
    // must get v.
    let v = content(74, b"VVVVVVVVVVVVVVVV");
    let w = content(75, b"WWWWWWWWWWWWWWWW");
    lb.put("m", &v).unwrap();
    lb.put("m", &w).unwrap();
    for i in 0..2000 {
        lb.put(&format!("fill4/{i}"), &random_bytes(29_000 + i, 4096))
            .unwrap();
    }
    lb.put("n", &v).unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    for (p, want) in [
        ("a", &y),
        ("b", &x),
        ("c", &z),
        ("d", &z),
        ("m", &w),
        ("n", &v),
    ] {
        assert!(&lb.get(p).unwrap() == want, "{p} reads other bytes");
    }
}

/// A builder for imports: `Profile::BulkImport`.
fn bulk() -> lockbox::Builder {
    Lockbox::builder().profile(Profile::BulkImport)
}

/// The archive holding duplicates is more than `saved` bytes smaller than
/// the one holding distinct contents of the same lengths.
fn smaller_by(shared: &Lockbox, distinct: &Lockbox, saved: usize, what: &str) {
    let (a, b) = (
        shared.image().unwrap().len(),
        distinct.image().unwrap().len(),
    );
    assert!(
        a + saved < b,
        "{what}: {a} bytes vs {b} with distinct contents"
    );
}

/// No plaintext region holds `marker`, and everything unreachable is zero.
fn gone(lb: &Lockbox, marker: &[u8; 16], what: &str) {
    let seen = lb.inspect().unwrap();
    assert!(
        !seen.plaintexts.iter().any(|p| contains(p, marker)),
        "{what}: a dead content still decrypts"
    );
    assert!(
        seen.unreachable_nonzero.is_empty(),
        "{what}: {:?}",
        seen.unreachable_nonzero
    );
}

#[test]
fn copies_in_later_commits_share_and_the_index_goes_with_the_last_user() {
    let marker = *b"ACROSS-COMMITS-1";
    let x = content(1, &marker);
    let build = |dups: bool| {
        let mut lb = Lockbox::builder()
            .create_in_memory(Key::raw([8; 32]))
            .unwrap();
        lb.put("orig", &x).unwrap();
        lb.commit().unwrap();
        // The copy, or distinct bytes of the same length and marker.
        let data = |seed: u64| {
            if dups {
                x.clone()
            } else {
                content(seed, &marker)
            }
        };
        // Later sessions, one copy per commit, then 50 in one.
        for i in 0..5u64 {
            lb.put(&format!("later/{i}"), &data(100 + i)).unwrap();
            lb.commit().unwrap();
        }
        for i in 0..50u64 {
            lb.put(&format!("batch/{i:02}"), &data(200 + i)).unwrap();
        }
        lb.commit().unwrap();
        lb.verify().unwrap();
        lb
    };
    let (shared, distinct) = (build(true), build(false));
    smaller_by(
        &shared,
        &distinct,
        50 * 8192,
        "55 later copies of one 8 KiB content",
    );

    let mut lb = shared;
    let paths: Vec<String> = ["orig".to_string()]
        .into_iter()
        .chain((0..5).map(|i| format!("later/{i}")))
        .chain((0..50).map(|i| format!("batch/{i:02}")))
        .collect();
    for p in &paths {
        assert_eq!(lb.get(p).unwrap(), x, "{p}");
    }
    // The first copy goes: the others keep the bytes (and the index).
    lb.delete("orig").unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    lb.put("again", &x).unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    for p in paths.iter().skip(1).chain(&["again".to_string()]) {
        assert_eq!(lb.get(p).unwrap(), x, "{p}");
    }
    // Every user goes: nothing of the content is left, and a new copy is
    // stored afresh (an index entry left behind would point it at freed
    // space, which verify and the read would catch).
    for p in paths.iter().skip(1).chain(&["again".to_string()]) {
        lb.delete(p).unwrap();
    }
    lb.commit().unwrap();
    lb.verify().unwrap();
    gone(&lb, &marker, "all copies deleted");
    lb.put("fresh", &x).unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    assert_eq!(lb.get("fresh").unwrap(), x);
}

/// A member that moves to another range of its own frame (its new content
/// equals another member's) leaves its old bytes dead in a frame that stays
/// live: the commit must repack that frame, not keep it as renamed.
#[test]
fn a_member_moved_within_its_frame_leaves_nothing_behind() {
    for delete_first in [false, true] {
        let mut lb = Lockbox::builder()
            .create_in_memory(Key::raw([9; 32]))
            .unwrap();
        let (mx, my) = (*b"MOVED-AWAY-XXXXX", *b"KEPT-CONTENT-YYY");
        let (x, y) = (content(10, &mx), content(11, &my));
        lb.put("p", &x).unwrap();
        lb.put("q", &y).unwrap();
        lb.put("other", &content(12, b"OTHER-CONTENT-00")).unwrap();
        lb.commit().unwrap();
        if delete_first {
            // p dies, r shares q's range of the same frame.
            lb.delete("p").unwrap();
            lb.put("r", &y).unwrap();
        } else {
            // p takes q's content: it moves to q's range.
            lb.put("p", &y).unwrap();
        }
        lb.commit().unwrap();
        lb.verify().unwrap();
        let what = if delete_first {
            "p deleted, r = q"
        } else {
            "p = q"
        };
        gone(&lb, &mx, what);
        assert_eq!(lb.get("q").unwrap(), y, "{what}");
        let moved = if delete_first { "r" } else { "p" };
        assert_eq!(lb.get(moved).unwrap(), y, "{what}");
        assert_eq!(
            lb.get("other").unwrap(),
            content(12, b"OTHER-CONTENT-00"),
            "{what}"
        );
        if delete_first {
            assert!(lb.stat("p").unwrap().is_none());
        }
    }
}

/// Importing a tree a second time under another prefix stores almost
/// nothing new: its files of 4 KiB and more are found in the index.
#[test]
fn a_second_import_of_a_tree_shares_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mut bodies = Vec::new();
    for d in 0..10 {
        let sub = src.join(format!("pkg{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..10 {
            let body = XorShift::new(d * 100 + f).bytes(5000 + 300 * f as usize);
            std::fs::write(sub.join(format!("f{f}.bin")), &body).unwrap();
            bodies.push((format!("pkg{d}/f{f}.bin"), body));
        }
    }
    let path = dir.path().join("t.lbox");
    let mut lb = bulk().create(&path, Key::raw([10; 32])).unwrap();
    lb.add_path(&src, "one").unwrap();
    lb.commit().unwrap();
    let first = std::fs::metadata(&path).unwrap().len();
    drop(lb);
    let mut lb = bulk().open(&path, Key::raw([10; 32])).unwrap();
    lb.add_path(&src, "two").unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    let second = std::fs::metadata(&path).unwrap().len();
    let data: u64 = bodies.iter().map(|(_, b)| b.len() as u64).sum();
    assert!(
        second < first + data / 4,
        "a second import of {data} bytes grew the file from {first} to {second}"
    );
    let out = dir.path().join("out");
    lb.extract_to_directory(&out, &ExtractOptions::default())
        .unwrap();
    for (p, body) in &bodies {
        for prefix in ["one", "two"] {
            assert_eq!(&std::fs::read(out.join(prefix).join(p)).unwrap(), body);
        }
    }
    // The first import goes; the second still reads.
    lb.delete("one").unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    for (p, body) in &bodies {
        assert_eq!(&lb.get(&format!("two/{p}")).unwrap(), body, "{p}");
    }
}

/// A framed content put from memory, streamed, and put again in later
/// commits is stored once; it survives the deletion or renaming of any of
/// its users and goes, zeroed, with the last one.
#[test]
fn large_copies_share_their_frames_until_the_last_user_goes() {
    let marker = *b"FRAMED-SHARED-01";
    let mut big = random_bytes(31, 300_000);
    big[70_000..70_016].copy_from_slice(&marker);
    let build = |dups: bool| {
        let mut lb = Lockbox::builder()
            .create_in_memory(Key::raw([6; 32]))
            .unwrap();
        let other = |i: u64| {
            let mut v = random_bytes(40 + i, big.len());
            v[70_000..70_016].copy_from_slice(&marker);
            v
        };
        let data = |i: u64| if dups { big.clone() } else { other(i) };
        lb.put("a", &data(0)).unwrap();
        lb.put_reader("b", &data(1)[..]).unwrap();
        lb.commit().unwrap();
        lb.verify().unwrap();
        // Later commits: from memory (found before writing) and streamed
        // (found after: the frames just written are freed by the commit).
        lb.put("c", &data(2)).unwrap();
        lb.commit().unwrap();
        lb.put_reader("d", &data(3)[..]).unwrap();
        lb.commit().unwrap();
        lb.verify().unwrap();
        lb
    };
    // Live bytes (reachable sealed regions; freed space is zeroed, not
    // necessarily trimmed).
    let (shared, distinct) = (build(true), build(false));
    let (a, b) = (
        shared.verify().unwrap().region_bytes,
        distinct.verify().unwrap().region_bytes,
    );
    assert!(
        a + 3 * 290_000 < b,
        "four copies of one 300 KB content: {a} live bytes vs {b} for distinct ones"
    );
    let mut lb = shared;
    gone_but(&lb, "abcd", &big);

    // Delete the first two copies: the others (not staged) keep the frames.
    lb.delete("a").unwrap();
    lb.delete("b").unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    gone_but(&lb, "cd", &big);
    // Rename a third.
    lb.rename("c", "e").unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    assert_eq!(lb.get("d").unwrap(), big);
    assert_eq!(lb.get("e").unwrap(), big);
    // Replace one in the same commit as a copy is added back.
    lb.put("d", b"short now").unwrap();
    lb.put("f", &big).unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    assert_eq!(lb.get("e").unwrap(), big);
    assert_eq!(lb.get("f").unwrap(), big);
    let before = lb.verify().unwrap().region_bytes;
    lb.put("g", &big).unwrap();
    lb.commit().unwrap();
    let after = lb.verify().unwrap().region_bytes;
    assert!(
        after < before + 16_384,
        "g was stored again: {before} -> {after}"
    );

    // Every user goes: nothing of the content is left, and a new copy is
    // stored afresh (a stale index entry would point it at freed space).
    for p in ["e", "f", "g"] {
        lb.delete(p).unwrap();
    }
    lb.commit().unwrap();
    lb.verify().unwrap();
    gone(&lb, &marker, "all framed copies deleted");
    lb.put_reader("fresh", &big[..]).unwrap();
    lb.commit().unwrap();
    lb.verify().unwrap();
    assert_eq!(lb.get("fresh").unwrap(), big);
}

/// Every path of `paths` (one letter each) reads `want`.
fn gone_but(lb: &Lockbox, paths: &str, want: &[u8]) {
    for p in paths.chars() {
        assert!(lb.get(&p.to_string()).unwrap() == want, "{p}");
    }
}

/// Imported large duplicates (read whole by the I/O threads, or streamed
/// by the writer) are stored once and extracted to every path.
#[test]
fn imported_large_duplicates_are_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("x/y")).unwrap();
    let whole = random_bytes(51, 1 << 20);
    let streamed = random_bytes(52, 3 << 20);
    for d in ["", "x", "x/y"] {
        std::fs::write(src.join(d).join("whole.bin"), &whole).unwrap();
        std::fs::write(src.join(d).join("streamed.bin"), &streamed).unwrap();
    }
    let path = tmp.path().join("a.lbox");
    let mut lb = bulk().create(&path, Key::raw([2; 32])).unwrap();
    let imported = lb.add_path(&src, "").unwrap();
    assert_eq!((imported.shared, imported.unchanged), (4, 0));
    lb.commit().unwrap();
    let live = lb.verify().unwrap().region_bytes;
    let once = (whole.len() + streamed.len()) as u64;
    assert!(
        live < once + once / 4,
        "three copies of {once} bytes took {live} live bytes (file: {})",
        file_len(&path)
    );
    let out = tmp.path().join("out");
    lb.extract_to_directory(&out, &ExtractOptions::default())
        .unwrap();
    for d in ["", "x", "x/y"] {
        assert!(std::fs::read(out.join(d).join("whole.bin")).unwrap() == whole);
        assert!(std::fs::read(out.join(d).join("streamed.bin")).unwrap() == streamed);
    }
}

/// A tree imported again in place keeps the bytes of its unchanged files
/// where they are (compared through their hint, or byte for byte for
/// small packed ones; a streamed file is hashed before anything of it is
/// written): the file hardly grows and nothing is repacked,
/// while the changed files are stored anew and everything extracts as the
/// source is now.
#[test]
fn a_tree_imported_again_in_place_keeps_its_unchanged_files() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for d in 0..6 {
        std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
    }
    let mut rng = XorShift::new(77);
    let mut files = Vec::new();
    for i in 0..240u64 {
        // Small (byte compare), 8 KiB (hinted), 100 KB (framed, hinted).
        let len = match i % 12 {
            0 => 8192,
            1 if i % 48 == 1 => 100_000,
            _ => 200 + rng.below(3000) as usize,
        };
        let p = src.join(format!("d{}/f{i:03}", i % 6));
        std::fs::write(&p, random_bytes(1000 + i, len)).unwrap();
        files.push(p);
    }
    std::os::unix::fs::symlink("f000", src.join("d0/link")).unwrap();
    // Streamed by the writer (over 2 MiB), hashed before it is stored.
    let p = src.join("d0/streamed");
    std::fs::write(&p, random_bytes(999, 5 << 19)).unwrap();
    files.push(p);
    let path = tmp.path().join("a.lbox");
    let mut lb = Lockbox::builder().create(&path, Key::raw([3; 32])).unwrap();
    lb.add_path(&src, "").unwrap();
    lb.commit().unwrap();
    let first = file_len(&path);

    // Unchanged: the second import stores nothing new.
    let imported = lb.add_path(&src, "").unwrap();
    assert_eq!(imported.unchanged, files.len() as u64, "{imported:?}");
    let st = lb.commit().unwrap();
    assert_eq!(
        st.entries_changed, 0,
        "unchanged entries were restaged: {st:?}"
    );
    lb.verify().unwrap();
    let second = file_len(&path);
    assert!(
        second < first + first / 8,
        "an unchanged tree imported again grew the file {first} -> {second} ({st:?})"
    );

    // Three files change (same length, other length, framed same length).
    let change = |i: usize, len: usize| {
        std::fs::write(&files[i], random_bytes(5000 + i as u64, len)).unwrap();
    };
    change(5, std::fs::metadata(&files[5]).unwrap().len() as usize);
    change(7, 1234);
    change(1, 100_000);
    change(240, 5 << 19);
    let imported = lb.add_path(&src, "").unwrap();
    assert_eq!(imported.unchanged, files.len() as u64 - 4, "{imported:?}");
    lb.commit().unwrap();
    lb.verify().unwrap();
    let out = tmp.path().join("out");
    lb.extract_to_directory(&out, &ExtractOptions::default())
        .unwrap();
    for p in &files {
        let rel = p.strip_prefix(&src).unwrap();
        assert!(
            std::fs::read(out.join(rel)).unwrap() == std::fs::read(p).unwrap(),
            "{}",
            rel.display()
        );
    }
}

/// A repack (in the commit, or in relocation commits) moves members that
/// share a range once: the copies stay stored once, and read back.
#[test]
fn a_repack_keeps_shared_members_shared() {
    for relocating in [false, true] {
        let mut b = Lockbox::builder();
        if relocating {
            b = b.relocation_batch(1);
        }
        let mut lb = b.create_in_memory(Key::raw([4; 32])).unwrap();
        let dup = random_bytes(61, 1000);
        for i in 0..30u64 {
            lb.put(&format!("dup/{i}"), &dup).unwrap();
            lb.put(&format!("other/{i}"), &random_bytes(100 + i, 1000))
                .unwrap();
        }
        lb.commit().unwrap();
        // Every other `other` goes: the pack keeps live members next to
        // dead ones and is repacked.
        for i in (0..30).step_by(2) {
            lb.delete(&format!("other/{i}")).unwrap();
        }
        let st = lb.commit().unwrap();
        let r = lb.verify().unwrap();
        // One copy of `dup` and 15 others: 16,000 bytes; 30 copies moved
        // apart would be 45,000.
        assert!(
            r.data_bytes < 20_000,
            "relocating {relocating}: {r:?} after {st:?}"
        );
        for i in 0..30 {
            assert_eq!(lb.get(&format!("dup/{i}")).unwrap(), dup);
        }
        assert_eq!(lb.get("other/1").unwrap(), random_bytes(101, 1000));
    }
}
