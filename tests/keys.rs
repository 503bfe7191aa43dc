//! Key slots (requirements §2 `add_key`/`remove_key`, §3 "Changing a
//! passphrase never re-encrypts data; removing a slot leaves no copy of it on
//! disk"; issue #3 "Key slots").
//!
//! Layout used to find a slot's bytes (docs/format.md): two slot tables of
//! 4096 bytes at offsets 4096 and 8192; `seq u64, count u8, pad[7]`, then
//! 128-byte slots from table offset 16; in a slot: `kind u8, m_kib u32, t u32,
//! p u32` (0..13), `salt[16]` (13..29), `nonce[24]` (29..53), `wrapped[32]`
//! (53..85), `tag[16]` (85..101).

mod support;

use lockbox::{Error, Key, Lockbox};
use std::path::Path;
use support::*;

const TABLES: [usize; 2] = [4096, 8192];
const SLOT_LEN: usize = 128;

fn pass(s: &str) -> Key {
    Key::passphrase(s)
}

fn builder() -> lockbox::Builder {
    Lockbox::builder().kdf(cheap_kdf())
}

fn expect_err<T: std::fmt::Debug>(r: lockbox::Result<T>, want: &str, what: &str) {
    match r {
        Ok(v) => panic!("{what}: succeeded ({v:?}), expected {want}"),
        Err(e) => assert_eq!(err_kind(&e), want, "{what}: got {e:?}, expected {want}"),
    }
}

/// The fields of slot `i` of slot table `t` in `file`: salt, nonce,
/// wrapped key, tag.
fn slot_fields(file: &[u8], t: usize, i: usize) -> Vec<(&'static str, Vec<u8>)> {
    let s = TABLES[t] + 16 + SLOT_LEN * i;
    let slot = &file[s..s + SLOT_LEN];
    vec![
        ("salt", slot[13..29].to_vec()),
        ("nonce", slot[29..53].to_vec()),
        ("wrapped key", slot[53..85].to_vec()),
        ("tag", slot[85..101].to_vec()),
    ]
}

fn slot_count(file: &[u8], t: usize) -> u8 {
    file[TABLES[t] + 8]
}

fn occurrences(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

fn sample(lb: &mut Lockbox) {
    lb.put("docs/a.txt", b"alpha").unwrap();
    lb.put("docs/big.bin", &Rng::new(9).bytes(200_000)).unwrap();
    lb.put("small.txt", &Rng::new(10).content(3000)).unwrap();
    lb.symlink("link", "docs/a.txt").unwrap();
    lb.set_var("token", b"secret value").unwrap();
    lb.commit().unwrap();
}

fn check_sample(lb: &Lockbox, what: &str) {
    assert_eq!(lb.get("docs/a.txt").unwrap(), b"alpha", "{what}");
    assert_eq!(
        lb.get("docs/big.bin").unwrap(),
        Rng::new(9).bytes(200_000),
        "{what}"
    );
    assert_eq!(
        lb.get("small.txt").unwrap(),
        Rng::new(10).content(3000),
        "{what}"
    );
    assert_eq!(
        lb.stat("link").unwrap().unwrap().target.as_deref(),
        Some("docs/a.txt"),
        "{what}"
    );
    assert_eq!(
        lb.var("token").unwrap().as_deref(),
        Some(&b"secret value"[..])
    );
    lb.verify()
        .unwrap_or_else(|e| panic!("{what}: verify: {e:?}"));
}

fn open(path: &Path, k: Key) -> lockbox::Result<Lockbox> {
    Lockbox::open(path, k)
}

#[test]
fn three_slots_each_opens_and_a_removed_slot_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.lbox");
    let (a, b, r) = (
        pass("first passphrase"),
        pass("second passphrase"),
        raw_key(42),
    );

    let mut lb = builder().create(&path, a.clone()).unwrap();
    sample(&mut lb);
    lb.add_key(b.clone()).unwrap();
    lb.add_key(r.clone()).unwrap();
    assert_eq!(lb.key_count(), 3);
    drop(lb);

    for (name, k) in [("passphrase A", &a), ("passphrase B", &b), ("raw key", &r)] {
        let lb = open(&path, k.clone()).unwrap_or_else(|e| panic!("open with {name}: {e:?}"));
        assert_eq!(lb.key_count(), 3);
        check_sample(&lb, name);
    }
    expect_err(
        open(&path, pass("not a passphrase")),
        "WrongKey",
        "wrong passphrase",
    );
    expect_err(open(&path, raw_key(43)), "WrongKey", "wrong raw key");

    // B's slot, as stored, in both tables
    let before = std::fs::read(&path).unwrap();
    assert_eq!(slot_count(&before, 0), 3);
    assert_eq!(slot_count(&before, 1), 3);
    let b_fields = slot_fields(&before, 0, 1);
    assert_eq!(
        b_fields,
        slot_fields(&before, 1, 1),
        "both slot-table copies hold the same slot"
    );
    for (what, bytes) in &b_fields {
        assert_eq!(
            occurrences(&before, bytes).len(),
            2,
            "the {what} of B's slot should be found once in each table before removal"
        );
    }

    let mut lb = open(&path, a.clone()).unwrap();
    lb.remove_key(&b).unwrap();
    assert_eq!(lb.key_count(), 2);
    check_sample(&lb, "after remove_key");
    drop(lb);

    let after = std::fs::read(&path).unwrap();
    assert_eq!(slot_count(&after, 0), 2);
    assert_eq!(slot_count(&after, 1), 2);
    for (what, bytes) in &b_fields {
        let at = occurrences(&after, bytes);
        assert!(
            at.is_empty(),
            "the removed slot's {what} ({} bytes) is still in the file at {at:?}",
            bytes.len()
        );
    }
    // the data area is untouched by key management
    assert_eq!(
        before[20480..],
        after[20480..],
        "remove_key rewrote the data area"
    );

    expect_err(
        open(&path, b.clone()),
        "WrongKey",
        "open with the removed key",
    );
    for (name, k) in [("passphrase A", &a), ("raw key", &r)] {
        let lb = open(&path, k.clone()).unwrap_or_else(|e| panic!("open with {name}: {e:?}"));
        assert_eq!(lb.key_count(), 2);
        check_sample(&lb, name);
    }
    eprintln!(
        "[keys] removed slot: salt, nonce, wrapped key and tag gone from all {} bytes",
        after.len()
    );
}

#[test]
fn changing_a_passphrase_keeps_the_data_and_rewrites_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("change.lbox");
    let mut lb = builder().create(&path, pass("old")).unwrap();
    sample(&mut lb);
    drop(lb);
    let before = std::fs::read(&path).unwrap();

    let mut lb = builder().open(&path, pass("old")).unwrap();
    lb.add_key(pass("new")).unwrap();
    lb.remove_key(&pass("old")).unwrap();
    assert_eq!(lb.key_count(), 1);
    check_sample(&lb, "same handle after the change");
    drop(lb);

    let after = std::fs::read(&path).unwrap();
    assert_eq!(
        before[12288..],
        after[12288..],
        "changing a passphrase must not rewrite commit slots or data"
    );
    expect_err(
        open(&path, pass("old")),
        "WrongKey",
        "open with the old passphrase",
    );
    let lb = open(&path, pass("new")).unwrap();
    check_sample(&lb, "opened with the new passphrase");
    for (what, bytes) in slot_fields(&before, 0, 0) {
        assert!(
            occurrences(&after, &bytes).is_empty(),
            "the old passphrase slot's {what} is still in the file"
        );
    }
}

#[test]
fn the_last_key_cannot_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.lbox");
    let mut lb = Lockbox::create(&path, raw_key(1)).unwrap();
    sample(&mut lb);
    expect_err(
        lb.remove_key(&raw_key(1)),
        "LastKey",
        "removing the only key",
    );
    assert_eq!(lb.key_count(), 1);
    // a key that matches no slot: WrongKey, whether or not it is the last
    expect_err(
        lb.remove_key(&raw_key(2)),
        "WrongKey",
        "unknown key, one slot",
    );
    lb.add_key(raw_key(2)).unwrap();
    expect_err(
        lb.remove_key(&raw_key(3)),
        "WrongKey",
        "unknown key, two slots",
    );
    lb.remove_key(&raw_key(1)).unwrap();
    expect_err(
        lb.remove_key(&raw_key(2)),
        "LastKey",
        "removing the new only key",
    );
    expect_err(
        lb.remove_key(&raw_key(1)),
        "WrongKey",
        "removing a removed key",
    );
    assert_eq!(lb.key_count(), 1);
    // the handle still works for data
    lb.put("more", b"x").unwrap();
    lb.commit().unwrap();
    drop(lb);
    expect_err(
        open(&path, raw_key(1)),
        "WrongKey",
        "open with the removed key",
    );
    let lb = open(&path, raw_key(2)).unwrap();
    check_sample(&lb, "after key rotation");
    assert_eq!(lb.get("more").unwrap(), b"x");
}

#[test]
fn remove_key_with_an_unknown_passphrase_is_wrong_key() {
    let mut lb = builder().create_in_memory(pass("one")).unwrap();
    lb.add_key(pass("two")).unwrap();
    lb.add_key(raw_key(5)).unwrap();
    expect_err(
        lb.remove_key(&pass("three")),
        "WrongKey",
        "unknown passphrase",
    );
    expect_err(lb.remove_key(&raw_key(6)), "WrongKey", "unknown raw key");
    assert_eq!(lb.key_count(), 3);
    lb.remove_key(&pass("two")).unwrap();
    lb.remove_key(&raw_key(5)).unwrap();
    expect_err(lb.remove_key(&pass("one")), "LastKey", "last passphrase");
    // in memory: the image opens with the remaining key only
    lb.put("f", b"data").unwrap();
    lb.commit().unwrap();
    let img = lb.image().unwrap();
    expect_err(
        Lockbox::builder().open_bytes(img.clone(), pass("two")),
        "WrongKey",
        "image, removed passphrase",
    );
    expect_err(
        Lockbox::builder().open_bytes(img.clone(), raw_key(5)),
        "WrongKey",
        "image, removed raw key",
    );
    let lb = Lockbox::builder().open_bytes(img, pass("one")).unwrap();
    assert_eq!(lb.get("f").unwrap(), b"data");
}

#[test]
fn at_most_sixteen_slots() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.lbox");
    let mut lb = Lockbox::create(&path, raw_key(100)).unwrap();
    sample(&mut lb);
    for i in 1..16u8 {
        lb.add_key(raw_key(100 + i)).unwrap();
    }
    assert_eq!(lb.key_count(), 16);
    match lb.add_key(raw_key(200)) {
        Err(Error::LimitExceeded { limit, .. }) => assert_eq!(limit, 16),
        other => panic!("the 17th key: {other:?}, expected LimitExceeded"),
    }
    match lb.add_key(pass("also too many")) {
        Err(Error::LimitExceeded { .. }) => {}
        other => panic!("the 17th key (passphrase): {other:?}, expected LimitExceeded"),
    }
    assert_eq!(lb.key_count(), 16);
    // the refused adds did not poison the handle
    lb.put("after", b"ok").unwrap();
    lb.commit().unwrap();
    drop(lb);
    expect_err(open(&path, raw_key(200)), "WrongKey", "the refused key");
    for i in [0u8, 7, 15] {
        let lb = open(&path, raw_key(100 + i)).unwrap();
        assert_eq!(lb.key_count(), 16);
        assert_eq!(lb.get("after").unwrap(), b"ok");
    }
    // remove one, and a 16th fits again
    let mut lb = open(&path, raw_key(100)).unwrap();
    lb.remove_key(&raw_key(108)).unwrap();
    lb.add_key(raw_key(200)).unwrap();
    assert_eq!(lb.key_count(), 16);
    drop(lb);
    open(&path, raw_key(200)).unwrap();
    expect_err(open(&path, raw_key(108)), "WrongKey", "removed key 108");
}

#[test]
fn key_changes_need_a_writable_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.lbox");
    let mut lb = Lockbox::create(&path, raw_key(1)).unwrap();
    sample(&mut lb);
    lb.add_key(raw_key(2)).unwrap();
    drop(lb);
    let before = std::fs::read(&path).unwrap();
    let mut ro = Lockbox::builder()
        .read_only(true)
        .open(&path, raw_key(1))
        .unwrap();
    expect_err(
        ro.add_key(raw_key(3)),
        "ReadOnly",
        "add_key on a read-only handle",
    );
    expect_err(
        ro.remove_key(&raw_key(2)),
        "ReadOnly",
        "remove_key on a read-only handle",
    );
    expect_err(
        ro.remove_key(&raw_key(9)),
        "ReadOnly",
        "remove_key (unknown key) on a read-only handle",
    );
    assert_eq!(ro.key_count(), 2);
    check_sample(&ro, "read-only");
    drop(ro);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a read-only handle changed the file"
    );
    open(&path, raw_key(2)).unwrap();
    expect_err(
        open(&path, raw_key(3)),
        "WrongKey",
        "key refused on read-only",
    );
    // in memory too
    let img = {
        let mut lb = Lockbox::builder().create_in_memory(raw_key(1)).unwrap();
        sample(&mut lb);
        lb.image().unwrap()
    };
    let mut ro = Lockbox::builder()
        .read_only(true)
        .open_bytes(img, raw_key(1))
        .unwrap();
    expect_err(
        ro.add_key(raw_key(3)),
        "ReadOnly",
        "in-memory read-only add_key",
    );
    expect_err(
        ro.remove_key(&raw_key(1)),
        "ReadOnly",
        "in-memory read-only remove_key",
    );
}

#[test]
fn key_changes_take_effect_at_once_independent_of_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("indep.lbox");
    let mut lb = Lockbox::create(&path, raw_key(1)).unwrap();
    sample(&mut lb);
    lb.put("staged", b"not committed").unwrap();
    lb.add_key(raw_key(2)).unwrap();
    // still staged, not committed by add_key
    assert!(lb.has_changes());
    assert_eq!(lb.get("staged").unwrap(), b"not committed");
    lb.rollback();
    // rollback does not undo the key
    assert_eq!(lb.key_count(), 2);
    lb.put("staged2", b"also not committed").unwrap();
    lb.remove_key(&raw_key(1)).unwrap();
    assert!(lb.has_changes());
    drop(lb); // staged2 is lost, the key change is not
    expect_err(open(&path, raw_key(1)), "WrongKey", "removed before drop");
    let mut lb = open(&path, raw_key(2)).unwrap();
    assert_eq!(lb.stat("staged").unwrap(), None);
    assert_eq!(lb.stat("staged2").unwrap(), None);
    check_sample(&lb, "after uncommitted key changes");
    // staged changes survive a key change and commit normally
    lb.put("staged3", b"committed after add_key").unwrap();
    lb.add_key(raw_key(3)).unwrap();
    lb.commit().unwrap();
    drop(lb);
    let lb = open(&path, raw_key(3)).unwrap();
    assert_eq!(lb.get("staged3").unwrap(), b"committed after add_key");
    lb.verify().unwrap();
}

#[test]
fn a_passphrase_slot_added_to_a_raw_key_lockbox() {
    // add_key(passphrase) uses the builder's KDF parameters; the slot
    // stores them, so a plain open (default builder) runs the same KDF.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.lbox");
    let mut lb = builder().create(&path, raw_key(1)).unwrap();
    sample(&mut lb);
    lb.add_key(pass("pw")).unwrap();
    drop(lb);
    let file = std::fs::read(&path).unwrap();
    let s = TABLES[0] + 16 + SLOT_LEN;
    let m_kib = u32::from_le_bytes(file[s + 1..s + 5].try_into().unwrap());
    let t = u32::from_le_bytes(file[s + 5..s + 9].try_into().unwrap());
    assert_eq!(
        (m_kib, t),
        (19 * 1024, 2),
        "the slot stores the builder's KDF parameters"
    );
    let lb = open(&path, pass("pw")).unwrap();
    check_sample(&lb, "passphrase slot");
    drop(lb);
    // a weaker KDF than the floor is refused for a new slot
    let mut lb = Lockbox::builder()
        .kdf(lockbox::KdfParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        })
        .open(&path, raw_key(1))
        .unwrap();
    expect_err(
        lb.add_key(pass("weak")),
        "InvalidKdfParams",
        "add_key below the KDF floor",
    );
    assert_eq!(lb.key_count(), 2);
}
