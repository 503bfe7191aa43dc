//! I/O failure at every operation (requirements §7): a [`FaultBackend`]
//! fails the N-th backend operation of one kind (read, write, sync,
//! set_len), once or from then on, under a scripted workload (create, puts,
//! commit, reads, rollback, more puts, delete, rename, commit, reads,
//! reopen, puts, delete, commit, reads, reopen, delete, rename, commit,
//! reads), for N = 1, 2, 3… until the workload
//! runs without reaching the fault. Every sweep runs twice: with the
//! default (the workload's small repacks happen inside its commits) and with
//! every repack left to relocation commits (`Builder::relocation_batch`),
//! so faults also land inside those.
//!
//! The contract checked, as the code defines it (`Lockbox::guarded`,
//! `commit_inner`, docs/design.md "A failed write or sync poisons the
//! handle"):
//!
//! * the call during which the fault fires returns `Err(Io)`, never panics,
//!   never `Ok`;
//! * after a failed write, sync or set_len, every later change on that
//!   handle returns `Err(Poisoned)`, and `commit()` never reports success;
//!   after a read failed inside a change, the handle may be poisoned the
//!   same way;
//! * a read either fails (only when the fault fired during it) or returns
//!   exactly the reference data; after a one-off read fault, later reads
//!   succeed;
//! * a reopen either fails (when the fault fired during it) or opens the
//!   last commit that returned `Ok` — never an older one;
//! * at the end, the durable bytes (what successful syncs made permanent)
//!   open as exactly the last commit that returned `Ok`, read back exactly
//!   and pass `verify()`; the bytes as last written (no crash) open as that
//!   commit or as the one whose commit call failed.
//!
//! Run with `--nocapture` to see the counts.
//!
//! Modules: `backend` (the fault backend), `workload` (the scripted steps),
//! `run` (one run under one fault, with its checks); the sweeps over every
//! fault point are here, with the tests.

#[path = "../common/mod.rs"]
mod common;

mod backend;
mod run;
mod workload;

use backend::*;
use common::*;
use lockbox::testing::Backend;
use lockbox::{EntryKind, Error, Lockbox};
use run::*;
use std::collections::BTreeMap;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use workload::*;

// ---------------------------------------------------------------------------
// Every fault point of one kind
// ---------------------------------------------------------------------------

/// For N = 1, 2, … fails the N-th operation of `kind` until the workload
/// no longer reaches it. Returns (fault points, failures).
fn sweep(
    kind: OpKind,
    permanent: bool,
    relocate: bool,
) -> (u64, Vec<String>, BTreeMap<&'static str, u64>) {
    let steps = workload();
    let started = Instant::now();
    let mut points = 0;
    let mut failures = Vec::new();
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut where_fired: BTreeMap<String, u64> = BTreeMap::new();
    let mut adopted = 0;
    let mut pending = 0;
    for nth in 1.. {
        let o = run(
            Some(Fault {
                kind,
                nth,
                permanent,
            }),
            &steps,
            relocate,
        );
        if o.fired == 0 {
            break;
        }
        points += 1;
        *where_fired
            .entry(o.first_fired_in.clone().unwrap_or_default())
            .or_default() += 1;
        for (k, v) in o.errors {
            *errors.entry(k).or_default() += v;
        }
        adopted += o.adopted_inflight;
        pending += o.redaction_pending;
        failures.extend(o.failures);
        assert!(nth < 100_000, "the workload never stops reaching the fault");
    }
    println!(
        "[faults] {kind:?} {}{}: {points} fault points; first fired in {} distinct steps; errors \
         returned {errors:?}; {adopted} reopens showed a commit whose commit() had failed; {pending} commits \
         returned RedactionPending; \
         {} failures; {:.1?}",
        if permanent { "permanent" } else { "once" },
        if relocate {
            ", repacks in relocation commits"
        } else {
            ""
        },
        where_fired.len(),
        failures.len(),
        started.elapsed()
    );
    (points, failures, errors)
}

fn report(kind: OpKind) {
    let mut all = Vec::new();
    let mut points = 0;
    for relocate in [false, true] {
        for permanent in [false, true] {
            let (p, f, _) = sweep(kind, permanent, relocate);
            points += p;
            all.extend(f);
        }
    }
    assert!(points > 0, "no {kind:?} fault point was reached");
    if !all.is_empty() {
        let shown: Vec<String> = all.iter().take(40).map(|s| format!("  - {s}")).collect();
        panic!(
            "{} failures under {kind:?} faults (first {} shown):\n{}",
            all.len(),
            shown.len(),
            shown.join("\n")
        );
    }
}

/// The workload itself passes without faults, and how many operations of
/// each kind it issues.
#[test]
fn workload_without_faults() {
    for relocate in [false, true] {
        let o = run(None, &workload(), relocate);
        println!(
            "[faults] workload without faults{}: reads {}, writes {}, syncs {}, set_len {}; {} \
             relocation commits",
            if relocate { ", relocation commits" } else { "" },
            o.counts[0],
            o.counts[1],
            o.counts[2],
            o.counts[3],
            o.relocations
        );
        assert!(o.failures.is_empty(), "{}", o.failures.join("\n"));
        assert!(
            o.counts.iter().all(|&c| c > 0),
            "every kind of operation is exercised: {:?}",
            o.counts
        );
        assert_eq!(
            o.relocations > 0,
            relocate,
            "the workload's packed deletes run relocation commits when repacks are deferred"
        );
    }
}

#[test]
fn fault_at_every_write() {
    report(OpKind::Write);
}

#[test]
fn fault_at_every_sync() {
    report(OpKind::Sync);
}

#[test]
fn fault_at_every_set_len() {
    report(OpKind::SetLen);
}

#[test]
fn fault_at_every_read() {
    report(OpKind::Read);
}

/// Builds a lockbox with `a` committed at sequence 2 and `b` at sequence 3.
/// With `cut_after_commit_point`, the second commit's writes fail from the
/// first one after its commit point (when the library reports
/// `RedactionPending`): the file then holds commit 3 in one slot and commit
/// 2 in the other, as after a crash between a commit's commit point and the
/// end of its redaction. Returns the durable bytes, or `None` if the library
/// has no such point.
fn two_commits(cut_after_commit_point: bool) -> Option<Vec<u8>> {
    let build = |fault: Option<Fault>| -> (FaultBackend, u64, lockbox::Result<()>) {
        let be = FaultBackend::new(fault);
        let mut lb = Lockbox::builder()
            .create_on(Box::new(be.clone()), key())
            .expect("create");
        lb.put("a", b"first commit").expect("put a");
        lb.commit().expect("commit 2");
        lb.put("b", b"second commit").expect("put b");
        let writes = be.disk().counts[OpKind::Write as usize];
        let r = lb.commit().map(|_| ());
        (be, writes, r)
    };
    let (be, writes, r) = build(None);
    r.expect("commit 3");
    if !cut_after_commit_point {
        return Some(be.disk().durable.clone());
    }
    for k in 1..100 {
        let fault = Fault {
            kind: OpKind::Write,
            nth: writes + k,
            permanent: true,
        };
        let (be, _, r) = build(Some(fault));
        match r {
            Err(Error::RedactionPending { sequence: 3, .. }) => {
                return Some(be.disk().durable.clone());
            }
            Err(_) => continue,
            Ok(()) => return None,
        }
    }
    None
}

/// Minimal reproduction of what `fault_at_every_read` finds at its reopen
/// steps: a one-off read error while `open` reads the newest commit's tree
/// roots makes open fall back, silently, to the previous commit (design.md:
/// "Open takes the highest seq that authenticates and whose roots read, so
/// it falls back if the newest record's pages are unreadable"). An I/O error
/// is not evidence that the newest commit is damaged: that commit reported
/// itself durable, so its pages were synced before its slot was written. The
/// handle then works from the older commit (and, with redaction, rewrites
/// the newest commit's slot with the older record during open), so the
/// durable newest commit is lost for good.
/// Expected: open returns the error (or retries), or opens the newest commit.
#[test]
fn read_error_during_open_does_not_roll_back_a_durable_commit() {
    let mut problems = Vec::new();
    let mut refused = 0;
    let mut images = 0;
    for cut in [false, true] {
        let Some(img) = two_commits(cut) else {
            continue;
        };
        images += 1;
        let what = if cut {
            "commit 3 cut after its commit point"
        } else {
            "two complete commits"
        };
        {
            let lb = Lockbox::builder()
                .open_bytes(img.clone(), key())
                .expect("open without faults");
            assert_eq!(
                lb.sequence(),
                3,
                "{what}: opens at sequence 3 without faults"
            );
        }
        for nth in 1..=12 {
            let fault = Fault {
                kind: OpKind::Read,
                nth,
                permanent: false,
            };
            let be = FaultBackend::with_bytes(img.clone(), Some(fault));
            match Lockbox::builder().open_on(Box::new(be.clone()), key()) {
                Err(e) => {
                    assert!(
                        matches!(e, Error::Io(_)),
                        "{what}: read #{nth} failed during open: {e:?}"
                    );
                    refused += 1;
                }
                Ok(mut lb) if lb.sequence() != 3 => {
                    let opened = lb.sequence();
                    let after_open = {
                        let durable = be.disk().durable.clone();
                        Lockbox::builder()
                            .open_bytes(durable, key())
                            .map(|l| l.sequence())
                    };
                    // what a caller does next: change something and commit
                    let next = lb
                        .put("c", b"after reopen")
                        .and_then(|_| lb.commit().map(|_| ()));
                    drop(lb);
                    let durable = be.disk().durable.clone();
                    let after = Lockbox::builder()
                        .open_bytes(durable, key())
                        .expect("reopen");
                    let b = after.get("b").map_err(|e| err_name(&e));
                    problems.push(format!(
                        "{what}: read #{nth} failed once during open_on: open returned Ok at \
                         sequence {opened} instead of 3 (its durable bytes, reopened without \
                         faults right after that open, give sequence {:?}); put+commit then gave \
                         {:?}; the durable file is now at sequence {} and get(\"b\") (durable \
                         since commit 3) gives {b:?}",
                        after_open.map_err(|e| err_name(&e)),
                        next.map_err(|e| err_name(&e)),
                        after.sequence()
                    ));
                }
                Ok(_) => {}
            }
        }
    }
    println!(
        "[faults] open with a one-off read error: {images} images, {refused} opens refused, {} \
         rolled back",
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "a transient read error at open rolls back a durable commit:\n  {}",
        problems.join("\n  ")
    );
}

/// `compact()` on a lockbox that lives on a caller's backend (`create_on`,
/// `open_on`: these tests, and the remote backends of requirements §9):
/// commits made after it must still reach that backend, or `commit()`
/// reports durability for bytes that only exist in memory.
#[test]
fn commit_after_compact_reaches_the_backend() {
    let be = FaultBackend::new(None);
    let mut lb = Lockbox::builder()
        .create_on(Box::new(be.clone()), key())
        .expect("create_on");
    lb.put("a", &content(1, 5000)).expect("put a");
    lb.put("b", &content(2, 90_000)).expect("put b");
    lb.commit().expect("commit");
    lb.delete("a").expect("delete a");
    lb.commit().expect("commit");
    let compacted = lb.compact();
    lb.put("c", b"written after compact").expect("put c");
    let stats = lb.commit().expect("commit after compact");
    let seq = lb.sequence();
    drop(lb);
    let durable = be.disk().durable.clone();
    let reopened = Lockbox::builder()
        .open_bytes(durable, key())
        .expect("open the backend's durable bytes");
    let c = reopened.get("c").map_err(|e| err_name(&e));
    assert!(
        reopened.sequence() == seq && c.as_deref() == Ok(&b"written after compact"[..]),
        "compact() gave {:?}; the commit after it returned Ok (sequence {}), but the backend's \
         durable bytes open at sequence {} and get(\"c\") gives {:?}",
        compacted
            .map(|s| (s.bytes_before, s.bytes_after))
            .map_err(|e| err_name(&e)),
        stats.sequence,
        reopened.sequence(),
        c.map(|v| v.len())
    );
}
