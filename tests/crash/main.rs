//! Crash consistency (requirements §3 "after a crash at any point the file
//! opens as exactly the old or the new commit", §7 "crash images at every
//! sync point").
//!
//! The recording backend of `tests/support` (`RecBackend`, in
//! `tests/support/rec_backend.rs`) keeps the bytes that syncs made permanent
//! (`durable`) apart from the writes issued since the last sync (`pending`),
//! and can be told to crash at its N-th mutating operation (write, sync or
//! set_len): that operation and every later one fails. From the state at
//! the crash we build disk images a real machine could be left with:
//!
//! * `durable`     — every unsynced write lost;
//! * `all-pending` — every unsynced write landed (the interrupted one too);
//! * `subset`      — a random subset of them, landed in random order;
//! * `torn`        — the writes before one of them landed, and that one torn
//!   after a prefix of its 512-byte sectors (`torn-byte`: a write that
//!   spans no sector boundary, cut at a random byte).
//!
//! Every image must open, show exactly the last committed reference state
//! before the interrupted commit or the new one (entries with kinds and
//! lengths, every file's bytes, symlink targets, variables; and the matching
//! `sequence()`), and pass `verify()`. A commit may be followed by
//! relocation commits (they repack packed frames that lost members, and
//! change no content): any of them counts as the new state, under its own
//! later sequence. An image left between a commit and the end of its
//! relocation commits must also read the same data, and verify, read-only
//! (before a writable open finishes them). A commit that fails with
//! `RedactionPending` has passed its commit point and says it is durable:
//! then only the new state is accepted. Some images are then written to and
//! committed again, to check that the recovered file stays usable.
//!
//! The op sequences are seeded (odd seeds use 1 KiB B-tree nodes, so trees
//! are several levels deep; seeds 0 and 1 mod 4 write mostly packed files
//! and leave every repack to relocation commits, see [`builder`]); for every sequence we first count its backend
//! operations, then replay it with a crash at every one of them (every write
//! and sync of every commit, of rollback, and of staging large files between
//! commits). Some recovered images of crashes inside commits get a sweep of
//! their own: a short sequence started by a writable open of the image, with
//! a crash at every backend operation of it, the open's own included (it
//! may finish an interrupted commit's redaction), over the space the first
//! crash left behind.
//!
//! Sequences also add and remove extra raw keys (`add_key`/`remove_key`
//! rewrite both key-slot table copies outside of commits): every image must
//! open with exactly the set of extra keys before or after an interrupted
//! key change, and with the base key always.
//!
//! Op counts can vary slightly between runs (nodes and index pages hold
//! their children's tags, which are random, so their compressed sizes and
//! hence allocation from freed space differ): a crash point
//! a replay does not reach is retried, and the op it lands in is taken from
//! the replay. The counts printed say how often that happened.
//!
//! Run with `--nocapture` to see the counts.
//!
//! Modules: `ops` (the sequences and the reference), `play` (one run, with
//! or without a crash), `images` (the images of a crash and their check),
//! `sweep` (a crash at every operation of a sequence, and the tally).

#[path = "../common/mod.rs"]
mod common;
#[path = "../support/rec_backend.rs"]
mod rec_backend;

mod images;
mod ops;
mod play;
mod sweep;

use common::*;
use images::*;
use lockbox::{Error, Lockbox};
use ops::*;
use play::*;
use rec_backend::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::ops::RangeInclusive;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;
use sweep::*;

#[test]
fn crash_at_every_backend_op_part0() {
    run_part(0, 2);
}

#[test]
fn crash_at_every_backend_op_part1() {
    run_part(1, 2);
}

/// A crash at every backend operation of `create`: create must fail, and
/// the file may then fail to open with a typed error (never a panic); if it
/// opens, it is the empty first commit and verifies.
#[test]
fn crash_during_create() {
    let be = crashing_at(None);
    drop(
        Lockbox::builder()
            .create_on(Box::new(be.clone()), key())
            .expect("create_on"),
    );
    let create_ops = be.ops();
    assert!(create_ops >= 2, "create did {create_ops} backend ops");
    let empty = RefState::default();
    let mut rng = XorShift::new(99);
    let (mut points, mut imgs, mut opened, mut refused) = (0, 0, 0, BTreeMap::<&str, u64>::new());
    let mut failures = Vec::new();
    let nonces = lockbox::testing::start_recording();
    let mut nonce_pairs = 0;
    for n in 0..create_ops {
        let be = crashing_at(Some(n));
        match Lockbox::builder().create_on(Box::new(be.clone()), key()) {
            Ok(_) => {
                failures.push(format!(
                    "create_on returned Ok although backend op {n} failed"
                ));
                continue;
            }
            Err(e) => assert!(matches!(e, Error::Io(_)), "crash at {n}: create gave {e:?}"),
        }
        points += 1;
        let (durable, pending, crash_op) = {
            let d = be.disk();
            let mut pending = d.pending.clone();
            if let Some(p) = &d.in_flight {
                pending.push(p.clone());
            }
            (d.durable.clone(), pending, d.crash_op())
        };
        // The archive id from the header (public bytes 16..32), if an
        // image has one: the opens below may write (finish the redaction).
        let mut archive: Option<[u8; 16]> = None;
        for img in images(&durable, &pending, &mut rng) {
            imgs += 1;
            if archive.is_none() && img.bytes.get(..8) == Some(b"LOCKBOX\x1a") {
                archive = img.bytes.get(16..32).and_then(|b| b.try_into().ok());
            }
            let what = format!(
                "crash at create op {n} ({crash_op}), image {} {}",
                img.kind, img.note
            );
            let r = catch_unwind(AssertUnwindSafe(|| {
                match Lockbox::builder().open_bytes(img.bytes.clone(), key()) {
                    Err(e) => Err(err_name(&e)),
                    Ok(_) => Ok(check_image(
                        img.bytes.clone(),
                        &[(1..=1, &empty)],
                        &[Keys::new()],
                    )),
                }
            }));
            match r {
                Ok(Err(name)) => *refused.entry(name).or_default() += 1,
                Ok(Ok(Ok(_))) => opened += 1,
                Ok(Ok(Err(e))) => failures.push(format!("{what}: opened but {e}")),
                Err(p) => failures.push(format!("{what}: panic: {}", panic_message(&*p))),
            }
        }
        if let Some(id) = archive {
            match take_nonce_pairs(&nonces, &id) {
                Ok(k) => nonce_pairs += k,
                Err(e) => failures.push(format!("crash at create op {n}: {e}")),
            }
        }
    }
    println!(
        "[crash] create: {points} crash points, {imgs} images; {opened} opened as the empty \
         first commit, refused with typed errors: {refused:?}; {nonce_pairs} sealings, no \
         (subkey, nonce) pair repeated"
    );
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

/// Minimal reproduction of the key-table failures the sweep finds after a
/// recovery. A crash inside `add_key`/`remove_key` after the first slot-table
/// copy (offset 4096) was written and synced, before the second (8192), leaves
/// copy A newest and copy B older; the change has taken effect (the newest
/// table is used). The next writable open repairs the tables with
/// `write_slot_tables`, which writes copy A first, over the only copy of
/// the newest table. A crash that tears that write (a prefix of its 512-byte
/// sectors) leaves only B: the key change is undone. For `remove_key` a
/// removed key opens the lockbox again.
/// Expected: the repair writes the stale copy first, so no crash during it
/// can lose the newest table.
#[test]
fn crash_while_open_repairs_the_key_tables() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for remove in [false, true] {
        let k: u8 = 1;
        // the op count of create (+ add_key when removing)
        let setup = |lb: &mut Lockbox| {
            if remove {
                lb.add_key(extra_key(k)).expect("add_key");
            }
        };
        let probe = crashing_at(None);
        let mut lb = Lockbox::builder()
            .create_on(Box::new(probe.clone()), key())
            .expect("create_on");
        setup(&mut lb);
        let before = probe.ops();
        if remove {
            lb.remove_key(&extra_key(k)).expect("remove_key");
        } else {
            lb.add_key(extra_key(k)).expect("add_key");
        }
        let change_ops = probe.ops() - before;
        drop(lb);
        let what = if remove { "remove_key" } else { "add_key" };
        assert!(change_ops >= 3, "{what} did {change_ops} backend ops");
        // crash at the change's second write (copy B): copy A is newest
        let be = crashing_at(Some(before + 2));
        let mut lb = Lockbox::builder()
            .create_on(Box::new(be.clone()), key())
            .expect("create_on");
        setup(&mut lb);
        let r = if remove {
            lb.remove_key(&extra_key(k))
        } else {
            lb.add_key(extra_key(k))
        };
        assert!(r.is_err(), "{what} returned Ok although its write failed");
        drop(lb);
        let image = be.disk().durable.clone();
        let opens = |bytes: &[u8]| {
            Lockbox::builder()
                .open_bytes(bytes.to_vec(), extra_key(k))
                .map(|l| l.sequence())
                .map_err(|e| err_name(&e))
        };
        let after_change = opens(&image);
        // the change took effect: the newest table is used
        assert_eq!(
            after_change.is_ok(),
            !remove,
            "{what} crashed after copy A: key {k} opens: {after_change:?}"
        );
        // a writable open repairs the tables; crash at its first write
        let be2 = crashing_at(Some(0));
        {
            let mut d = be2.disk();
            d.durable = image.clone();
            d.current = image.clone();
        }
        let r = Lockbox::builder().open_on(Box::new(be2.clone()), key());
        assert!(r.is_err(), "open_on returned Ok although its write failed");
        let (durable, in_flight) = {
            let d = be2.disk();
            (d.durable.clone(), d.in_flight.clone())
        };
        let Some(Pend::Write(off, data)) = in_flight else {
            continue; // the open wrote nothing: nothing to tear
        };
        for sectors in 1..(data.len() as u64).div_ceil(SECTOR) {
            let mut torn = durable.clone();
            apply_bytes(&mut torn, off, &data[..(sectors * SECTOR) as usize]);
            checked += 1;
            let got = opens(&torn);
            let base = Lockbox::builder()
                .open_bytes(torn.clone(), key())
                .map(|l| l.sequence())
                .map_err(|e| err_name(&e));
            if got.is_ok() != after_change.is_ok() {
                problems.push(format!(
                    "{what}(raw [{k}; 32]) cut after its first table copy (key {k} then opens: \
                     {}); a writable open then rewrites the copy at offset {off} ({} bytes) and \
                     crashes with {sectors} of its 512-byte sectors written: key {k} now opens: \
                     {} (base key opens: {base:?})",
                    after_change.is_ok(),
                    data.len(),
                    got.is_ok()
                ));
            }
        }
    }
    println!(
        "[crash] key-table repair at open: {checked} torn images, {} regressions",
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "a crash while open repairs the key-slot tables undoes a key change:\n  {}",
        problems.join("\n  ")
    );
}
