//! Playing a sequence on a recording backend, with or without a crash.

use super::*;

// ---------------------------------------------------------------------------
// Playing a sequence, with or without a crash
// ---------------------------------------------------------------------------

/// What a (possibly crashed) run left behind.
pub struct Played {
    pub be: RecBackend,
    /// Mutating backend ops done by create.
    pub create_ops: u64,
    /// Per op: the backend op counter before and after it.
    pub spans: Vec<(u64, u64)>,
    /// Index of the op the crash interrupted (`None`: no crash, or a crash in create).
    pub crashed_in: Option<usize>,
    /// The last committed state and its sequence, before the crash.
    pub old: (u64, RefState),
    /// For a crash inside a commit with changes: the state it was committing
    /// and its sequence (its relocation commits, logically the same state,
    /// have the sequences after it).
    pub new: Option<(u64, RefState)>,
    /// The crash came in a writable open that may have been running
    /// relocation commits the image had left over: the old state may then
    /// show under a later sequence.
    pub old_may_relocate: bool,
    /// The crashed commit returned `RedactionPending`: it reports itself
    /// durable, so only the new state is acceptable.
    pub past_commit_point: bool,
    /// The acceptable sets of extra keys: the current one, or, for a crash
    /// in `add_key`/`remove_key`, the sets before and after it.
    pub keys: Vec<Keys>,
    /// The archive's id (`None`: create crashed), under which the nonce
    /// recorder files its sealings and those of every image reopened from
    /// it.
    pub archive: Option<[u8; 16]>,
    /// Relocation commits run by the commits that returned `Ok`.
    pub relocations: u64,
}

/// The builder of a seed: odd seeds use 1 KiB B-tree nodes, so their trees
/// are several levels deep and a commit rewrites several nodes. Seeds
/// `0, 1 (mod 4)` leave every repack of a packed frame that lost members to
/// relocation commits (one frame each for `0`, about 16 KiB for `1`), so a
/// commit that deletes or replaces a packed file is followed by several
/// complete relocation commits, each with its own crash points; the other
/// seeds repack such small amounts inside the commit itself (the default).
pub fn builder(seed: u64) -> lockbox::Builder {
    let mut b = Lockbox::builder();
    if seed % 2 == 1 {
        b = b.node_capacity(1024);
    }
    match seed % 4 {
        0 => b.relocation_batch(1),
        1 => b.relocation_batch(16 << 10),
        _ => b,
    }
    // (`relocating` says which seeds these are)
}

/// Where a run starts: a new lockbox, or an existing image (a recovered
/// crash image) whose committed state and sequence are known.
#[derive(Clone)]
pub enum Start {
    Create,
    Image(Arc<Vec<u8>>, u64, RefState, Keys),
}

/// `Played::crashed_in` of a crash while opening a `Start::Image`.
pub const IN_OPEN: usize = usize::MAX;

pub fn op_name(ops: &[Op], i: usize) -> String {
    if i == IN_OPEN {
        "the writable open_on before the first op".into()
    } else {
        format!("op #{i} {:?}", ops[i])
    }
}

/// A recording backend that crashes at its `crash_at`-th mutating operation
/// (0-based): that one and every later one fails.
pub fn crashing_at(crash_at: Option<u64>) -> RecBackend {
    let be = RecBackend::new();
    be.fail_from(crash_at);
    be
}

pub fn play(seed: u64, start: &Start, ops: &[Op], crash_at: Option<u64>) -> Result<Played, String> {
    let be = crashing_at(crash_at);
    let (mut lb, mut committed, mut seq, mut keys) = match start {
        Start::Create => {
            let lb = match builder(seed).create_on(Box::new(be.clone()), key()) {
                Ok(lb) => lb,
                Err(e) => {
                    if be.failed() {
                        return Ok(Played {
                            create_ops: be.ops(),
                            be,
                            spans: Vec::new(),
                            crashed_in: None,
                            old: (0, RefState::default()),
                            new: None,
                            old_may_relocate: false,
                            past_commit_point: false,
                            keys: vec![Keys::new()],
                            archive: None,
                            relocations: 0,
                        });
                    }
                    return Err(format!("create_on failed without a crash: {e:?}"));
                }
            };
            if be.failed() {
                return Err("create_on returned Ok although a write or sync of it failed".into());
            }
            if lb.sequence() != 1 {
                return Err(format!(
                    "a new lockbox has sequence {}, expected 1",
                    lb.sequence()
                ));
            }
            (lb, RefState::default(), 1, Keys::new())
        }
        Start::Image(bytes, seq, st, keys) => {
            {
                let mut d = be.disk();
                d.durable = bytes.to_vec();
                d.current = bytes.to_vec();
            }
            let lb = match builder(seed).open_on(Box::new(be.clone()), key()) {
                Ok(lb) => lb,
                // a writable open may write (finishing an interrupted
                // commit's redaction): a crash there must leave the state
                Err(_) if be.failed() => {
                    return Ok(Played {
                        create_ops: 0,
                        be,
                        spans: Vec::new(),
                        crashed_in: Some(IN_OPEN),
                        old: (*seq, st.clone()),
                        new: None,
                        old_may_relocate: true,
                        past_commit_point: false,
                        keys: vec![keys.clone()],
                        archive: None,
                        relocations: 0,
                    });
                }
                Err(e) => return Err(format!("open_on of the recovered image failed: {e:?}")),
            };
            if be.failed() {
                return Err("open_on returned Ok although a write or sync of it failed".into());
            }
            // The open finishes relocation commits the image had left
            // over: the same state under a later sequence.
            if lb.sequence() < *seq {
                return Err(format!(
                    "recovered image opened at sequence {}, expected {seq} or later",
                    lb.sequence()
                ));
            }
            let s = lb.sequence();
            (lb, st.clone(), s, keys.clone())
        }
    };
    let create_ops = be.ops();
    let archive = Some(lockbox::testing::archive_id(&lb));
    let mut staged = committed.clone();
    let mut spans = Vec::new();
    let mut relocations = 0;
    for (i, op) in ops.iter().enumerate() {
        let before = be.ops();
        let changes = lb.has_changes();
        let r: lockbox::Result<()> = match op {
            Op::Put(p, d) => lb.put(p, d),
            Op::PutReader(p, d) => match lb.put_reader(p, io::Cursor::new(d)) {
                Ok(n) if n == d.len() as u64 => Ok(()),
                Ok(n) => return Err(format!("op #{i} {op:?} returned {n}")),
                Err(e) => Err(e),
            },
            Op::Delete(p) => lb.delete(p).map(|_| ()),
            Op::Rename(a, b) => lb.rename(a, b),
            Op::Symlink(p, t) => lb.symlink(p, t),
            Op::Mkdir(p) => lb.mkdir(p),
            Op::SetVar(n, v) => lb.set_var(n, v),
            Op::RemoveVar(n) => {
                let want = staged.vars.contains_key(n);
                match lb.remove_var(n) {
                    Ok(had) if had == want => Ok(()),
                    Ok(had) => {
                        return Err(format!("op #{i} {op:?} returned {had}, expected {want}"));
                    }
                    Err(e) => Err(e),
                }
            }
            Op::Commit => lb.commit().map(|s| {
                // relocation commits follow the commit itself
                let want = if changes {
                    seq + 1 + s.relocations
                } else {
                    seq
                };
                assert_eq!(s.sequence, want, "op #{i}: CommitStats::sequence");
                assert_eq!(s.sequence, lb.sequence(), "op #{i}: CommitStats::sequence");
                relocations += s.relocations;
            }),
            Op::Rollback => {
                lb.rollback();
                Ok(())
            }
            Op::AddKey(k) => lb.add_key(extra_key(*k)),
            Op::RemoveKey(k) => lb.remove_key(&extra_key(*k)),
        };
        if be.failed() {
            if let Ok(()) = r
                && !matches!(op, Op::Rollback)
            {
                return Err(format!(
                    "op #{i} {op:?} returned Ok although a backend {} it issued failed \
                     (a success reported after a failed write/sync)",
                    be.disk().crash_op()
                ));
            }
            let new = match op {
                Op::Commit if changes => Some((seq + 1, staged.clone())),
                _ => None,
            };
            // a commit that failed after its commit point says so, with
            // the sequence of the last durable commit: its own, or one of
            // its relocation commits
            let past_commit_point = match &r {
                Err(Error::RedactionPending { sequence, .. }) => {
                    if new.is_none() || *sequence < seq + 1 {
                        return Err(format!(
                            "op #{i} {op:?} returned RedactionPending for sequence {sequence}, \
                             the commit was for {}",
                            seq + 1
                        ));
                    }
                    true
                }
                _ => false,
            };
            let mut after = keys.clone();
            match op {
                Op::AddKey(k) => {
                    after.insert(*k);
                }
                Op::RemoveKey(k) => {
                    after.remove(k);
                }
                _ => {}
            }
            let keys = if after != keys {
                vec![keys, after]
            } else {
                vec![keys]
            };
            return Ok(Played {
                be,
                create_ops,
                spans,
                crashed_in: Some(i),
                old: (seq, committed),
                new,
                old_may_relocate: false,
                past_commit_point,
                keys,
                archive,
                relocations,
            });
        }
        if let Err(e) = r {
            return Err(format!("op #{i} {op:?} failed without a crash: {e:?}"));
        }
        match op {
            Op::Commit => {
                if changes && lb.sequence() <= seq {
                    return Err(format!(
                        "after op #{i} commit: sequence() {} expected more than {seq}",
                        lb.sequence()
                    ));
                }
                if !changes && lb.sequence() != seq {
                    return Err(format!(
                        "after op #{i} commit without changes: sequence() {} expected {seq}",
                        lb.sequence()
                    ));
                }
                seq = lb.sequence();
                committed = staged.clone();
            }
            Op::Rollback => staged = committed.clone(),
            Op::AddKey(k) => {
                keys.insert(*k);
            }
            Op::RemoveKey(k) => {
                keys.remove(k);
            }
            o => apply_ref(&mut staged, o),
        }
        spans.push((before, be.ops()));
    }
    // no crash: the handle and a reopened image show the final state
    let seen = observe(&lb).map_err(|e| format!("observe at the end: {e}"))?;
    if seen != staged {
        return Err(format!("final state differs: {}", staged.diff(&seen)));
    }
    let img = be.disk().durable.clone();
    let lb2 = Lockbox::builder()
        .open_bytes(img, key())
        .map_err(|e| format!("reopen at the end: {e:?}"))?;
    let seen = observe(&lb2).map_err(|e| format!("observe after reopen: {e}"))?;
    if seen != committed || lb2.sequence() != seq {
        return Err(format!(
            "reopened final state differs (seq {} vs {seq}): {}",
            lb2.sequence(),
            committed.diff(&seen)
        ));
    }
    lb2.verify()
        .map_err(|e| format!("verify at the end: {e:?}"))?;
    Ok(Played {
        be,
        create_ops,
        spans,
        crashed_in: None,
        old: (seq, committed),
        new: None,
        old_may_relocate: false,
        past_commit_point: false,
        keys: vec![keys],
        archive,
        relocations,
    })
}
