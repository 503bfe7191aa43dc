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

mod common;

use common::*;
use lockbox::testing::Backend;
use lockbox::{EntryKind, Error, Lockbox};
use std::collections::BTreeMap;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

// ---------------------------------------------------------------------------
// The fault backend
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum OpKind {
    Read,
    Write,
    Sync,
    SetLen,
}

#[derive(Clone, Copy, Debug)]
struct Fault {
    kind: OpKind,
    /// 1-based: the N-th operation of `kind` fails.
    nth: u64,
    /// Every later operation of `kind` fails too.
    permanent: bool,
}

#[derive(Default)]
struct Disk {
    /// What successful syncs made permanent.
    durable: Vec<u8>,
    /// Every successful write applied.
    current: Vec<u8>,
    counts: [u64; 4],
    /// Syncs that succeeded.
    ok_syncs: u64,
    fault: Option<Fault>,
    /// Operations failed so far.
    fired: u64,
    /// The workload step during which the fault first fired.
    first_fired_in: Option<String>,
    /// The current workload step (for messages).
    step: String,
}

#[derive(Clone)]
struct FaultBackend(Arc<Mutex<Disk>>);

impl FaultBackend {
    fn new(fault: Option<Fault>) -> Self {
        FaultBackend(Arc::new(Mutex::new(Disk {
            fault,
            ..Default::default()
        })))
    }

    /// A backend holding `bytes` (all durable).
    fn with_bytes(bytes: Vec<u8>, fault: Option<Fault>) -> Self {
        FaultBackend(Arc::new(Mutex::new(Disk {
            durable: bytes.clone(),
            current: bytes,
            fault,
            ..Default::default()
        })))
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fired(&self) -> u64 {
        self.disk().fired
    }

    /// Counts an operation; fails it if the fault says so.
    fn hit(&self, d: &mut Disk, kind: OpKind) -> lockbox::Result<()> {
        let i = kind as usize;
        d.counts[i] += 1;
        let n = d.counts[i];
        if let Some(f) = d.fault
            && f.kind == kind
            && (n == f.nth || (f.permanent && n > f.nth))
        {
            d.fired += 1;
            if d.first_fired_in.is_none() {
                d.first_fired_in = Some(d.step.clone());
            }
            return Err(Error::Io(io::Error::other(format!(
                "injected fault: {kind:?} #{n}"
            ))));
        }
        Ok(())
    }
}

impl Backend for FaultBackend {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> lockbox::Result<()> {
        let mut d = self.disk();
        self.hit(&mut d, OpKind::Read)?;
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
        self.hit(&mut d, OpKind::Write)?;
        let start = offset as usize;
        let end = start + data.len();
        if d.current.len() < end {
            d.current.resize(end, 0);
        }
        d.current[start..end].copy_from_slice(data);
        Ok(())
    }

    fn sync(&self) -> lockbox::Result<()> {
        let mut d = self.disk();
        self.hit(&mut d, OpKind::Sync)?;
        d.durable = d.current.clone();
        d.ok_syncs += 1;
        Ok(())
    }

    fn len(&self) -> lockbox::Result<u64> {
        Ok(self.disk().current.len() as u64)
    }

    fn set_len(&self, len: u64) -> lockbox::Result<()> {
        let mut d = self.disk();
        self.hit(&mut d, OpKind::SetLen)?;
        d.current.resize(len as usize, 0);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------

#[derive(Clone)]
enum Step {
    Create,
    Put(String, Vec<u8>),
    PutReader(String, Vec<u8>),
    Delete(String),
    Rename(String, String),
    Symlink(String, String),
    SetVar(String, Vec<u8>),
    RemoveVar(String),
    Commit,
    Rollback,
    ReadAll,
    Reopen,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Create => write!(f, "create"),
            Step::Put(p, d) => write!(f, "put({p:?}, {} B)", d.len()),
            Step::PutReader(p, d) => write!(f, "put_reader({p:?}, {} B)", d.len()),
            Step::Delete(p) => write!(f, "delete({p:?})"),
            Step::Rename(a, b) => write!(f, "rename({a:?}, {b:?})"),
            Step::Symlink(p, t) => write!(f, "symlink({p:?}, {t:?})"),
            Step::SetVar(n, v) => write!(f, "set_var({n:?}, {} B)", v.len()),
            Step::RemoveVar(n) => write!(f, "remove_var({n:?})"),
            Step::Commit => write!(f, "commit"),
            Step::Rollback => write!(f, "rollback"),
            Step::ReadAll => write!(f, "read everything"),
            Step::Reopen => write!(f, "reopen"),
        }
    }
}

fn workload() -> Vec<Step> {
    use Step::*;
    let d = |seed: u64, len: usize| content(seed, len);
    let mut w = vec![
        Create,
        Put("docs/a.txt".into(), d(1, 50)),
        Put("docs/b.txt".into(), d(2, 3000)),
        Put("big/one.bin".into(), d(3, 200_000)),
        PutReader("big/two.bin".into(), d(4, 150_000)),
        Symlink("link".into(), "docs/a.txt".into()),
        SetVar("v".into(), d(5, 40)),
        SetVar("w".into(), d(6, 5000)),
    ];
    // enough small entries for a TOC of several 1 KiB nodes
    for i in 0..24 {
        w.push(Put(
            format!("many/f{i:02}"),
            d(100 + i, 20 + 37 * i as usize),
        ));
    }
    w.extend([
        Commit,
        ReadAll,
        Put("tmp/x".into(), d(7, 70_000)),
        Rollback,
        Put("docs/c.txt".into(), d(8, 8000)),
        Put("docs/a.txt".into(), d(9, 100)),
        Delete("big/one.bin".into()),
        Rename("docs".into(), "papers".into()),
        Delete("many/f03".into()),
        RemoveVar("v".into()),
        Commit,
        ReadAll,
        // changes on a cold cache: their lookups and the commit read nodes
        Reopen,
        Put("after.bin".into(), d(10, 100_000)),
        Put("many/f30".into(), d(11, 700)),
        Delete("link".into()),
        SetVar("v".into(), d(12, 10)),
        Commit,
        ReadAll,
        Reopen,
        Delete("many/f10".into()),
        Rename("papers".into(), "docs2".into()),
        Commit,
        ReadAll,
    ]);
    w
}

/// 1 KiB nodes, so trees have several levels. With `relocate`, every
/// repack of a packed frame that lost members goes to relocation commits,
/// one frame each (`Builder::relocation_batch`): the workload's deletes and
/// overwrites of packed files then run several complete commits after the
/// commit itself, each with its own faults. Without, such small repacks
/// happen inside the commit (the default).
fn builder(relocate: bool) -> lockbox::Builder {
    let b = Lockbox::builder().node_capacity(1024);
    if relocate { b.relocation_batch(1) } else { b }
}

// ---------------------------------------------------------------------------
// Running it
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Poison {
    No,
    /// A read failed inside a change: the handle may refuse later changes.
    Maybe,
    /// A write, sync or set_len failed: it must refuse later changes.
    Yes,
}

struct Run {
    be: FaultBackend,
    fault: Option<Fault>,
    /// Repacks go to relocation commits (see [`builder`]).
    relocate: bool,
    /// Relocation commits run by commits that returned `Ok`.
    relocations: u64,
    lb: Option<Lockbox>,
    committed: RefState,
    staged: RefState,
    seq: u64,
    created: bool,
    poison: Poison,
    /// The last commit that returned `Ok` (sequence, state).
    last_ok: (u64, RefState),
    /// The state a failed commit was committing (it may have reached its
    /// slot before its sync failed), and the successful syncs at that time.
    inflight: Option<(u64, RefState, u64)>,
    /// Reopens that showed a commit whose `commit()` had returned Err.
    adopted_inflight: u64,
    /// Commits that returned `RedactionPending` (durable, erasing failed).
    redaction_pending: u64,
    failures: Vec<String>,
    /// Error variants returned by calls, for the report.
    errors: BTreeMap<&'static str, u64>,
    step: String,
}

impl Run {
    fn fail(&mut self, msg: String) {
        let f = match self.fault {
            Some(f) => format!(
                "{:?} #{} {}",
                f.kind,
                f.nth,
                if f.permanent { "permanent" } else { "once" }
            ),
            None => "no fault".into(),
        };
        self.failures
            .push(format!("[{f}] step {}: {msg}", self.step));
    }

    /// Runs `f` and reports whether the fault fired during it.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut Lockbox) -> lockbox::Result<T>,
    ) -> (lockbox::Result<T>, bool) {
        let before = self.be.fired();
        let lb = self.lb.as_mut().expect("handle");
        let r = f(lb);
        (r, self.be.fired() > before)
    }

    fn note_err(&mut self, e: &Error) {
        *self.errors.entry(err_name(e)).or_default() += 1;
    }

    /// Checks the outcome of a change; returns whether it took effect.
    fn change_outcome<T>(&mut self, r: lockbox::Result<T>, fired: bool, what: &str) -> Option<T> {
        self.change_outcome_or(r, fired, what, &[])
    }

    /// Like `change_outcome`, for a change that the reference says must be
    /// refused with one of `refused` (when not empty): after an earlier
    /// failure and reopen, the state the workload meets can be an older one.
    fn change_outcome_or<T>(
        &mut self,
        r: lockbox::Result<T>,
        fired: bool,
        what: &str,
        refused: &[&str],
    ) -> Option<T> {
        if let Err(e) = &r {
            self.note_err(e);
        }
        if !refused.is_empty() && self.poison != Poison::Yes {
            match &r {
                Ok(_) => self.fail(format!(
                    "{what} succeeded, the reference expects one of {refused:?}"
                )),
                Err(e) if refused.contains(&err_name(e)) => {}
                Err(Error::Poisoned) if self.poison == Poison::Maybe => self.poison = Poison::Yes,
                Err(e) if fired => {
                    if !matches!(e, Error::Io(_)) {
                        self.fail(format!(
                            "{what} failed with {e:?} under an injected I/O fault"
                        ));
                    }
                }
                Err(e) => self.fail(format!("{what} gave {e:?}, expected one of {refused:?}")),
            }
            return None;
        }
        match (self.poison, r) {
            (Poison::Yes, Ok(_)) => {
                self.fail(format!(
                    "{what} succeeded on a handle whose earlier write/sync failed"
                ));
                None
            }
            (Poison::Yes, Err(Error::Poisoned)) => None,
            (Poison::Yes, Err(e)) => {
                self.fail(format!(
                    "{what} on a poisoned handle gave {e:?}, expected Poisoned"
                ));
                None
            }
            (_, Ok(_)) if fired => {
                self.fail(format!(
                    "{what} returned Ok although a backend operation it issued failed"
                ));
                None
            }
            (_, Ok(v)) => {
                self.poison = Poison::No;
                Some(v)
            }
            (Poison::Maybe, Err(Error::Poisoned)) => {
                self.poison = Poison::Yes;
                None
            }
            (_, Err(e)) if fired => {
                if !matches!(e, Error::Io(_)) {
                    self.fail(format!(
                        "{what} failed with {e:?} under an injected I/O fault, expected Io"
                    ));
                }
                let kind = self.fault.expect("fired").kind;
                self.poison = if kind == OpKind::Read && self.poison == Poison::No {
                    Poison::Maybe
                } else {
                    Poison::Yes
                };
                None
            }
            (_, Err(e)) => {
                self.fail(format!("{what} failed without a fault: {e:?}"));
                None
            }
        }
    }

    /// Checks a read: it may fail only when the fault fired during it.
    fn read_outcome<T>(&mut self, r: lockbox::Result<T>, fired: bool, what: &str) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.note_err(&e);
                if !fired {
                    self.fail(format!("{what} failed without a fault: {e:?}"));
                } else if !matches!(e, Error::Io(_)) {
                    self.fail(format!(
                        "{what} failed with {e:?} under an injected I/O fault, expected Io"
                    ));
                }
                None
            }
        }
    }

    fn step(&mut self, step: &Step) {
        self.step = format!("{step:?}");
        self.be.disk().step = self.step.clone();
        if self.lb.is_none() && !matches!(step, Step::Create) {
            return;
        }
        match step {
            Step::Create => {
                let before = self.be.fired();
                let r = builder(self.relocate).create_on(Box::new(self.be.clone()), key());
                let fired = self.be.fired() > before;
                match r {
                    Ok(lb) if !fired => {
                        if lb.sequence() != 1 {
                            self.fail(format!("new lockbox at sequence {}", lb.sequence()));
                        }
                        self.lb = Some(lb);
                        self.created = true;
                        self.seq = 1;
                        self.last_ok = (1, RefState::default());
                    }
                    Ok(_) => self.fail("create returned Ok although a backend op failed".into()),
                    Err(e) => {
                        self.note_err(&e);
                        if !fired {
                            self.fail(format!("create failed without a fault: {e:?}"));
                        }
                    }
                }
            }
            Step::Put(p, d) => {
                let (r, fired) = self.call(|lb| lb.put(p, d));
                if self.change_outcome(r, fired, "put").is_some() {
                    self.staged
                        .entries
                        .insert(p.clone(), RefNode::File(d.clone()));
                }
            }
            Step::PutReader(p, d) => {
                let (r, fired) = self.call(|lb| lb.put_reader(p, io::Cursor::new(d)));
                if let Some(n) = self.change_outcome(r, fired, "put_reader") {
                    if n != d.len() as u64 {
                        self.fail(format!("put_reader returned {n}"));
                    }
                    self.staged
                        .entries
                        .insert(p.clone(), RefNode::File(d.clone()));
                }
            }
            Step::Delete(p) => {
                let refused: &[&str] = if self.staged.exists(p) {
                    &[]
                } else {
                    &["NotFound"]
                };
                let (r, fired) = self.call(|lb| lb.delete(p));
                if self
                    .change_outcome_or(r, fired, "delete", refused)
                    .is_some()
                {
                    for k in self.staged.subtree(p) {
                        self.staged.entries.remove(&k);
                    }
                }
            }
            Step::Rename(a, b) => {
                let refused: &[&str] = if !self.staged.exists(a) {
                    &["NotFound"]
                } else if self.staged.exists(b) {
                    &["AlreadyExists"]
                } else {
                    &[]
                };
                let (r, fired) = self.call(|lb| lb.rename(a, b));
                if self
                    .change_outcome_or(r, fired, "rename", refused)
                    .is_some()
                {
                    for k in self.staged.subtree(a) {
                        let n = self.staged.entries.remove(&k).expect("key");
                        self.staged
                            .entries
                            .insert(format!("{b}{}", &k[a.len()..]), n);
                    }
                }
            }
            Step::Symlink(p, t) => {
                let (r, fired) = self.call(|lb| lb.symlink(p, t));
                if self.change_outcome(r, fired, "symlink").is_some() {
                    self.staged
                        .entries
                        .insert(p.clone(), RefNode::Symlink(t.clone()));
                }
            }
            Step::SetVar(n, v) => {
                let (r, fired) = self.call(|lb| lb.set_var(n, v));
                if self.change_outcome(r, fired, "set_var").is_some() {
                    self.staged.vars.insert(n.clone(), v.clone());
                }
            }
            Step::RemoveVar(n) => {
                let want = self.staged.vars.contains_key(n);
                let (r, fired) = self.call(|lb| lb.remove_var(n));
                if let Some(had) = self.change_outcome(r, fired, "remove_var") {
                    if had != want {
                        self.fail(format!("remove_var returned {had}, expected {want}"));
                    }
                    self.staged.vars.remove(n);
                }
            }
            Step::Commit => {
                let changes = self.lb.as_ref().expect("handle").has_changes();
                let (r, fired) = self.call(|lb| lb.commit());
                if let Err(e @ Error::RedactionPending { sequence, source }) = &r {
                    // The commit point passed (its slot is synced), then
                    // erasing the freed space failed: the commit is durable
                    // and the handle refuses further changes.
                    self.note_err(e);
                    self.redaction_pending += 1;
                    if !fired {
                        self.fail(format!(
                            "commit returned RedactionPending without a fault: {source:?}"
                        ));
                    }
                    // the commit's own sequence, or one of its relocation
                    // commits' (the last durable one)
                    if !changes || *sequence < self.seq + 1 {
                        self.fail(format!(
                            "commit returned RedactionPending for sequence {sequence}, expected {} \
                             or later",
                            self.seq + 1
                        ));
                    }
                    if self.poison == Poison::Yes {
                        self.fail("commit ran on a poisoned handle".into());
                    }
                    self.seq = *sequence;
                    self.committed = self.staged.clone();
                    self.last_ok = (self.seq, self.committed.clone());
                    self.poison = Poison::Yes;
                    let got = self.lb.as_ref().expect("handle").sequence();
                    if got != self.seq {
                        self.fail(format!(
                            "sequence() is {got} after RedactionPending, expected {}",
                            self.seq
                        ));
                    }
                    return;
                }
                let failed = r.is_err();
                if let Some(stats) = self.change_outcome(r, fired, "commit") {
                    if changes {
                        // the commit, then its relocation commits
                        self.seq += 1 + stats.relocations;
                        self.relocations += stats.relocations;
                    }
                    if stats.sequence != self.seq {
                        self.fail(format!(
                            "CommitStats::sequence {} expected {}",
                            stats.sequence, self.seq
                        ));
                    }
                    self.committed = self.staged.clone();
                    self.last_ok = (self.seq, self.committed.clone());
                } else if failed && changes && fired {
                    let syncs = self.be.disk().ok_syncs;
                    self.inflight = Some((self.seq + 1, self.staged.clone(), syncs));
                }
                let got = self.lb.as_ref().expect("handle").sequence();
                if got != self.seq {
                    self.fail(format!(
                        "sequence() is {got} after the commit, expected {}",
                        self.seq
                    ));
                }
            }
            Step::Rollback => {
                let (_, fired) = self.call(|lb| {
                    lb.rollback();
                    Ok(())
                });
                if fired && self.fault.expect("fired").kind != OpKind::Read {
                    // rollback truncates the tail; its failure poisons silently
                    self.poison = Poison::Yes;
                }
                self.staged = self.committed.clone();
            }
            Step::ReadAll => self.read_all(),
            Step::Reopen => {
                self.lb = None;
                let before = self.be.fired();
                let r = builder(self.relocate).open_on(Box::new(self.be.clone()), key());
                let fired = self.be.fired() > before;
                match r {
                    Ok(lb) => {
                        // A commit whose final sync failed returned Err, but
                        // its slot write may be visible: its outcome is
                        // indeterminate, so a reopen may show it.
                        // (then the open may have finished its relocation
                        // commits: the same state, later sequences)
                        if let Some((s, st, _)) = &self.inflight
                            && lb.sequence() >= *s
                            && *s == self.seq + 1
                        {
                            self.seq = lb.sequence();
                            self.committed = st.clone();
                            self.adopted_inflight += 1;
                            self.inflight = None;
                        }
                        // A writable open finishes relocation commits a
                        // failure cut short: the same state, later sequences.
                        if lb.sequence() > self.seq && self.relocate {
                            self.seq = lb.sequence();
                            self.last_ok.0 = self.seq;
                        }
                        if lb.sequence() != self.seq {
                            self.fail(format!(
                                "reopen succeeded at sequence {} but the last commit that returned \
                                 Ok is {} (fault fired during open: {fired}); the durable commit \
                                 {} is silently rolled back, and the next commit from this handle \
                                 would overwrite it",
                                lb.sequence(),
                                self.seq,
                                self.seq
                            ));
                            return;
                        }
                        self.lb = Some(lb);
                        self.staged = self.committed.clone();
                        self.poison = Poison::No;
                    }
                    Err(e) => {
                        self.note_err(&e);
                        if !fired {
                            self.fail(format!("reopen failed without a fault: {e:?}"));
                        }
                    }
                }
            }
        }
    }

    /// Reads every entry and variable and compares each result with the
    /// staged reference.
    fn read_all(&mut self) {
        let st = self.staged.clone();
        for (p, node) in &st.entries {
            let (r, fired) = self.call(|lb| lb.stat(p));
            if let Some(e) = self.read_outcome(r, fired, &format!("stat({p:?})")) {
                let ok = match (&e, node) {
                    (Some(e), RefNode::File(d)) => {
                        e.kind == EntryKind::File && e.len == d.len() as u64
                    }
                    (Some(e), RefNode::Symlink(t)) => {
                        e.kind == EntryKind::Symlink && e.target.as_deref() == Some(t.as_str())
                    }
                    (Some(e), RefNode::Dir) => e.kind == EntryKind::Dir,
                    (None, _) => false,
                };
                if !ok {
                    let want = match node {
                        RefNode::File(d) => format!("file of {} bytes", d.len()),
                        n => format!("{n:?}"),
                    };
                    self.fail(format!("stat({p:?}) gave {e:?}, reference {want}"));
                }
            }
            if let RefNode::File(d) = node {
                let (r, fired) = self.call(|lb| lb.get(p));
                if let Some(got) = self.read_outcome(r, fired, &format!("get({p:?})"))
                    && &got != d
                {
                    self.fail(format!(
                        "get({p:?}) returned wrong bytes ({} vs {} bytes)",
                        got.len(),
                        d.len()
                    ));
                }
                let off = d.len() / 2;
                let mut buf = vec![0u8; 5000];
                let (r, fired) = self.call(|lb| lb.read_at(p, off as u64, &mut buf));
                if let Some(n) = self.read_outcome(r, fired, &format!("read_at({p:?}, {off})")) {
                    let want = &d[off..(off + 5000).min(d.len())];
                    if &buf[..n] != want {
                        self.fail(format!("read_at({p:?}, {off}) returned wrong bytes"));
                    }
                }
            }
        }
        let (r, fired) = self.call(|lb| {
            lb.list("")?
                .map(|e| e.map(|e| e.path))
                .collect::<lockbox::Result<Vec<String>>>()
        });
        if let Some(mut paths) = self.read_outcome(r, fired, "list(\"\")") {
            paths.sort();
            let want: Vec<String> = st.entries.keys().cloned().collect();
            if paths != want {
                self.fail(format!("list(\"\") gave {paths:?}, reference {want:?}"));
            }
        }
        let (r, fired) = self.call(|lb| {
            lb.vars()?
                .collect::<lockbox::Result<Vec<(String, Vec<u8>)>>>()
        });
        if let Some(vars) = self.read_outcome(r, fired, "vars()") {
            let got: BTreeMap<String, Vec<u8>> = vars.into_iter().collect();
            if got != st.vars {
                self.fail(format!(
                    "vars() gave {:?}, reference {:?}",
                    got.keys().collect::<Vec<_>>(),
                    st.vars.keys().collect::<Vec<_>>()
                ));
            }
        }
    }

    /// The end of the run: the durable bytes and the bytes as written.
    fn final_checks(&mut self) {
        self.step = "final checks".into();
        self.lb = None;
        let (durable, current) = {
            let d = self.be.disk();
            (d.durable.clone(), d.current.clone())
        };
        // durable: the last commit that returned Ok; a failed commit only
        // if a later sync succeeded (after a reopen showed it)
        let ok_syncs = self.be.disk().ok_syncs;
        let mut cands = vec![self.last_ok.clone()];
        if let Some((s, st, at)) = &self.inflight
            && ok_syncs > *at
        {
            cands.push((*s, st.clone()));
        }
        match catch_unwind(AssertUnwindSafe(|| {
            check_bytes(durable, &cands, self.created)
        })) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.fail(format!("durable bytes: {e}")),
            Err(p) => self.fail(format!("durable bytes: panic: {}", panic_message(&*p))),
        }
        // as written: that, or the failed commit, or what the handle saw
        if let Some((s, st, _)) = &self.inflight {
            cands.push((*s, st.clone()));
        }
        cands.push((self.seq, self.committed.clone()));
        match catch_unwind(AssertUnwindSafe(|| {
            check_bytes(current, &cands, self.created)
        })) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.fail(format!("bytes as written: {e}")),
            Err(p) => self.fail(format!("bytes as written: panic: {}", panic_message(&*p))),
        }
    }
}

/// Opens `bytes` and checks they hold one of `cands` and verify. Before
/// create returned, a typed open error is acceptable, and the only state
/// that may open is the empty first commit.
fn check_bytes(bytes: Vec<u8>, cands: &[(u64, RefState)], created: bool) -> Result<(), String> {
    let lb = match Lockbox::builder().open_bytes(bytes, key()) {
        Ok(lb) => lb,
        Err(e) if !created => {
            let _ = e;
            return Ok(());
        }
        Err(e) => return Err(format!("open failed: {e:?}")),
    };
    let empty = [(1, RefState::default())];
    let cands = if created { cands } else { &empty[..] };
    let seen = observe(&lb).map_err(|e| format!("reading failed: {e}"))?;
    // A writable open finishes relocation commits that a failure cut
    // short: the same state under a later sequence.
    let seq = lb.sequence();
    if !cands.iter().any(|(s, st)| *s <= seq && *st == seen) {
        let mut msg = format!("opened sequence {seq} with {}", seen.summary());
        for (s, st) in cands {
            msg.push_str(&format!(
                "\n      expected sequence {s}: {}\n         diff: {}",
                st.summary(),
                st.diff(&seen)
            ));
        }
        return Err(msg);
    }
    lb.verify().map_err(|e| format!("verify failed: {e:?}"))?;
    Ok(())
}

struct Outcome {
    fired: u64,
    first_fired_in: Option<String>,
    counts: [u64; 4],
    failures: Vec<String>,
    errors: BTreeMap<&'static str, u64>,
    adopted_inflight: u64,
    redaction_pending: u64,
    relocations: u64,
}

fn run(fault: Option<Fault>, steps: &[Step], relocate: bool) -> Outcome {
    let be = FaultBackend::new(fault);
    let mut r = Run {
        be: be.clone(),
        fault,
        relocate,
        relocations: 0,
        lb: None,
        committed: RefState::default(),
        staged: RefState::default(),
        seq: 0,
        created: false,
        poison: Poison::No,
        last_ok: (0, RefState::default()),
        inflight: None,
        adopted_inflight: 0,
        redaction_pending: 0,
        failures: Vec::new(),
        errors: BTreeMap::new(),
        step: String::new(),
    };
    for s in steps {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| r.step(s))) {
            r.fail(format!("panic: {}", panic_message(&*p)));
            r.lb = None;
            break;
        }
    }
    r.final_checks();
    let d = be.disk();
    Outcome {
        fired: d.fired,
        first_fired_in: d.first_fired_in.clone(),
        counts: d.counts,
        failures: r.failures,
        errors: r.errors,
        adopted_inflight: r.adopted_inflight,
        redaction_pending: r.redaction_pending,
        relocations: r.relocations,
    }
}

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
