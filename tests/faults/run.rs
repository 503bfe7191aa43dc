//! Running the workload under one fault, and checking the contract after
//! every step and at the end.

use super::*;

// ---------------------------------------------------------------------------
// Running it
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Poison {
    No,
    /// A read failed inside a change: the handle may refuse later changes.
    Maybe,
    /// A write, sync or set_len failed: it must refuse later changes.
    Yes,
}

pub struct Run {
    pub be: FaultBackend,
    pub fault: Option<Fault>,
    /// Repacks go to relocation commits (see [`builder`]).
    pub relocate: bool,
    /// Relocation commits run by commits that returned `Ok`.
    pub relocations: u64,
    pub lb: Option<Lockbox>,
    pub committed: RefState,
    pub staged: RefState,
    pub seq: u64,
    pub created: bool,
    pub poison: Poison,
    /// The last commit that returned `Ok` (sequence, state).
    pub last_ok: (u64, RefState),
    /// The state a failed commit was committing (it may have reached its
    /// slot before its sync failed), and the successful syncs at that time.
    pub inflight: Option<(u64, RefState, u64)>,
    /// Reopens that showed a commit whose `commit()` had returned Err.
    pub adopted_inflight: u64,
    /// Commits that returned `RedactionPending` (durable, erasing failed).
    pub redaction_pending: u64,
    pub failures: Vec<String>,
    /// Error variants returned by calls, for the report.
    pub errors: BTreeMap<&'static str, u64>,
    pub step: String,
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
pub fn check_bytes(bytes: Vec<u8>, cands: &[(u64, RefState)], created: bool) -> Result<(), String> {
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

pub struct Outcome {
    pub fired: u64,
    pub first_fired_in: Option<String>,
    pub counts: [u64; 4],
    pub failures: Vec<String>,
    pub errors: BTreeMap<&'static str, u64>,
    pub adopted_inflight: u64,
    pub redaction_pending: u64,
    pub relocations: u64,
}

pub fn run(fault: Option<Fault>, steps: &[Step], relocate: bool) -> Outcome {
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
