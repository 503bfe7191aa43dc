//! Duplicates across commits: a packed content of at least 4 KiB committed
//! once is found again through the content index, in any later session, and
//! shared; the index never outlives the content (deleting the last user
//! removes its entry, so a later copy is stored afresh), and sharing never
//! keeps the dead bytes of a member that moved to another range.

use lockbox::{ExtractOptions, Key, Lockbox, Profile};

mod common;
use common::{Draw, XorShift};

/// 8 KiB of incompressible bytes carrying a 16-byte marker.
fn content(seed: u64, marker: &[u8; 16]) -> Vec<u8> {
    let mut v = XorShift::new(seed).bytes(8192);
    v[100..116].copy_from_slice(marker);
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
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
        // Later sessions, one copy per commit, then 50 in one.
        for i in 0..5u64 {
            let data = if dups {
                x.clone()
            } else {
                content(100 + i, &marker)
            };
            lb.put(&format!("later/{i}"), &data).unwrap();
            lb.commit().unwrap();
        }
        for i in 0..50u64 {
            let data = if dups {
                x.clone()
            } else {
                content(200 + i, &marker)
            };
            lb.put(&format!("batch/{i:02}"), &data).unwrap();
        }
        lb.commit().unwrap();
        lb.verify().unwrap();
        lb
    };
    let (shared, distinct) = (build(true), build(false));
    let (a, b) = (
        shared.image().unwrap().len(),
        distinct.image().unwrap().len(),
    );
    assert!(
        a + 50 * 8192 < b,
        "55 later copies of one 8 KiB content: {a} bytes vs {b} for distinct ones"
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
    let mut lb = Lockbox::builder()
        .profile(Profile::BulkImport)
        .create(&path, Key::raw([10; 32]))
        .unwrap();
    lb.add_path(&src, "one").unwrap();
    lb.commit().unwrap();
    let first = std::fs::metadata(&path).unwrap().len();
    drop(lb);
    let mut lb = Lockbox::builder()
        .profile(Profile::BulkImport)
        .open(&path, Key::raw([10; 32]))
        .unwrap();
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
