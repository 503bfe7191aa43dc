//! The runner: applies an operation to the lockbox and to the reference,
//! and checks the whole visible state after it.

use super::*;

// ---------------------------------------------------------------------------
// Runner
// ---------------------------------------------------------------------------

pub struct Runner {
    pub h: KHarness,
    pub committed: State,
    pub staged: State,
    pub log: Vec<String>,
    pub label: String,
    pub verify_every_commit: bool,
    pub universe: Vec<String>,
    pub check_rng: XorShift,
    /// "op -> outcome" counts, to show what a run exercised.
    pub tally: BTreeMap<String, usize>,
    /// Every sealing of this run's archive (compacted copies and reopened
    /// files included: same id, same keys), checked for a repeated
    /// (subkey, nonce) pair by `check_nonces`.
    pub nonces: lockbox::testing::Recording,
    pub archive: [u8; 16],
}

impl Runner {
    pub fn new(backend: Backend, label: String, verify_every_commit: bool, seed: u64) -> Self {
        let nonces = lockbox::testing::start_recording();
        // One sequence in three leaves every repack of a packed frame
        // that lost members to relocation commits, one frame each.
        let h = KHarness::create(
            backend,
            if seed.is_multiple_of(3) {
                Lockbox::builder().relocation_batch(1)
            } else {
                Lockbox::builder()
            },
        );
        let archive = lockbox::testing::archive_id(h.lb());
        Runner {
            nonces,
            archive,
            h,
            committed: State::default(),
            staged: State::default(),
            log: Vec::new(),
            label,
            verify_every_commit,
            universe: universe(),
            check_rng: XorShift::new(seed ^ 0xC0FFEE),
            tally: BTreeMap::new(),
        }
    }

    pub fn ctx(&self) -> String {
        let tail: Vec<&String> = self
            .log
            .iter()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let mut s = format!(
            "[{} {:?}] op #{}; ops so far (last 40):\n",
            self.label,
            self.h.backend,
            self.log.len()
        );
        for l in tail {
            s.push_str("    ");
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    pub fn fail(&self, msg: String) -> ! {
        panic!("{msg}\n{}", self.ctx())
    }

    /// Asserts that no (subkey, nonce) pair of this run's archive repeats;
    /// returns how many sealings were checked (and starts a new count).
    pub fn check_nonces(&mut self) -> usize {
        match take_nonce_pairs(&self.nonces, &self.archive) {
            Ok(n) => n,
            Err(e) => self.fail(e),
        }
    }

    /// `verify()`, and the redaction invariants `inspect()` reports: both
    /// commit slots hold the current commit, and every byte outside the
    /// reachable regions is zero.
    pub fn verify(&self) {
        let lb = self.h.lb();
        if let Err(e) = lb.verify() {
            self.fail(format!("verify() failed: {e:?}"));
        }
        let insp = match lb.inspect() {
            Ok(i) => i,
            Err(e) => self.fail(format!("inspect() failed: {e:?}")),
        };
        if insp.slot_sequences != [Some(lb.sequence()); 2] {
            self.fail(format!(
                "commit slots hold {:?}, sequence {}",
                insp.slot_sequences,
                lb.sequence()
            ));
        }
        if !insp.unreachable_nonzero.is_empty() {
            self.fail(format!(
                "non-zero bytes outside every reachable region: {:?}",
                insp.unreachable_nonzero
            ));
        }
    }

    pub fn step(&mut self, op: Op) {
        self.log.push(format!("{op:?}"));
        match &op {
            Op::Commit => {
                if let Err(e) = self.h.lb_mut().commit() {
                    self.fail(format!("commit failed: {e:?}"));
                }
                self.committed = self.staged.clone();
                if self.h.lb().has_changes() {
                    self.fail("has_changes() is true right after commit".into());
                }
                if self.verify_every_commit {
                    self.verify();
                }
            }
            Op::Rollback => {
                self.h.lb_mut().rollback();
                self.staged = self.committed.clone();
                if self.h.lb().has_changes() {
                    self.fail("has_changes() is true right after rollback".into());
                }
            }
            Op::Reopen => {
                let pick = self.check_rng.next_u64();
                if let Err(e) = self.h.reopen(pick) {
                    self.fail(e);
                }
                self.staged = self.committed.clone();
                if self.h.lb().has_changes() {
                    self.fail("has_changes() is true right after reopen".into());
                }
            }
            Op::Compact => self.compact(),
            Op::AddKey(k) => self.add_key(*k),
            Op::RemoveKey(k) => self.remove_key(*k),
            _ => self.mutate(&op),
        }
        self.check();
    }

    pub fn compact(&mut self) {
        let before = self.h.lb().sequence();
        let r = self.h.lb_mut().compact();
        let outcome = match &r {
            Ok(_) => "Ok".to_string(),
            Err(e) => format!("Err({})", err_name(e)),
        };
        *self
            .tally
            .entry(format!("compact -> {outcome}"))
            .or_default() += 1;
        if let Err(e) = r {
            self.fail(format!("compact failed: {e:?}"));
        }
        // staged changes are committed first
        self.committed = self.staged.clone();
        if self.h.lb().has_changes() {
            self.fail("has_changes() is true right after compact".into());
        }
        if self.h.lb().sequence() <= before {
            self.fail(format!(
                "sequence {} after compact, {before} before",
                self.h.lb().sequence()
            ));
        }
        if self.h.lb().key_count() != self.h.slot_count() {
            self.fail(format!(
                "key_count() {} after compact, reference {:?}",
                self.h.lb().key_count(),
                self.h.slots
            ));
        }
        if self.h.backend == Backend::File {
            let dir = self.h.path.parent().unwrap();
            let names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            if names != ["test.lbox"] {
                self.fail(format!(
                    "files next to the archive after compact: {names:?}"
                ));
            }
        }
        self.verify();
    }

    pub fn key_outcome(&mut self, name: &str, r: &lockbox::Result<()>) {
        let outcome = match r {
            Ok(_) => "Ok".to_string(),
            Err(Error::LastKey) => "Err(LastKey)".to_string(),
            Err(e) => format!("Err({})", err_name(e)),
        };
        if let Some(l) = self.log.last_mut() {
            l.push_str(&format!(" -> {outcome}"));
        }
        *self
            .tally
            .entry(format!("{name} -> {outcome}"))
            .or_default() += 1;
    }

    pub fn check_key_count(&self, op: &str) {
        let got = self.h.lb().key_count();
        if got != self.h.slot_count() {
            self.fail(format!(
                "key_count() {got} after {op}, reference {} ({:?})",
                self.h.slot_count(),
                self.h.slots
            ));
        }
    }

    pub fn add_key(&mut self, k: u8) {
        let full = self.h.slot_count() >= MAX_SLOTS;
        let dup = self.h.slots.contains_key(&k);
        let r = self.h.lb_mut().add_key(raw(k));
        self.key_outcome("add_key", &r);
        match r {
            Ok(()) if full => self.fail(format!("add_key(#{k}) succeeded with {MAX_SLOTS} slots")),
            Ok(()) => {
                *self.h.slots.entry(k).or_default() += 1;
                self.h.removed.remove(&k);
            }
            Err(Error::LimitExceeded { .. }) if full => {}
            // a second slot for the same key: unspecified, either way
            Err(e) if dup && !matches!(e, Error::Io(_) | Error::Poisoned) => {}
            Err(e) => self.fail(format!("add_key(#{k}) failed: {e:?}")),
        }
        self.check_key_count("add_key");
    }

    pub fn remove_key(&mut self, k: u8) {
        let has = self.h.slots.get(&k).copied().unwrap_or(0) > 0;
        let last = self.h.slot_count() == 1;
        let r = self.h.lb_mut().remove_key(&raw(k));
        self.key_outcome("remove_key", &r);
        match (r, has, last) {
            (Ok(()), true, false) => {
                let n = self.h.slots.get_mut(&k).unwrap();
                *n -= 1;
                if *n == 0 {
                    self.h.slots.remove(&k);
                    self.h.removed.insert(k);
                }
            }
            (Err(Error::WrongKey), false, _) => {}
            (Err(Error::LastKey), true, true) => {}
            (r, _, _) => self.fail(format!(
                "remove_key(#{k}) gave {:?}; reference slots {:?}",
                r.map_err(|e| err_name(&e)),
                self.h.slots
            )),
        }
        self.check_key_count("remove_key");
    }

    pub fn mutate(&mut self, op: &Op) {
        let exp = expect(&self.staged, op);
        let lb = self.h.lb_mut();
        let got: lockbox::Result<Ret> = match op {
            Op::Put(p, d) => lb.put(p, d).map(|_| Ret::Unit),
            Op::PutReader(p, d) => lb
                .put_reader(
                    p,
                    Trickle {
                        data: d,
                        pos: 0,
                        n: d.len(),
                    },
                )
                .map(Ret::U64),
            Op::Delete(p) => lb.delete(p).map(Ret::U64),
            Op::Rename(a, b) => lb.rename(a, b).map(|_| Ret::Unit),
            Op::Symlink(p, t) => lb.symlink(p, t).map(|_| Ret::Unit),
            Op::Mkdir(p) => lb.mkdir(p).map(|_| Ret::Unit),
            Op::SetVar(n, v) => lb.set_var(n, v).map(|_| Ret::Unit),
            Op::RemoveVar(n) => lb.remove_var(n).map(Ret::Bool),
            _ => unreachable!(),
        };
        let name = format!("{op:?}");
        let name = name.split('(').next().unwrap_or("").to_string();
        let outcome = match &got {
            Ok(_) => "Ok".to_string(),
            Err(e) => format!("Err({})", err_name(e)),
        };
        *self
            .tally
            .entry(format!("{name} -> {outcome}"))
            .or_default() += 1;
        if let Some(l) = self.log.last_mut() {
            match &got {
                Ok(r) => l.push_str(&format!(" -> Ok({r:?})")),
                Err(e) => l.push_str(&format!(" -> Err({})", err_name(e))),
            }
        }
        let ok = got.is_ok();
        match (exp, got) {
            (Expect::Ok(n, want), Ok(r)) | (Expect::Either(n, want), Ok(r)) => {
                if r != want {
                    self.fail(format!("{op:?} returned {r:?}, expected {want:?}"));
                }
                self.staged = n;
            }
            (Expect::Ok(..), Err(e)) => {
                self.fail(format!("{op:?} failed with {e:?}, expected success"))
            }
            (Expect::Err(kinds), Ok(r)) => self.fail(format!(
                "{op:?} succeeded ({r:?}), expected an error {kinds:?}"
            )),
            (Expect::Err(kinds), Err(e)) => {
                if !kinds.is_empty() && !kinds.contains(&err_name(&e)) {
                    self.fail(format!(
                        "{op:?} failed with {e:?}, expected one of {kinds:?}"
                    ));
                }
            }
            (Expect::Either(..), Err(_)) | (Expect::MkdirImplicit(_), Err(_)) => {}
            (Expect::MkdirImplicit(p), Ok(r)) => {
                if r != Ret::Unit {
                    self.fail(format!("{op:?} returned {r:?}"));
                }
                // unspecified whether an explicit entry is added: observe it
                let listed = list_all(self.h.lb(), "");
                if listed.iter().any(|e| e.path == p) {
                    self.staged.entries.insert(p, Node::Dir);
                }
            }
        }
        if ok && self.staged != self.committed && !self.h.lb().has_changes() {
            self.fail(format!("has_changes() is false after {op:?} although staged state differs from the committed state"));
        }
    }

    pub fn check_entry(&self, e: &Entry, p: &str, node: &Node, what: &str) {
        if e.path != p {
            self.fail(format!("{what}: entry path {:?}, expected {p:?}", e.path));
        }
        let ok = match node {
            Node::File(d) => {
                e.kind == EntryKind::File
                    && e.len == d.len() as u64
                    && e.mode & 0o7777 == 0o644
                    && e.target.is_none()
            }
            Node::Symlink(t) => {
                e.kind == EntryKind::Symlink
                    && e.target.as_deref() == Some(t.as_str())
                    && e.len == t.len() as u64
                    && e.mode & 0o7777 == 0o777
            }
            Node::Dir => e.kind == EntryKind::Dir && e.mode & 0o7777 == 0o755,
        };
        if !ok {
            self.fail(format!(
                "{what}: entry for {p:?} is {{kind {:?}, len {}, mode {:o}, target {:?}}}, reference {node:?}",
                e.kind, e.len, e.mode, e.target
            ));
        }
        if e.mtime < 1_500_000_000 {
            self.fail(format!("{what}: implausible mtime {} for {p:?}", e.mtime));
        }
    }

    pub fn check(&mut self) {
        let lb = self.h.lb();
        let st = &self.staged;

        // list("") equals the reference, in component-wise order
        let listed = match lb.list("") {
            Ok(it) => match it.collect::<lockbox::Result<Vec<Entry>>>() {
                Ok(v) => v,
                Err(e) => self.fail(format!("list(\"\") item error: {e:?}")),
            },
            Err(e) => self.fail(format!("list(\"\") failed: {e:?}")),
        };
        let mut want: Vec<(&String, &Node)> = st.entries.iter().collect();
        want.sort_by(|a, b| cmp_paths(a.0, b.0));
        let got_paths: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
        let want_paths: Vec<&str> = want.iter().map(|(p, _)| p.as_str()).collect();
        if got_paths != want_paths {
            self.fail(format!(
                "list(\"\") paths\n     got {got_paths:?}\n    want {want_paths:?}"
            ));
        }
        for (e, (p, node)) in listed.iter().zip(&want) {
            self.check_entry(e, p, node, "list(\"\")");
        }

        // stat and get of every stored path
        for (p, node) in &st.entries {
            match lb.stat(p) {
                Ok(Some(e)) => self.check_entry(&e, p, node, "stat"),
                Ok(None) => self.fail(format!("stat({p:?}) is None, reference {node:?}")),
                Err(e) => self.fail(format!("stat({p:?}) failed: {e:?}")),
            }
            match (lb.get(p), node) {
                (Ok(d), Node::File(w)) => {
                    if &d != w {
                        self.fail(format!(
                            "get({p:?}) returned {} bytes differing from the reference ({} bytes)",
                            d.len(),
                            w.len()
                        ));
                    }
                }
                (Err(Error::NotAFile(_)), Node::Dir | Node::Symlink(_)) => {}
                (r, _) => self.fail(format!(
                    "get({p:?}) gave {:?}, reference {node:?}",
                    r.map(|d| d.len()).map_err(|e| err_name(&e))
                )),
            }
        }
        // implicit directories
        for d in st.implicit_dirs() {
            match lb.stat(&d) {
                Ok(Some(e)) if e.kind == EntryKind::Dir && e.path == d => {}
                r => self.fail(format!(
                    "stat({d:?}) of an implicit directory gave {:?}",
                    r.map(|o| o.map(|e| (e.path, e.kind)))
                        .map_err(|e| err_name(&e))
                )),
            }
            match lb.get(&d) {
                Err(Error::NotAFile(_)) => {}
                r => self.fail(format!(
                    "get({d:?}) of an implicit directory gave {:?}, expected NotAFile",
                    r.map(|v| v.len()).map_err(|e| err_name(&e))
                )),
            }
        }
        // every other path of the universe is absent
        for p in &self.universe {
            if st.kind(p).is_some() {
                continue;
            }
            let under_file = st.ancestor_not_dir(p);
            match lb.stat(p) {
                Ok(None) => {}
                Err(Error::NotADirectory(_)) if under_file => {}
                r => self.fail(format!(
                    "stat({p:?}) of a missing path gave {:?}",
                    r.map(|o| o.map(|e| (e.path, e.kind)))
                        .map_err(|e| err_name(&e))
                )),
            }
        }
        for _ in 0..6 {
            let p = self.check_rng.pick(&self.universe).clone();
            if st.kind(&p).is_some() {
                continue;
            }
            let under_file = st.ancestor_not_dir(&p);
            match lb.get(&p) {
                Err(Error::NotFound(_)) => {}
                Err(Error::NotADirectory(_)) if under_file => {}
                r => self.fail(format!(
                    "get({p:?}) of a missing path gave {:?}",
                    r.map(|v| v.len()).map_err(|e| err_name(&e))
                )),
            }
        }
        // a prefix listing
        let prefix = self.check_rng.pick(&self.universe).clone();
        let prefix = prefix.split('/').next().unwrap().to_string();
        let pre = format!("{prefix}/");
        let want_sub: Vec<&str> = want_paths
            .iter()
            .copied()
            .filter(|p| p.starts_with(&pre))
            .collect();
        match lb.list(&prefix) {
            Ok(it) => match it.collect::<lockbox::Result<Vec<Entry>>>() {
                Ok(v) => {
                    let got: Vec<&str> = v
                        .iter()
                        .map(|e| e.path.as_str())
                        .filter(|p| *p != prefix)
                        .collect();
                    if got != want_sub {
                        self.fail(format!(
                            "list({prefix:?})\n     got {got:?}\n    want {want_sub:?}"
                        ));
                    }
                    if v.iter().any(|e| e.path == prefix) && !st.entries.contains_key(&prefix) {
                        self.fail(format!(
                            "list({prefix:?}) returned the prefix, which is not stored"
                        ));
                    }
                }
                Err(e) => self.fail(format!("list({prefix:?}) item error {e:?}")),
            },
            Err(Error::NotFound(_)) if st.kind(&prefix).is_none() => {}
            Err(Error::NotADirectory(_))
                if matches!(st.kind(&prefix), Some(Kind::File | Kind::Symlink)) => {}
            Err(e) => self.fail(format!("list({prefix:?}) failed: {e:?}")),
        }

        // variables
        let vars = match lb.vars() {
            Ok(it) => match it.collect::<lockbox::Result<Vec<(String, Vec<u8>)>>>() {
                Ok(v) => v,
                Err(e) => self.fail(format!("vars() item error {e:?}")),
            },
            Err(e) => self.fail(format!("vars() failed {e:?}")),
        };
        let want_vars: Vec<(String, Vec<u8>)> = st
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if vars != want_vars {
            self.fail(format!("vars()\n     got {vars:?}\n    want {want_vars:?}"));
        }
        for n in VARS {
            match lb.var(n) {
                Ok(v) if v.as_ref() == st.vars.get(n) => {}
                r => self.fail(format!(
                    "var({n:?}) gave {r:?}, reference {:?}",
                    st.vars.get(n)
                )),
            }
        }
    }
}
