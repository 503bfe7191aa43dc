//! The (subkey, nonce) recorder (`lockbox::testing::start_recording`), which
//! the model and crash suites use to check that no key ever seals twice
//! with one nonce, must see every sealing the crate performs. Checked here
//! against the bytes: every nonce found in a file (every reachable region,
//! both commit slots, every key slot of both tables), read with
//! `fuzz/src/forge.rs` (an independent reader of the format), was
//! recorded, across commits, a rollback, key changes and a compaction.
//! That a repeat is caught is the unit test
//! `testing::tests::recorder_detects_a_repeated_pair`.

#[path = "../fuzz/src/forge.rs"]
mod forge;

use std::collections::BTreeSet;

use lockbox::{Key, Lockbox, testing};

const RAW: [u8; 32] = [3; 32];

fn data(seed: u64, len: usize) -> Vec<u8> {
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

/// Every nonce stored in `image`: reachable regions, commit slots, key
/// slots.
fn nonces_in(image: &[u8]) -> Vec<([u8; 24], String)> {
    let keys = forge::unwrap_raw(image, &RAW).expect("unwrap");
    let rec = forge::newest_commit(&keys, image).expect("commit");
    let mut out = Vec::new();
    for r in forge::walk(&keys, image, &rec).expect("walk") {
        out.push((
            forge::nonce_of(image, r.ptr.offset),
            format!("kind {} at {}", r.kind, r.ptr.offset),
        ));
    }
    for (i, _) in forge::commit_records(&keys, image) {
        out.push((
            forge::nonce_of(image, forge::COMMIT_SLOTS[i]),
            format!("commit slot {i}"),
        ));
    }
    for t in forge::SLOT_TABLES {
        let table = &image[t..t + forge::TABLE_LEN];
        for s in 0..table[8] as usize {
            let slot = &table[16 + s * 128..16 + (s + 1) * 128];
            out.push((
                slot[29..53].try_into().unwrap(),
                format!("table {t} slot {s}"),
            ));
        }
    }
    out
}

#[test]
fn recorder_sees_every_nonce_in_the_file() {
    let rec = testing::start_recording();
    let mut lb = Lockbox::builder()
        .node_capacity(1024)
        .create_in_memory(Key::raw(RAW))
        .unwrap();
    let id = testing::archive_id(&lb);
    let mut on_disk = Vec::new();
    for r in 0..8u64 {
        for i in 0..20u64 {
            let len = [10usize, 300, 3000, 20_000][(i % 4) as usize];
            lb.put(&format!("d{}/f{i}", r % 3), &data(r * 100 + i, len))
                .unwrap();
        }
        lb.put("big", &data(r, 3 * 65536 + 17)).unwrap();
        lb.set_var("v", &data(r + 50, 700)).unwrap();
        if r > 0 {
            let _ = lb.delete(&format!("d{}", (r + 1) % 3));
        }
        lb.commit().unwrap();
        if r == 2 {
            lb.put("rolled/back", &data(99, 200_000)).unwrap();
            lb.rollback();
        }
        on_disk.extend(nonces_in(&lb.image().unwrap()));
    }
    lb.add_key(Key::raw([4; 32])).unwrap();
    on_disk.extend(nonces_in(&lb.image().unwrap()));
    lb.compact().unwrap();
    assert_eq!(testing::archive_id(&lb), id, "compaction keeps the id");
    lb.put("after/compact", &data(7, 5000)).unwrap();
    lb.commit().unwrap();
    on_disk.extend(nonces_in(&lb.image().unwrap()));
    drop(lb);

    let got = rec.take(&id);
    let recorded: BTreeSet<[u8; 24]> = got.iter().map(|(_, n)| *n).collect();
    let missing: Vec<&String> = on_disk
        .iter()
        .filter(|(n, _)| !recorded.contains(n))
        .map(|(_, w)| w)
        .collect();
    let distinct: BTreeSet<[u8; 24]> = on_disk.iter().map(|(n, _)| *n).collect();
    eprintln!(
        "[nonce] recorder: {} sealings under {} keys; {} distinct nonces found in the file \
         over 10 snapshots, {} not recorded",
        got.sealings(),
        got.keys(),
        distinct.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "nonces in the file that the recorder never saw: {missing:?}"
    );
    assert!(got.repeats().is_empty(), "repeats: {:?}", got.repeats());
    // meta, data and commit subkeys, and two key slots' wrapping keys
    assert!(got.keys() >= 5, "keys seen: {}", got.keys());
    assert!(
        distinct.len() > 100,
        "too few nonces for the test to mean much"
    );
}

/// A nonce recorded twice under one key, through the same entry point every
/// real seal uses while recording, is reported (the recorder can fail).
#[test]
fn a_repeat_through_the_global_entry_point_is_reported() {
    let rec = testing::start_recording();
    let lb = Lockbox::builder().create_in_memory(Key::raw(RAW)).unwrap();
    let id = testing::archive_id(&lb);
    testing::record_seal(&id, &[1; 16], &[2; 24]);
    testing::record_seal(&id, &[1; 16], &[2; 24]);
    let got = rec.take(&id);
    assert_eq!(got.repeats(), &[([1; 16], [2; 24])]);
    // the create's own sealings were recorded too (commit slots, key slot)
    assert!(got.sealings() >= 4, "sealings: {}", got.sealings());
}
