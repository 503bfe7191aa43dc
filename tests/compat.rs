//! Archives written by earlier builds still open, read, verify and take
//! new commits. `tests/data/v1-c223597.lbox` was written by commit
//! c223597, the last build that sealed with the `chacha20poly1305` crate
//! (later builds seal with `ring`, through `crypto/aead.rs`): every region
//! in it, the key slots included, was sealed by the other implementation.
//! It holds two commits (the second deleted a file and rewrote another)
//! and a passphrase slot added after them (Argon2id at `KdfParams::MIN`).

use std::collections::BTreeMap;

use lockbox::{EntryKind, Key, Lockbox};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/v1-c223597.lbox");
const RAW: [u8; 32] = [0x11; 32];
const PASSPHRASE: &str = "correct horse battery staple";

/// The generator the fixture's files were made with.
fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| {
            (i.wrapping_mul(31)
                .wrapping_add(i / 7)
                .wrapping_add(seed * 101)
                % 251) as u8
        })
        .collect()
}

/// The fixture's files and their contents.
fn files() -> BTreeMap<&'static str, Vec<u8>> {
    BTreeMap::from([
        ("a.txt", b"hello again, lockbox".to_vec()),
        ("dir/b.bin", pattern(1, 5000)),
        ("dir/sub/c.bin", pattern(2, 200_000)),
        ("empty", Vec::new()),
    ])
}

/// A private copy of the fixture (opening it writable may finish work).
fn copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.lbox");
    std::fs::copy(FIXTURE, &path).unwrap();
    (dir, path)
}

fn check_contents(lb: &Lockbox) {
    for (path, want) in files() {
        assert_eq!(lb.get(path).unwrap(), want, "{path}");
    }
    assert_eq!(
        lb.read_at("dir/sub/c.bin", 131_000, &mut [0u8; 1000])
            .unwrap(),
        1000
    );
    let link = lb.stat("link").unwrap().unwrap();
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(link.target.as_deref(), Some("a.txt"));
    assert_eq!(lb.stat("emptydir").unwrap().unwrap().kind, EntryKind::Dir);
    assert!(
        lb.stat("dir/b-copy.bin").unwrap().is_none(),
        "deleted in the second commit"
    );
    assert_eq!(
        lb.var("greeting").unwrap().as_deref(),
        Some(&b"hi there"[..])
    );
}

#[test]
fn an_archive_sealed_by_the_previous_cipher_reads_and_verifies() {
    let (_dir, path) = copy();
    for key in [Key::raw(RAW), Key::passphrase(PASSPHRASE)] {
        let lb = Lockbox::builder().read_only(true).open(&path, key).unwrap();
        check_contents(&lb);
        lb.verify().unwrap();
    }
    let wrong = Lockbox::builder()
        .read_only(true)
        .open(&path, Key::passphrase("wrong horse"));
    assert!(matches!(wrong, Err(lockbox::Error::WrongKey)), "{wrong:?}");
}

#[test]
fn an_archive_sealed_by_the_previous_cipher_takes_new_commits() {
    let (_dir, path) = copy();
    let mut lb = Lockbox::open(&path, Key::raw(RAW)).unwrap();
    lb.put("new.txt", b"written by this build").unwrap();
    lb.put("dir/b.bin", &pattern(3, 7000)).unwrap();
    lb.commit().unwrap();
    drop(lb);
    let lb = Lockbox::open(&path, Key::passphrase(PASSPHRASE)).unwrap();
    lb.verify().unwrap();
    assert_eq!(lb.get("new.txt").unwrap(), b"written by this build");
    assert_eq!(lb.get("dir/b.bin").unwrap(), pattern(3, 7000));
    assert_eq!(lb.get("dir/sub/c.bin").unwrap(), pattern(2, 200_000));
    let inspection = lb.inspect().unwrap();
    assert!(
        inspection.unreachable_nonzero.is_empty(),
        "the replaced content left bytes behind: {:?}",
        inspection.unreachable_nonzero
    );
}
