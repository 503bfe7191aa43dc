//! add_path and extract_to_directory end to end: a generated tree is
//! imported, extracted, and compared with the source.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use lockbox::{Error, ExtractOptions, Key, Lockbox, Profile};

mod common;
use common::{Draw, XorShift};

#[derive(Debug, PartialEq, Eq)]
enum Node {
    File(Vec<u8>, u32),
    Dir,
    Link(String),
}

fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    Node::Link(fs::read_link(&p).unwrap().to_str().unwrap().to_string()),
                );
            } else if m.is_dir() {
                out.insert(rel, Node::Dir);
                stack.push(p);
            } else {
                out.insert(
                    rel,
                    Node::File(fs::read(&p).unwrap(), m.permissions().mode() & 0o777),
                );
            }
        }
    }
    out
}

fn content(i: usize) -> Vec<u8> {
    let len = match i % 7 {
        0 => 0,
        1 => 1,
        2 => 100,
        3 => 3000,
        4 => 20_000,
        5 => 70_000,
        _ => 500,
    };
    (0..len).map(|j| ((i * 31 + j * 7) % 251) as u8).collect()
}

fn make_tree(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{}/s{}", i % 13, i % 5));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("f{i}.txt"));
        // Duplicate content every 10th file.
        let data = if i % 10 == 0 { content(3) } else { content(i) };
        fs::write(&p, data).unwrap();
        let mode = if i % 4 == 0 { 0o755 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::create_dir_all(root.join("empty/inner")).unwrap();
    symlink("s0/f0.txt", root.join("d0/link-inside")).unwrap();
    symlink("../d1", root.join("d0/link-dir")).unwrap();
}

#[test]
fn tree_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 3000);
    let mut lb = Lockbox::builder()
        .create_in_memory(Key::raw([5; 32]))
        .unwrap();
    let st = lb.add_path(&src, "").unwrap();
    assert_eq!(st.files, 3000);
    assert_eq!(st.symlinks, 2);
    assert!(st.skipped.is_empty(), "{:?}", st.skipped);
    lb.commit().unwrap();
    lb.verify().unwrap();
    assert!(lb.stat("empty/inner").unwrap().is_some());

    let out = tmp.path().join("out");
    let es = lb
        .extract_to_directory(&out, &ExtractOptions::default())
        .unwrap();
    assert_eq!(es.files, 3000);
    assert_eq!(snapshot(&src), snapshot(&out));

    // A prefix, into an existing directory, with mtimes.
    let out2 = tmp.path().join("out2");
    fs::create_dir(&out2).unwrap();
    lb.extract_to_directory(
        &out2,
        &ExtractOptions::default().prefix("d1").restore_mtimes(true),
    )
    .unwrap();
    assert_eq!(
        fs::read(out2.join("s1/f1.txt")).unwrap(),
        fs::read(src.join("d1/s1/f1.txt")).unwrap()
    );
    let a = fs::metadata(out2.join("s1/f1.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let b = fs::metadata(src.join("d1/s1/f1.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(a, b);

    // In memory.
    let mut n = 0;
    lb.extract_all("", |e, bytes| {
        if e.kind == lockbox::EntryKind::File {
            assert_eq!(bytes.len() as u64, e.len);
            n += 1;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 3000);
}

#[test]
fn escaping_symlink_refused_and_nothing_left() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lb = Lockbox::builder()
        .create_in_memory(Key::raw([5; 32]))
        .unwrap();
    lb.put("a/file", b"x").unwrap();
    lb.symlink("a/evil", "../../outside").unwrap();
    lb.commit().unwrap();
    let out = tmp.path().join("out");
    let err = lb
        .extract_to_directory(&out, &ExtractOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidPath { .. }), "{err:?}");
    assert!(!out.exists());
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "staging directory left behind"
    );
    lb.extract_to_directory(
        &out,
        &ExtractOptions::default().allow_escaping_symlinks(true),
    )
    .unwrap();
    assert_eq!(
        fs::read_link(out.join("a/evil")).unwrap().to_str(),
        Some("../../outside")
    );
}

#[test]
fn existing_symlink_in_destination_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    symlink(&outside, dest.join("a")).unwrap();
    let mut lb = Lockbox::builder()
        .create_in_memory(Key::raw([5; 32]))
        .unwrap();
    lb.put("a/file", b"x").unwrap();
    lb.commit().unwrap();
    assert!(
        lb.extract_to_directory(&dest, &ExtractOptions::default())
            .is_err()
    );
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote through a symlink"
    );
}

#[test]
fn limits_leave_no_partial_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lb = Lockbox::builder()
        .create_in_memory(Key::raw([5; 32]))
        .unwrap();
    for i in 0..50 {
        lb.put(&format!("d/f{i}"), &vec![7u8; 1000]).unwrap();
    }
    lb.commit().unwrap();
    for opts in [
        ExtractOptions::default().limits(10, u64::MAX, u64::MAX),
        ExtractOptions::default().limits(u64::MAX, 999, u64::MAX),
        ExtractOptions::default().limits(u64::MAX, u64::MAX, 20_000),
    ] {
        let out = tmp.path().join("out");
        let err = lb.extract_to_directory(&out, &opts).unwrap_err();
        assert!(matches!(err, Error::LimitExceeded { .. }), "{err:?}");
        assert!(!out.exists());
    }
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn importing_a_tree_that_holds_the_archive_skips_it() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("a.txt"), b"hello").unwrap();
    let path = tmp.path().join("self.lbox");
    let mut lb = Lockbox::create(&path, Key::raw([5; 32])).unwrap();
    let st = lb.add_path(tmp.path(), "").unwrap();
    assert_eq!(st.files, 1);
    assert_eq!(st.skipped.len(), 1, "{:?}", st.skipped);
    assert!(st.skipped[0].path.ends_with("self.lbox"));
    lb.commit().unwrap();
    assert_eq!(lb.get("a.txt").unwrap(), b"hello");
}

/// Importing where entries exist already (committed or staged) checks
/// every slot: a file where a directory is fails, new names go in beside
/// the old ones, and entries the tree does not have are kept. (An import
/// into an empty destination skips these checks: nothing can collide.)
#[test]
fn importing_over_existing_entries_checks_each_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("new.txt"), b"new").unwrap();
    fs::write(src.join("sub/inner.txt"), b"inner").unwrap();
    let mut lb = Lockbox::create(tmp.path().join("a.lbox"), Key::raw([6; 32])).unwrap();
    lb.put("d/old.txt", b"old").unwrap();
    lb.put("d/new.txt/below", b"a directory's file").unwrap();
    lb.commit().unwrap();

    // (staged first, destination, the slot that collides): committed,
    // `d/new.txt` is a directory where the tree has a file; staged only,
    // the same; a staged file where the tree has a directory.
    let cases = [
        (None, "d", "d/new.txt"),
        (Some("e/new.txt/below"), "e", "e/new.txt"),
        (Some("f/sub"), "f", "f/sub"),
    ];
    for (staged, dest, slot) in cases {
        if let Some(p) = staged {
            lb.put(p, b"staged").unwrap();
        }
        let e = lb.add_path(&src, dest).unwrap_err();
        assert!(
            matches!(e, Error::AlreadyExists(ref p) if p == slot),
            "{dest}: got {e:?}"
        );
        lb.rollback();
    }

    // No collision: the tree goes in beside what is there.
    assert_eq!(lb.delete("d/new.txt").unwrap(), 1);
    let st = lb.add_path(&src, "d").unwrap();
    assert_eq!((st.files, st.dirs), (2, 1));
    lb.commit().unwrap();
    assert_eq!(lb.get("d/old.txt").unwrap(), b"old");
    assert_eq!(lb.get("d/new.txt").unwrap(), b"new");
    assert_eq!(lb.get("d/sub/inner.txt").unwrap(), b"inner");
}

/// `extract_all` decrypts and decompresses every frame once per pass,
/// also when a pack's members are separated by directory entries and a
/// pack is larger than the chunk of frames decoded ahead: the bytes read
/// from the backend stay within the archive's size (a pass that cut packs
/// between chunks read the same frames again: 2.5 times the data on a
/// 46k-file tree).
#[test]
fn extract_all_reads_each_frame_once() {
    let mut lb = Lockbox::builder()
        .profile(Profile::BulkImport)
        .create_in_memory(Key::raw([5; 32]))
        .unwrap();
    // 12 MiB of barely compressible 3 KiB files in 1 MiB packs, each
    // directory's files behind a subdirectory of their own.
    let mut rng = XorShift::new(0x9e37);
    let mut expected = 0u64;
    for d in 0..256 {
        lb.mkdir(&format!("d{d:03}/a-dir")).unwrap();
        for f in 0..16 {
            let data = rng.bytes(3072);
            expected += data.len() as u64;
            lb.put(&format!("d{d:03}/b{f:02}"), &data).unwrap();
        }
    }
    lb.commit().unwrap();
    assert_eq!(
        one_pass_within_the_archive(&lb, [5; 32], |_, _| {}),
        expected
    );
}

/// A deduplicated file shares the packed frame of its first copy a few
/// packs back in tree order, a frame `extract_all` has delivered and
/// dropped by then: it takes the decoded frame back from the recent ones
/// instead of decoding it again, so a pass still reads no more than the
/// archive (it read each such frame twice before).
#[test]
fn extract_all_reuses_a_recent_frame_for_a_duplicate() {
    let (lb, firsts, expected) = far_duplicates(200, 320);
    let mut copies = 0;
    let got = one_pass_within_the_archive(&lb, [6; 32], |e, b| {
        if e.path.ends_with("/copy") {
            let d: usize = e.path[1..4].parse().unwrap();
            assert_eq!(b, &firsts[d - 200][..], "{}", e.path);
            copies += 1;
        }
    });
    assert_eq!((got, copies), (expected, 320 - 200));
}

/// `extract_to_directory` decodes each packed frame once too: the files of
/// a frame are written together even when deduplicated copies in other
/// directories share it, and a frame needed again later (a copy a dozen
/// packs on) comes from the frames it decoded last. Reading more than the
/// archive means some frame was decoded twice.
#[test]
fn extract_to_directory_decodes_shared_frames_once() {
    let (lb, firsts, expected) = far_duplicates(40, 200);
    let image = lb.image().unwrap();
    let size = image.len() as u64;
    let lb = Lockbox::builder()
        .open_bytes(image, Key::raw([6; 32]))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let before = lb.io_stats().bytes_read;
    let st = lb
        .extract_to_directory(&dest, &ExtractOptions::default())
        .unwrap();
    let read = lb.io_stats().bytes_read - before;
    assert_eq!(st.bytes, expected);
    assert!(
        read <= size,
        "extract_to_directory read {read} bytes of a {size}-byte archive"
    );
    for d in 40..200 {
        let copy = fs::read(dest.join(format!("d{d:03}/copy"))).unwrap();
        assert_eq!(copy, firsts[d - 40], "d{d:03}/copy");
    }
}

/// A lockbox of `dirs` directories of 16 barely compressible 3 KiB files
/// (about 21 directories per 1 MiB pack under BulkImport); from directory
/// `back` on, each also holds a copy of the first file of the directory
/// `back` before it, stored once (deduplicated) in that far pack. Returns
/// it, the first files, and the bytes of all files.
fn far_duplicates(back: usize, dirs: usize) -> (Lockbox, Vec<Vec<u8>>, u64) {
    let mut lb = Lockbox::builder()
        .profile(Profile::BulkImport)
        .create_in_memory(Key::raw([6; 32]))
        .unwrap();
    let mut rng = XorShift::new(0x5eed);
    let mut firsts = Vec::new();
    let mut expected = 0u64;
    for d in 0..dirs {
        for f in 0..16 {
            let data = rng.bytes(3072);
            expected += data.len() as u64;
            lb.put(&format!("d{d:03}/b{f:02}"), &data).unwrap();
            if f == 0 {
                firsts.push(data);
            }
        }
        if d >= back {
            let copy = &firsts[d - back];
            expected += copy.len() as u64;
            lb.put(&format!("d{d:03}/copy"), copy).unwrap();
        }
    }
    lb.commit().unwrap();
    (lb, firsts, expected)
}

/// `extract_all` hands over large files (decoded ahead from several
/// frames, or read when their turn comes past 4 MiB) in one reused buffer:
/// every file, smaller after larger and the other way round, comes out
/// exactly as stored, with nothing left over from the one before.
#[test]
fn extract_all_large_files_in_any_order() {
    let mut lb = Lockbox::builder()
        .create_in_memory(Key::raw([7; 32]))
        .unwrap();
    let sizes = [
        6 << 20,
        (1 << 20) + 5,
        5 << 20,
        (5 << 20) + 3,
        (2 << 20) + 700,
        100,
        (4 << 20) + 1,
        3 << 20,
    ];
    let mut want = BTreeMap::new();
    for (i, len) in sizes.into_iter().enumerate() {
        let data = common::content(i as u64, len);
        let path = format!("f{i}");
        lb.put(&path, &data).unwrap();
        want.insert(path, data);
    }
    lb.commit().unwrap();
    let mut got = BTreeMap::new();
    lb.extract_all("", |e, b| {
        got.insert(e.path.clone(), b.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(got.len(), want.len());
    for (path, data) in &want {
        assert!(got[path] == *data, "{path}: {} bytes differ", data.len());
    }
}

/// One `extract_all` pass over `lb`'s committed image, opened again in
/// memory under `key`, handing every entry to `f`: checks that the pass
/// read no more bytes than the archive holds and returns the bytes it
/// delivered.
fn one_pass_within_the_archive(
    lb: &Lockbox,
    key: [u8; 32],
    mut f: impl FnMut(&lockbox::Entry, &[u8]),
) -> u64 {
    let image = lb.image().unwrap();
    let size = image.len() as u64;
    let lb = Lockbox::builder().open_bytes(image, Key::raw(key)).unwrap();
    let before = lb.io_stats().bytes_read;
    let mut got = 0u64;
    lb.extract_all("", |e, b| {
        got += b.len() as u64;
        f(e, b);
        Ok(())
    })
    .unwrap();
    let read = lb.io_stats().bytes_read - before;
    assert!(
        read <= size,
        "extract_all read {read} bytes of a {size}-byte archive"
    );
    got
}
