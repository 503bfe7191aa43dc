//! Crash consistency (requirements §3 "after a crash at any point the file
//! opens as exactly the old or the new commit", §7 "crash images at every
//! sync point").
//!
//! A [`CrashBackend`] keeps the bytes that syncs made permanent (`durable`)
//! apart from the writes issued since the last sync (`pending`), and can be
//! told to crash at its N-th mutating operation (write, sync or set_len):
//! that operation and every later one fails. From the state at the crash we
//! build disk images a real machine could be left with:
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

mod common;

use common::*;
use lockbox::testing::Backend;
use lockbox::{Error, Lockbox};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::ops::RangeInclusive;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

const SECTOR: u64 = 512;

// ---------------------------------------------------------------------------
// The crash backend
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Pend {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

impl Pend {
    fn brief(&self) -> String {
        match self {
            Pend::Write(off, d) => format!("write@{off}+{}", d.len()),
            Pend::SetLen(l) => format!("set_len({l})"),
        }
    }
}

fn apply(img: &mut Vec<u8>, p: &Pend) {
    match p {
        Pend::Write(off, d) => apply_bytes(img, *off, d),
        Pend::SetLen(l) => img.resize(*l as usize, 0),
    }
}

fn apply_bytes(img: &mut Vec<u8>, off: u64, d: &[u8]) {
    let start = off as usize;
    let end = start + d.len();
    if img.len() < end {
        img.resize(end, 0);
    }
    img[start..end].copy_from_slice(d);
}

#[derive(Default)]
struct Disk {
    /// What the syncs so far made permanent.
    durable: Vec<u8>,
    /// What reads see: `durable` with `pending` applied.
    current: Vec<u8>,
    /// Writes and length changes since the last sync, in issue order.
    pending: Vec<Pend>,
    /// Mutating operations started so far.
    ops: u64,
    /// Crash at this mutating operation (0-based).
    crash_at: Option<u64>,
    crashed: bool,
    /// The operation the crash interrupted, if it was a write or set_len:
    /// it may have landed, wholly or in part.
    in_flight: Option<Pend>,
    /// What the interrupted operation was.
    crash_op: &'static str,
}

fn gone() -> Error {
    Error::Io(io::Error::other("simulated crash: the machine is gone"))
}

impl Disk {
    /// Starts a mutating operation; fails at and after the crash point.
    fn begin(&mut self, what: &'static str, op: Option<Pend>) -> lockbox::Result<()> {
        if self.crashed {
            return Err(gone());
        }
        let n = self.ops;
        self.ops += 1;
        if self.crash_at == Some(n) {
            self.crashed = true;
            self.in_flight = op;
            self.crash_op = what;
            return Err(gone());
        }
        Ok(())
    }
}

/// A backend whose state the test keeps a handle on after lockbox owns it.
#[derive(Clone)]
struct CrashBackend(Arc<Mutex<Disk>>);

impl CrashBackend {
    fn new(crash_at: Option<u64>) -> Self {
        CrashBackend(Arc::new(Mutex::new(Disk {
            crash_at,
            ..Default::default()
        })))
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ops(&self) -> u64 {
        self.disk().ops
    }

    fn crashed(&self) -> bool {
        self.disk().crashed
    }
}

impl Backend for CrashBackend {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> lockbox::Result<()> {
        let d = self.disk();
        if d.crashed {
            return Err(gone());
        }
        let start = offset as usize;
        match start
            .checked_add(buf.len())
            .filter(|&e| e <= d.current.len())
        {
            Some(end) => {
                buf.copy_from_slice(&d.current[start..end]);
                Ok(())
            }
            None => Err(Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end",
            ))),
        }
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> lockbox::Result<()> {
        let mut d = self.disk();
        let p = Pend::Write(offset, data.to_vec());
        d.begin("write", Some(p.clone()))?;
        apply(&mut d.current, &p);
        d.pending.push(p);
        Ok(())
    }

    fn sync(&self) -> lockbox::Result<()> {
        let mut d = self.disk();
        d.begin("sync", None)?;
        d.durable = d.current.clone();
        d.pending.clear();
        Ok(())
    }

    fn len(&self) -> lockbox::Result<u64> {
        let d = self.disk();
        if d.crashed {
            return Err(gone());
        }
        Ok(d.current.len() as u64)
    }

    fn set_len(&self, len: u64) -> lockbox::Result<()> {
        let mut d = self.disk();
        let p = Pend::SetLen(len);
        d.begin("set_len", Some(p.clone()))?;
        apply(&mut d.current, &p);
        d.pending.push(p);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Images of a crashed disk
// ---------------------------------------------------------------------------

struct Image {
    kind: &'static str,
    note: String,
    bytes: Vec<u8>,
}

fn images(durable: &[u8], pending: &[Pend], rng: &mut XorShift) -> Vec<Image> {
    let mut out = vec![Image {
        kind: "durable",
        note: String::new(),
        bytes: durable.to_vec(),
    }];
    if pending.is_empty() {
        return out;
    }
    let mut all = durable.to_vec();
    for p in pending {
        apply(&mut all, p);
    }
    out.push(Image {
        kind: "all-pending",
        note: format!("{} pending ops", pending.len()),
        bytes: all,
    });

    // random subsets in random order
    let subsets = if pending.len() == 1 { 0 } else { 3 };
    for _ in 0..subsets {
        let mut idx: Vec<usize> = (0..pending.len()).filter(|_| rng.chance(1, 2)).collect();
        for i in (1..idx.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            idx.swap(i, j);
        }
        let mut img = durable.to_vec();
        for &i in &idx {
            apply(&mut img, &pending[i]);
        }
        out.push(Image {
            kind: "subset",
            note: format!(
                "applied, in this order: {:?}",
                idx.iter().map(|&i| pending[i].brief()).collect::<Vec<_>>()
            ),
            bytes: img,
        });
    }

    // torn writes: earlier pending ops landed, then a sector prefix of one write
    let writes: Vec<usize> = pending
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p, Pend::Write(..)))
        .map(|(i, _)| i)
        .collect();
    let mut chosen: Vec<usize> = Vec::new();
    if let Some(&last) = writes.last() {
        chosen.push(last); // the interrupted write, or the last one issued
    }
    for _ in 0..2 {
        if writes.len() > chosen.len() {
            let w = *rng.pick(&writes);
            if !chosen.contains(&w) {
                chosen.push(w);
            }
        }
    }
    for w in chosen {
        let Pend::Write(off, data) = &pending[w] else {
            continue;
        };
        let (off, len) = (*off, data.len() as u64);
        let first = (off / SECTOR + 1) * SECTOR;
        let cuts: Vec<u64> = (first..off + len).step_by(SECTOR as usize).collect();
        let (kind, cut) = if cuts.is_empty() {
            if len < 2 {
                continue;
            }
            ("torn-byte", off + 1 + rng.below(len - 1))
        } else {
            ("torn", *rng.pick(&cuts))
        };
        let mut img = durable.to_vec();
        for p in &pending[..w] {
            apply(&mut img, p);
        }
        apply_bytes(&mut img, off, &data[..(cut - off) as usize]);
        out.push(Image {
            kind,
            note: format!(
                "{w} earlier pending ops landed, then {} torn after {} of {len} bytes",
                pending[w].brief(),
                cut - off
            ),
            bytes: img,
        });
    }
    out
}

// ---------------------------------------------------------------------------
// Operations and the reference
// ---------------------------------------------------------------------------

const DIRS: [&str; 3] = ["a", "b", "c/d"];
const NAMES: [&str; 6] = ["f0", "f1", "f2", "f3", "f4", "f5"];
const VARS: [&str; 3] = ["v", "v2", "alpha"];
const TARGETS: [&str; 4] = ["f0", "../b/f1", "/etc/hosts", "t0"];

fn leaves() -> Vec<String> {
    let mut v: Vec<String> = DIRS
        .iter()
        .flat_map(|d| NAMES.iter().map(move |n| format!("{d}/{n}")))
        .collect();
    v.extend(["t0", "t1", "t2"].map(String::from));
    v
}

#[derive(Clone)]
enum Op {
    Put(String, Vec<u8>),
    PutReader(String, Vec<u8>),
    Delete(String),
    Rename(String, String),
    Symlink(String, String),
    Mkdir(String),
    SetVar(String, Vec<u8>),
    RemoveVar(String),
    Commit,
    Rollback,
    /// `add_key(extra_key(k))`: takes effect at once, apart from commits.
    AddKey(u8),
    RemoveKey(u8),
}

/// Extra raw keys that `AddKey`/`RemoveKey` add and remove (the base key,
/// `key()`, always stays).
const EXTRA_KEYS: [u8; 3] = [1, 2, 3];

fn extra_key(k: u8) -> lockbox::Key {
    lockbox::Key::raw([k; 32])
}

/// The extra keys that open a lockbox.
type Keys = BTreeSet<u8>;

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Put(p, d) => write!(f, "put({p:?}, {} B)", d.len()),
            Op::PutReader(p, d) => write!(f, "put_reader({p:?}, {} B)", d.len()),
            Op::Delete(p) => write!(f, "delete({p:?})"),
            Op::Rename(a, b) => write!(f, "rename({a:?}, {b:?})"),
            Op::Symlink(p, t) => write!(f, "symlink({p:?}, {t:?})"),
            Op::Mkdir(p) => write!(f, "mkdir({p:?})"),
            Op::SetVar(n, v) => write!(f, "set_var({n:?}, {} B)", v.len()),
            Op::RemoveVar(n) => write!(f, "remove_var({n:?})"),
            Op::Commit => write!(f, "commit"),
            Op::Rollback => write!(f, "rollback"),
            Op::AddKey(k) => write!(f, "add_key(raw [{k}; 32])"),
            Op::RemoveKey(k) => write!(f, "remove_key(raw [{k}; 32])"),
        }
    }
}

/// Applies a (valid) change to the reference's staged state.
fn apply_ref(st: &mut RefState, op: &Op) {
    match op {
        Op::Put(p, d) | Op::PutReader(p, d) => {
            st.entries.insert(p.clone(), RefNode::File(d.clone()));
        }
        Op::Delete(p) => {
            for k in st.subtree(p) {
                st.entries.remove(&k);
            }
        }
        Op::Rename(from, to) => {
            for k in st.subtree(from) {
                let n = st.entries.remove(&k).expect("key from subtree");
                st.entries.insert(format!("{to}{}", &k[from.len()..]), n);
            }
        }
        Op::Symlink(p, t) => {
            st.entries.insert(p.clone(), RefNode::Symlink(t.clone()));
        }
        Op::Mkdir(p) => {
            st.entries.insert(p.clone(), RefNode::Dir);
        }
        Op::SetVar(n, v) => {
            st.vars.insert(n.clone(), v.clone());
        }
        Op::RemoveVar(n) => {
            st.vars.remove(n);
        }
        Op::Commit | Op::Rollback | Op::AddKey(_) | Op::RemoveKey(_) => unreachable!(),
    }
}

/// A content length: inline, packed or framed. `packed_heavy` sequences
/// (those whose repacks go to relocation commits) mostly write packed
/// files, so their deletes and overwrites leave packs with dead members.
fn data_len(rng: &mut XorShift, packed_heavy: bool) -> usize {
    let (inline, packed) = if packed_heavy { (20, 90) } else { (45, 85) };
    match rng.below(100) {
        x if x < inline => rng.below(129) as usize, // inline (incl. empty)
        x if x < packed => rng.range(129, 12_000),  // packed
        _ => rng.range(65_537, 200_000),            // framed, several frames
    }
}

/// Whether a seed's repacks go to relocation commits (see [`builder`]).
fn relocating(seed: u64) -> bool {
    seed % 4 < 2
}

/// A seeded sequence of changes that are all valid when applied in order
/// (so any failure without a crash is a bug), ending with a commit.
fn gen_ops(seed: u64, n: usize, from: &RefState, from_keys: &Keys, packed_heavy: bool) -> Vec<Op> {
    let mut rng = XorShift::new(seed);
    let leaves = leaves();
    let mut committed = from.clone();
    let mut st = from.clone();
    let mut keys = from_keys.clone();
    let mut ops = Vec::new();
    while ops.len() < n {
        let op = match rng.below(100) {
            0..=27 => {
                let p = rng.pick(&leaves).clone();
                if matches!(st.entries.get(&p), Some(RefNode::Symlink(_))) {
                    continue;
                }
                let len = data_len(&mut rng, packed_heavy);
                Op::Put(p, content(rng.next_u64(), len))
            }
            28..=35 => {
                let p = rng.pick(&leaves).clone();
                if matches!(st.entries.get(&p), Some(RefNode::Symlink(_))) {
                    continue;
                }
                let len = data_len(&mut rng, packed_heavy);
                Op::PutReader(p, content(rng.next_u64(), len))
            }
            36..=45 => {
                let mut cands: Vec<String> = st.entries.keys().cloned().collect();
                cands.extend(DIRS.iter().filter(|d| st.exists(d)).map(|d| d.to_string()));
                if st.exists("c") {
                    cands.push("c".into());
                }
                if cands.is_empty() {
                    continue;
                }
                Op::Delete(rng.pick(&cands).clone())
            }
            46..=55 => {
                if rng.chance(1, 3) {
                    let from: Vec<&str> = DIRS.iter().copied().filter(|d| st.exists(d)).collect();
                    let to: Vec<&str> = DIRS.iter().copied().filter(|d| !st.exists(d)).collect();
                    if from.is_empty() || to.is_empty() {
                        continue;
                    }
                    Op::Rename(rng.pick(&from).to_string(), rng.pick(&to).to_string())
                } else {
                    let from: Vec<&String> = leaves
                        .iter()
                        .filter(|l| {
                            matches!(
                                st.entries.get(*l),
                                Some(RefNode::File(_) | RefNode::Symlink(_))
                            )
                        })
                        .collect();
                    let to: Vec<&String> = leaves.iter().filter(|l| !st.exists(l)).collect();
                    if from.is_empty() || to.is_empty() {
                        continue;
                    }
                    Op::Rename((*rng.pick(&from)).clone(), (*rng.pick(&to)).clone())
                }
            }
            56..=62 => {
                let free: Vec<&String> = leaves.iter().filter(|l| !st.exists(l)).collect();
                if free.is_empty() {
                    continue;
                }
                Op::Symlink((*rng.pick(&free)).clone(), rng.pick(&TARGETS).to_string())
            }
            63..=65 => {
                let free: Vec<&str> = DIRS.iter().copied().filter(|d| !st.exists(d)).collect();
                if free.is_empty() {
                    continue;
                }
                Op::Mkdir(rng.pick(&free).to_string())
            }
            66..=75 => {
                let len = data_len(&mut rng, packed_heavy);
                Op::SetVar(rng.pick(&VARS).to_string(), content(rng.next_u64(), len))
            }
            76..=80 => Op::RemoveVar(rng.pick(&VARS).to_string()),
            81..=93 => Op::Commit,
            94..=95 => Op::Rollback,
            _ => {
                let k = *rng.pick(&EXTRA_KEYS);
                if keys.contains(&k) {
                    Op::RemoveKey(k)
                } else {
                    Op::AddKey(k)
                }
            }
        };
        match &op {
            Op::Commit => committed = st.clone(),
            Op::Rollback => st = committed.clone(),
            Op::AddKey(k) => {
                keys.insert(*k);
            }
            Op::RemoveKey(k) => {
                keys.remove(k);
            }
            o => apply_ref(&mut st, o),
        }
        ops.push(op);
    }
    ops.push(Op::Commit);
    ops
}

// ---------------------------------------------------------------------------
// Playing a sequence, with or without a crash
// ---------------------------------------------------------------------------

/// What a (possibly crashed) run left behind.
struct Played {
    be: CrashBackend,
    /// Mutating backend ops done by create.
    create_ops: u64,
    /// Per op: the backend op counter before and after it.
    spans: Vec<(u64, u64)>,
    /// Index of the op the crash interrupted (`None`: no crash, or a crash in create).
    crashed_in: Option<usize>,
    /// The last committed state and its sequence, before the crash.
    old: (u64, RefState),
    /// For a crash inside a commit with changes: the state it was committing
    /// and its sequence (its relocation commits, logically the same state,
    /// have the sequences after it).
    new: Option<(u64, RefState)>,
    /// The crash came in a writable open that may have been running
    /// relocation commits the image had left over: the old state may then
    /// show under a later sequence.
    old_may_relocate: bool,
    /// The crashed commit returned `RedactionPending`: it reports itself
    /// durable, so only the new state is acceptable.
    past_commit_point: bool,
    /// The acceptable sets of extra keys: the current one, or, for a crash
    /// in `add_key`/`remove_key`, the sets before and after it.
    keys: Vec<Keys>,
    /// The archive's id (`None`: create crashed), under which the nonce
    /// recorder files its sealings and those of every image reopened from
    /// it.
    archive: Option<[u8; 16]>,
    /// Relocation commits run by the commits that returned `Ok`.
    relocations: u64,
}

/// The builder of a seed: odd seeds use 1 KiB B-tree nodes, so their trees
/// are several levels deep and a commit rewrites several nodes. Seeds
/// `0, 1 (mod 4)` leave every repack of a packed frame that lost members to
/// relocation commits (one frame each for `0`, about 16 KiB for `1`), so a
/// commit that deletes or replaces a packed file is followed by several
/// complete relocation commits, each with its own crash points; the other
/// seeds repack such small amounts inside the commit itself (the default).
fn builder(seed: u64) -> lockbox::Builder {
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
enum Start {
    Create,
    Image(Arc<Vec<u8>>, u64, RefState, Keys),
}

/// `Played::crashed_in` of a crash while opening a `Start::Image`.
const IN_OPEN: usize = usize::MAX;

fn op_name(ops: &[Op], i: usize) -> String {
    if i == IN_OPEN {
        "the writable open_on before the first op".into()
    } else {
        format!("op #{i} {:?}", ops[i])
    }
}

fn play(seed: u64, start: &Start, ops: &[Op], crash_at: Option<u64>) -> Result<Played, String> {
    let be = CrashBackend::new(crash_at);
    let (mut lb, mut committed, mut seq, mut keys) = match start {
        Start::Create => {
            let lb = match builder(seed).create_on(Box::new(be.clone()), key()) {
                Ok(lb) => lb,
                Err(e) => {
                    if be.crashed() {
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
            if be.crashed() {
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
                Err(_) if be.crashed() => {
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
            if be.crashed() {
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
        if be.crashed() {
            if let Ok(()) = r
                && !matches!(op, Op::Rollback)
            {
                return Err(format!(
                    "op #{i} {op:?} returned Ok although a backend {} it issued failed \
                     (a success reported after a failed write/sync)",
                    be.disk().crash_op
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

// ---------------------------------------------------------------------------
// Checking images
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    sequences: u64,
    crash_points: u64,
    crash_points_after_recovery: u64,
    /// Crash points inside `add_key`/`remove_key`.
    crash_points_in_key_ops: u64,
    /// Crash points inside a writable open of a recovered image.
    crash_points_in_open: u64,
    /// Crash points a replay did not reach (op counts vary between runs).
    unreached: u64,
    /// Crash points that landed in another op than in the first run.
    moved: u64,
    /// Crashes after a commit point (commit returned RedactionPending).
    past_commit_point: u64,
    crash_points_in_commit: u64,
    crash_points_at_sync: u64,
    images: BTreeMap<&'static str, u64>,
    matched_old: u64,
    matched_new: u64,
    /// Images left between a commit and the end of its relocation commits
    /// (frames still to repack).
    images_mid_relocation: u64,
    /// Relocation commits run by the sequences' commits without a crash.
    relocations: u64,
    recovered_commits: u64,
    /// Sealings checked for a repeated (subkey, nonce) pair, and the
    /// recording they come from (set by `run_part`).
    nonce_pairs: u64,
    nonces: Option<lockbox::testing::Recording>,
    failures: Vec<String>,
}

impl Tally {
    /// Checks the sealings of a run started by `Start::Create` (its own
    /// archive) and of every image reopened and written from it, nested
    /// sweeps included: recovered images continue with the same keys, so a
    /// nonce derived from the state or replayed would repeat here.
    fn check_nonces(&mut self, label: &str, archive: Option<[u8; 16]>) {
        let (Some(rec), Some(id)) = (&self.nonces, archive) else {
            return;
        };
        match take_nonce_pairs(rec, &id) {
            Ok(n) => self.nonce_pairs += n as u64,
            Err(e) => self.failures.push(format!("{label}: {e}")),
        }
    }
}

/// A state an image may show: the sequences it may show under (a commit
/// and the relocation commits after it hold the same state), and the state.
type Cand<'a> = (RangeInclusive<u64>, &'a RefState);

/// What an image opened as.
struct Opened {
    /// Index of the candidate it matched.
    cand: usize,
    /// The extra keys that open it.
    keys: Keys,
    /// Its active sequence, read-only (before a writable open finishes
    /// relocation commits that were cut short).
    seq: u64,
    /// Frames its last commit left to repack (relocation cut short).
    repack_pending: usize,
}

/// Opens an image and checks it shows exactly one of `cands` and verifies:
/// read-only first (the keys, and, if relocation commits were cut short,
/// that the frames they left are read correctly), then writable (which
/// finishes the redaction and any relocation) for the full check.
fn check_image(bytes: Vec<u8>, cands: &[Cand], keysets: &[Keys]) -> Result<Opened, String> {
    let read_only = |k: lockbox::Key| {
        Lockbox::builder()
            .read_only(true)
            .open_bytes(bytes.clone(), k)
    };
    // which extra keys open it: exactly one of the acceptable sets, at the
    // same sequence as the base key (read-only: a writable open may run
    // relocation commits, and how many can differ from open to open)
    let mut opened = Keys::new();
    let mut seqs = BTreeSet::new();
    for k in EXTRA_KEYS {
        match read_only(extra_key(k)) {
            Ok(lb) => {
                opened.insert(k);
                seqs.insert(lb.sequence());
            }
            Err(Error::WrongKey) => {}
            Err(e) => return Err(format!("open_bytes with extra key {k} failed: {e:?}")),
        }
    }
    if !keysets.contains(&opened) {
        return Err(format!(
            "the extra keys that open the image are {opened:?}, expected one of {keysets:?}"
        ));
    }
    let ro = read_only(key()).map_err(|e| format!("read-only open_bytes failed: {e:?}"))?;
    let seq0 = ro.sequence();
    if seqs.iter().any(|&s| s != seq0) {
        return Err(format!(
            "extra keys open sequences {seqs:?}, the base key {seq0}"
        ));
    }
    let repack_pending = lockbox::testing::repack_pending(&ro)
        .map_err(|e| format!("reading the redaction list failed: {e:?}"))?;
    // Between a commit and the end of its relocation commits: the frames
    // still to repack are live, so the state reads and verifies as is.
    let seen_ro = if repack_pending > 0 {
        ro.verify().map_err(|e| {
            format!("read-only verify with {repack_pending} frames to repack failed: {e:?}")
        })?;
        Some(observe(&ro).map_err(|e| format!("reading the state read-only failed: {e}"))?)
    } else {
        None
    };
    drop(ro);
    let lb = Lockbox::builder()
        .open_bytes(bytes, key())
        .map_err(|e| format!("open_bytes failed: {e:?}"))?;
    let seen = observe(&lb).map_err(|e| format!("reading the state failed: {e}"))?;
    let seq = lb.sequence();
    if seq < seq0 || (seq != seq0 && repack_pending == 0) {
        return Err(format!(
            "read-only the image opens at sequence {seq0} ({repack_pending} frames to repack), \
             writable at {seq}"
        ));
    }
    if let Some(ro) = &seen_ro
        && *ro != seen
    {
        return Err(format!(
            "with relocation commits cut short, read-only reads differ from the state after \
             a writable open finished them: {}",
            seen.diff(ro)
        ));
    }
    let Some(i) = cands
        .iter()
        .position(|(s, st)| s.contains(&seq) && **st == seen)
    else {
        let mut msg = format!(
            "state is neither the old nor the new commit: opened sequence {seq}, got {}",
            seen.summary()
        );
        for (s, st) in cands {
            msg.push_str(&format!(
                "\n      vs sequences {s:?}: {}\n         diff: {}",
                st.summary(),
                st.diff(&seen)
            ));
        }
        return Err(msg);
    };
    let report = lb
        .verify()
        .map_err(|e| format!("verify failed on a state that matched sequence {seq}: {e:?}"))?;
    if report.repack_pending != 0 {
        return Err(format!(
            "a writable open left {} frames to repack",
            report.repack_pending
        ));
    }
    Ok(Opened {
        cand: i,
        keys: opened,
        seq: seq0,
        repack_pending,
    })
}

/// Opens a recovered image, changes it, commits, reopens the result and
/// checks the commit landed on top of the recovered state (`base`: the
/// image's sequence, before the open finishes any relocation commits).
fn continue_after_recovery(
    bytes: Vec<u8>,
    base: (u64, &RefState),
    keys: &Keys,
) -> Result<(), String> {
    let mut lb = Lockbox::builder()
        .open_bytes(bytes, key())
        .map_err(|e| format!("open_bytes failed: {e:?}"))?;
    let mut want = base.1.clone();
    let big = content(base.0 * 7 + 1, 70_000);
    let small = content(base.0 * 7 + 2, 900);
    let steps = (|| -> lockbox::Result<()> {
        lb.put("after/big", &big)?;
        lb.put("after/small", &small)?;
        lb.set_var("after", b"recovered")?;
        lb.commit()?;
        Ok(())
    })();
    steps.map_err(|e| format!("writing after recovery failed: {e:?}"))?;
    want.entries.insert("after/big".into(), RefNode::File(big));
    want.entries
        .insert("after/small".into(), RefNode::File(small));
    want.vars.insert("after".into(), b"recovered".to_vec());
    let img = lb.image().map_err(|e| format!("image(): {e:?}"))?;
    let seq = lb.sequence();
    drop(lb);
    if seq <= base.0 {
        return Err(format!(
            "a commit on the recovered image (sequence {}) gave sequence {seq}",
            base.0
        ));
    }
    match check_image(img, &[(seq..=seq, &want)], std::slice::from_ref(keys)) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("after a commit on the recovered image: {e}")),
    }
}

fn run_seed(seed: u64, n_ops: usize, t: &mut Tally) {
    let ops = gen_ops(
        seed,
        n_ops,
        &RefState::default(),
        &Keys::new(),
        relocating(seed),
    );
    sweep(&format!("seed {seed}"), seed, &Start::Create, &ops, t, 0);
}

/// Plays `ops` from `start` once without a crash, then once with a crash at
/// every backend operation it issued, and checks every image of every
/// crash. At `depth` 0, some recovered images of crashes inside commits get
/// a second sweep of their own (a crash during the first commit after a
/// crash recovery, over the garbage the first crash left past `data_end`).
fn sweep(label: &str, seed: u64, start: &Start, ops: &[Op], t: &mut Tally, depth: u32) {
    let full = match catch_unwind(AssertUnwindSafe(|| play(seed, start, ops, None))) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            t.failures
                .push(format!("{label}: run without crash: {e}\n  ops: {ops:?}"));
            return;
        }
        Err(p) => {
            t.failures.push(format!(
                "{label}: run without crash panicked: {}\n  ops: {ops:?}",
                panic_message(&*p)
            ));
            return;
        }
    };
    t.sequences += 1;
    // Nested sweeps (depth > 0) start from an image of their parent's
    // archive: the parent checks their sealings with its own.
    let own_archive = matches!(start, Start::Create);
    if own_archive {
        t.check_nonces(&format!("{label}: run without crash"), full.archive);
    }
    t.relocations += full.relocations;
    let total = full.be.ops();
    let mut rng = XorShift::new(seed ^ 0xC4A5_4C4A_5400 ^ (total << 32) ^ depth as u64);
    // crashes in create are `crash_during_create`'s; an open's writes count
    let first = match start {
        Start::Create => full.create_ops,
        Start::Image(..) => 0,
    };
    for n in first..total {
        let op_idx = full
            .spans
            .iter()
            .position(|&(a, b)| n >= a && n < b)
            .unwrap_or(IN_OPEN);
        // Op counts can differ between runs (see the module docs): retry a
        // crash point the replay did not reach, and take the op the crash
        // landed in from the replay.
        let mut tries = 0;
        let played = loop {
            tries += 1;
            let at = format!(
                "{label}, crash at backend op {n} ({} in the first run)",
                op_name(ops, op_idx)
            );
            match catch_unwind(AssertUnwindSafe(|| play(seed, start, ops, Some(n)))) {
                Ok(Ok(p)) if p.crashed_in.is_none() && tries < 5 => {
                    if own_archive {
                        t.check_nonces(&at, p.archive);
                    }
                    continue;
                }
                Ok(Ok(p)) => break Some(p),
                Ok(Err(e)) => t.failures.push(format!("{at}: {e}")),
                Err(p) => t
                    .failures
                    .push(format!("{at}: panic: {}", panic_message(&*p))),
            }
            break None;
        };
        let Some(played) = played else { continue };
        let Some(op_idx) = played.crashed_in else {
            t.unreached += 1;
            if own_archive {
                t.check_nonces(label, played.archive);
            }
            continue;
        };
        if op_idx
            != full
                .spans
                .iter()
                .position(|&(a, b)| n >= a && n < b)
                .unwrap_or(usize::MAX)
        {
            t.moved += 1;
        }
        if depth == 0 {
            t.crash_points += 1;
        } else {
            t.crash_points_after_recovery += 1;
        }
        let (durable, pending, crash_op) = {
            let d = played.be.disk();
            let mut pending = d.pending.clone();
            if let Some(p) = &d.in_flight {
                pending.push(p.clone());
            }
            (d.durable.clone(), pending, d.crash_op)
        };
        let in_commit = op_idx != IN_OPEN && matches!(ops[op_idx], Op::Commit);
        let in_key_op =
            op_idx != IN_OPEN && matches!(ops[op_idx], Op::AddKey(_) | Op::RemoveKey(_));
        if in_key_op {
            t.crash_points_in_key_ops += 1;
        }
        if op_idx == IN_OPEN {
            t.crash_points_in_open += 1;
        }
        if in_commit {
            t.crash_points_in_commit += 1;
        }
        if crash_op == "sync" {
            t.crash_points_at_sync += 1;
        }
        let old_seqs = if played.old_may_relocate {
            played.old.0..=u64::MAX
        } else {
            played.old.0..=played.old.0
        };
        let mut cands: Vec<Cand> = vec![(old_seqs, &played.old.1)];
        if let Some((s, st)) = &played.new {
            if played.past_commit_point {
                cands.clear();
                t.past_commit_point += 1;
            }
            // the commit, or any relocation commit after it
            cands.push((*s..=u64::MAX, st));
        }
        let mut recovered = 0;
        for img in images(&durable, &pending, &mut rng) {
            *t.images.entry(img.kind).or_default() += 1;
            let ctx = || {
                format!(
                    "{label}, crash at backend op {n} ({crash_op}) in {}, \
                     image {} {}",
                    op_name(ops, op_idx),
                    img.kind,
                    img.note
                )
            };
            let keep = recovered < 2 && matches!(img.kind, "all-pending" | "torn");
            let nested = depth == 0
                && (in_commit || in_key_op)
                && img.kind == "all-pending"
                && rng.chance(1, NESTED_ONE_IN);
            match catch_unwind(AssertUnwindSafe(|| {
                check_image(img.bytes.clone(), &cands, &played.keys)
            })) {
                Ok(Ok(Opened {
                    cand: i,
                    keys,
                    seq,
                    repack_pending,
                })) => {
                    if *cands[i].1 == played.old.1 && cands[i].0.contains(&played.old.0) {
                        t.matched_old += 1;
                    } else {
                        t.matched_new += 1;
                    }
                    if repack_pending > 0 {
                        t.images_mid_relocation += 1;
                    }
                    if keep {
                        recovered += 1;
                        t.recovered_commits += 1;
                        match catch_unwind(AssertUnwindSafe(|| {
                            continue_after_recovery(img.bytes.clone(), (seq, cands[i].1), &keys)
                        })) {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => t.failures.push(format!("{}: {e}", ctx())),
                            Err(p) => t.failures.push(format!(
                                "{}: panic after recovery: {}",
                                ctx(),
                                panic_message(&*p)
                            )),
                        }
                    }
                    if nested {
                        let st = cands[i].1;
                        let more = gen_ops(
                            seed.wrapping_mul(1000) + n,
                            NESTED_OPS,
                            st,
                            &keys,
                            relocating(seed),
                        );
                        let start = Start::Image(Arc::new(img.bytes), seq, st.clone(), keys);
                        sweep(
                            &format!("{} then", ctx()),
                            seed,
                            &start,
                            &more,
                            t,
                            depth + 1,
                        );
                    }
                }
                Ok(Err(e)) => t.failures.push(format!("{}: {e}", ctx())),
                Err(p) => t
                    .failures
                    .push(format!("{}: panic: {}", ctx(), panic_message(&*p))),
            }
        }
        if own_archive {
            t.check_nonces(&format!("{label}, crash at backend op {n}"), played.archive);
        }
    }
}

const SEEDS: u64 = 40;
const OPS_PER_SEED: usize = 24;
/// One in this many crash images of a crash inside a commit gets a sweep of
/// its own after recovery, of this many ops (plus a final commit).
const NESTED_ONE_IN: u64 = 8;
const NESTED_OPS: usize = 5;

fn run_part(part: u64, parts: u64) {
    let started = Instant::now();
    let mut t = Tally {
        nonces: Some(lockbox::testing::start_recording()),
        ..Tally::default()
    };
    for seed in (0..SEEDS).filter(|s| s % parts == part) {
        run_seed(seed, OPS_PER_SEED, &mut t);
    }
    let images: u64 = t.images.values().sum();
    println!(
        "[crash] part {part}/{parts}: {} sequences, {} crash points + {} in sequences after a \
         recovery ({} of them inside the reopen; {} inside commits, {} inside add_key/remove_key, \
         {} at a sync), {images} images {:?}; matched old {} / new {}; {} images between a \
         commit and the end of its relocation commits ({} relocation commits in the runs \
         without a crash); {} commits after recovery; \
         {} crash points after a commit point (RedactionPending: new state only); {} replays \
         crashed in another op than the first run, {} crash points not reached; {} sealings \
         checked for a repeated (subkey, nonce) pair; {} failures; {:.1?}",
        t.sequences,
        t.crash_points,
        t.crash_points_after_recovery,
        t.crash_points_in_open,
        t.crash_points_in_commit,
        t.crash_points_in_key_ops,
        t.crash_points_at_sync,
        t.images,
        t.matched_old,
        t.matched_new,
        t.images_mid_relocation,
        t.relocations,
        t.recovered_commits,
        t.past_commit_point,
        t.moved,
        t.unreached,
        t.nonce_pairs,
        t.failures.len(),
        started.elapsed()
    );
    if !t.failures.is_empty() {
        let shown: Vec<&String> = t.failures.iter().take(40).collect();
        panic!(
            "{} crash-consistency failures (first {} shown):\n{}",
            t.failures.len(),
            shown.len(),
            shown
                .iter()
                .map(|s| format!("  - {s}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    assert!(
        t.images_mid_relocation > 0,
        "no crash image fell between a commit and the end of its relocation commits"
    );
}

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
    let be = CrashBackend::new(None);
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
        let be = CrashBackend::new(Some(n));
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
            (d.durable.clone(), pending, d.crash_op)
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
        let probe = CrashBackend::new(None);
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
        let be = CrashBackend::new(Some(before + 2));
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
        let be2 = CrashBackend::new(Some(0));
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
