//! The redaction marker test (requirements §3 "Deletes redact", §7 "the
//! redaction marker test"; issue #3).
//!
//! Every name and every content written to the lockbox carries fresh random
//! 16-byte markers: paths, symlink names and variable names carry them
//! hex-encoded (so they are valid names), file contents, symlink targets
//! (hex) and variable values carry them raw. Files come in every storage
//! kind: inline (≤ 128 B), packed (200 B – 20 KiB, many to a shared frame,
//! next to files that stay), and framed (> 64 KiB, several frames, markers
//! in several frames). Then they are deleted, renamed (the OLD name's
//! marker must vanish), overwritten, removed (`remove_var`) and replaced
//! (`set_var` over a variable), in various orders and across commits; put
//! and deleted again inside one uncommitted session; staged and rolled back.
//!
//! A marker is *live* when it occurs in the reference state of the last
//! commit, *dead* otherwise (everything ever staged counts). After every
//! commit (and after a rollback and a reopen):
//!   (a) no dead marker, in either form, occurs in any plaintext that
//!       `inspect()` decrypts with the master key (every reachable region,
//!       both commit slots, the redaction list), nor in any B-tree key
//!       reconstructed from a node plaintext (keys share prefixes, so a name
//!       need not appear bytewise);
//!   (b) `unreachable_nonzero` is empty: every byte of the data area that no
//!       reachable region covers is zero;
//!   (c) both commit slots decrypt to the current `sequence()`;
//!   (d) the raw file bytes contain no marker, live or dead, in either form;
//!   (e) every live marker IS found in the plaintexts, in the form it is
//!       stored in (the test is not vacuous);
//! and `verify()` passes and the visible state equals the reference.
//!
//! The crash variants cut a deleting commit right after its commit point
//! (the sync after the commit-slot write) and at every later backend
//! operation of the commit: inside its redaction and, with repacks
//! deferred (`Builder::relocation_batch`), inside each of the relocation
//! commits that repack the frames it left holding dead members. The
//! durable image, and the image with every issued write landed, must read
//! correctly read-only (frames still to repack are live), and a writable
//! open (which must finish the redaction and the relocation) must pass the
//! same checks.
//!
//! Run with `--nocapture` to see the counts.

mod support;

use lockbox::{Builder, Error, Lockbox};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;
use support::*;

const FRAME: usize = 64 * 1024;
const COMMIT_SLOTS: [u64; 2] = [12288, 16384];

// ---------------------------------------------------------------------------
// Reference and marker bookkeeping
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Node {
    File(Vec<u8>),
    Link(String),
    Dir,
}

#[derive(Clone, Default, Debug, PartialEq)]
struct Model {
    entries: BTreeMap<String, Node>,
    vars: BTreeMap<String, Vec<u8>>,
}

impl Model {
    fn subtree(&self, p: &str) -> Vec<String> {
        if p.is_empty() {
            return self.entries.keys().cloned().collect();
        }
        let pre = format!("{p}/");
        self.entries
            .keys()
            .filter(|k| k.as_str() == p || k.starts_with(&pre))
            .cloned()
            .collect()
    }

    fn files(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, n)| matches!(n, Node::File(_)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn files_where(&self, f: impl Fn(usize) -> bool) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, n)| matches!(n, Node::File(d) if f(d.len())))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn links(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, n)| matches!(n, Node::Link(_)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Directories: explicit ones and every parent of an entry.
    fn dirs(&self) -> Vec<String> {
        let mut s = std::collections::BTreeSet::new();
        for (k, n) in &self.entries {
            if matches!(n, Node::Dir) {
                s.insert(k.clone());
            }
            for (i, _) in k.match_indices('/') {
                s.insert(k[..i].to_string());
            }
        }
        s.into_iter().collect()
    }

    /// Every byte string the state holds, with how a marker is stored in
    /// it: names and targets hex, contents and values raw.
    fn texts(&self) -> Vec<&[u8]> {
        let mut v: Vec<&[u8]> = Vec::new();
        for (k, n) in &self.entries {
            v.push(k.as_bytes());
            match n {
                Node::File(d) => v.push(d),
                Node::Link(t) => v.push(t.as_bytes()),
                Node::Dir => {}
            }
        }
        for (k, d) in &self.vars {
            v.push(k.as_bytes());
            v.push(d);
        }
        v
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Size {
    Tiny,
    Small,
    Large,
}

#[derive(Clone)]
struct World {
    rng: Rng,
    markers: Vec<[u8; 16]>,
    what: Vec<String>,
    committed: Model,
    staged: Model,
    /// Operations applied, for failure messages.
    log: Vec<String>,
}

impl World {
    fn new(seed: u64) -> World {
        World {
            rng: Rng::new(seed),
            markers: Vec::new(),
            what: Vec::new(),
            committed: Model::default(),
            staged: Model::default(),
            log: Vec::new(),
        }
    }

    fn marker(&mut self, what: String) -> [u8; 16] {
        let m = self.rng.marker();
        self.markers.push(m);
        self.what.push(what);
        m
    }

    /// A name component carrying a fresh hex marker.
    fn name(&mut self, prefix: &str) -> String {
        let m = self.marker(format!("name {prefix}"));
        format!("{prefix}_{}", hex(&m))
    }

    fn size_len(&mut self, size: Size) -> usize {
        match size {
            Size::Tiny => self.rng.range(40, 129),
            Size::Small => self.rng.range(200, 20 * 1024 + 1),
            Size::Large => self.rng.range(FRAME + 4096, 300 * 1024),
        }
    }

    /// Content of `len` bytes with raw markers at random places, none
    /// straddling a frame boundary; at least one per started frame.
    fn content(&mut self, len: usize, what: &str) -> Vec<u8> {
        let mut d = self.rng.content(len);
        let frames = len.div_ceil(FRAME);
        for f in 0..frames {
            let lo = f * FRAME;
            let hi = ((f + 1) * FRAME).min(len);
            if hi - lo < 16 {
                continue;
            }
            let n = if hi - lo > 4096 { 2 } else { 1 };
            for _ in 0..n {
                let at = self.rng.range(lo, hi - 15);
                let m = self.marker(format!("content of {what} (frame {f})"));
                d[at..at + 16].copy_from_slice(&m);
            }
        }
        d
    }

    fn sized_content(&mut self, size: Size, what: &str) -> Vec<u8> {
        let len = self.size_len(size);
        self.content(len, what)
    }

    fn random_size(&mut self) -> Size {
        match self.rng.below(10) {
            0..=1 => Size::Tiny,
            2..=7 => Size::Small,
            _ => Size::Large,
        }
    }

    /// A directory for a new entry: an existing one, or a new (nested) one.
    fn some_dir(&mut self) -> String {
        let dirs: Vec<String> = self
            .staged
            .dirs()
            .into_iter()
            .filter(|d| {
                !matches!(
                    self.staged.entries.get(d),
                    Some(Node::File(_) | Node::Link(_))
                )
            })
            .collect();
        if !dirs.is_empty() && self.rng.chance(4, 5) {
            let d = self.rng.pick(&dirs).clone();
            if self.rng.chance(1, 6) && d.matches('/').count() < 2 {
                let n = self.name("s");
                return format!("{d}/{n}");
            }
            return d;
        }
        self.name("d")
    }

    // ---- operations: applied to the lockbox and the staged reference ----

    fn put(&mut self, lb: &mut Lockbox, size: Size) -> String {
        let dir = self.some_dir();
        let f = self.name("f");
        let p = format!("{dir}/{f}");
        self.put_at(lb, &p, size);
        p
    }

    fn put_at(&mut self, lb: &mut Lockbox, p: &str, size: Size) {
        let d = self.sized_content(size, p);
        if size == Size::Large && self.rng.chance(1, 3) {
            let n = lb
                .put_reader(p, &d[..])
                .unwrap_or_else(|e| panic!("put_reader({p}): {e:?}"));
            assert_eq!(n, d.len() as u64);
            self.log.push(format!("put_reader({p}, {})", d.len()));
        } else {
            lb.put(p, &d).unwrap_or_else(|e| panic!("put({p}): {e:?}"));
            self.log.push(format!("put({p}, {})", d.len()));
        }
        self.staged.entries.insert(p.to_string(), Node::File(d));
    }

    fn symlink(&mut self, lb: &mut Lockbox, at: Option<String>) -> String {
        let p = match at {
            Some(p) => p,
            None => {
                let dir = self.some_dir();
                let l = self.name("l");
                format!("{dir}/{l}")
            }
        };
        let m = self.marker(format!("target of {p}"));
        let t = format!("../t_{}/x", hex(&m));
        lb.symlink(&p, &t)
            .unwrap_or_else(|e| panic!("symlink({p}): {e:?}"));
        self.log.push(format!("symlink({p})"));
        self.staged.entries.insert(p.clone(), Node::Link(t));
        p
    }

    fn mkdir(&mut self, lb: &mut Lockbox) -> String {
        let p = self.name("e");
        lb.mkdir(&p).unwrap_or_else(|e| panic!("mkdir({p}): {e:?}"));
        self.log.push(format!("mkdir({p})"));
        self.staged.entries.insert(p.clone(), Node::Dir);
        p
    }

    fn delete(&mut self, lb: &mut Lockbox, p: &str) {
        let keys = self.staged.subtree(p);
        let n = lb
            .delete(p)
            .unwrap_or_else(|e| panic!("delete({p}): {e:?}"));
        self.log.push(format!("delete({p}) -> {n}"));
        assert_eq!(n, keys.len() as u64, "delete({p}) count");
        for k in keys {
            self.staged.entries.remove(&k);
        }
    }

    /// Renames `p` to a fresh name in a (possibly different) directory.
    fn rename(&mut self, lb: &mut Lockbox, p: &str) -> String {
        let leaf = p.rsplit('/').next().unwrap_or(p);
        let prefix = leaf.split('_').next().unwrap_or("r");
        let fresh = self.name(prefix);
        let to = if p.contains('/') && self.rng.chance(1, 2) {
            // same directory
            let parent = &p[..p.rfind('/').unwrap()];
            format!("{parent}/{fresh}")
        } else {
            // another directory, not inside the moved subtree
            let pre = format!("{p}/");
            let dirs: Vec<String> = self
                .staged
                .dirs()
                .into_iter()
                .filter(|d| d != p && !d.starts_with(&pre))
                .filter(|d| {
                    !matches!(
                        self.staged.entries.get(d),
                        Some(Node::File(_) | Node::Link(_))
                    )
                })
                .collect();
            if dirs.is_empty() || self.rng.chance(1, 3) {
                fresh
            } else {
                format!("{}/{fresh}", self.rng.pick(&dirs))
            }
        };
        lb.rename(p, &to)
            .unwrap_or_else(|e| panic!("rename({p}, {to}): {e:?}"));
        self.log.push(format!("rename({p}, {to})"));
        for k in self.staged.subtree(p) {
            let n = self.staged.entries.remove(&k).unwrap();
            self.staged
                .entries
                .insert(format!("{to}{}", &k[p.len()..]), n);
        }
        to
    }

    fn set_var(&mut self, lb: &mut Lockbox, name: Option<String>, size: Size) -> String {
        let name = name.unwrap_or_else(|| self.name("var"));
        let v = self.sized_content(size, &format!("var {name}"));
        lb.set_var(&name, &v)
            .unwrap_or_else(|e| panic!("set_var({name}): {e:?}"));
        self.log.push(format!("set_var({name}, {})", v.len()));
        self.staged.vars.insert(name.clone(), v);
        name
    }

    fn remove_var(&mut self, lb: &mut Lockbox, name: &str) {
        let had = lb
            .remove_var(name)
            .unwrap_or_else(|e| panic!("remove_var({name}): {e:?}"));
        self.log.push(format!("remove_var({name}) -> {had}"));
        assert_eq!(had, self.staged.vars.remove(name).is_some());
    }

    fn commit(&mut self, lb: &mut Lockbox) {
        lb.commit()
            .unwrap_or_else(|e| panic!("commit: {e:?}\n{}", self.tail()));
        self.log.push("commit".into());
        self.committed = self.staged.clone();
    }

    fn rollback(&mut self, lb: &mut Lockbox) {
        lb.rollback();
        self.log.push("rollback".into());
        self.staged = self.committed.clone();
    }

    fn tail(&self) -> String {
        let n = self.log.len();
        self.log[n.saturating_sub(30)..].join("\n    ")
    }

    fn pick_file(&mut self, f: impl Fn(usize) -> bool) -> Option<String> {
        let v = self.staged.files_where(f);
        (!v.is_empty()).then(|| self.rng.pick(&v).clone())
    }

    fn pick_var(&mut self) -> Option<String> {
        let v: Vec<String> = self.staged.vars.keys().cloned().collect();
        (!v.is_empty()).then(|| self.rng.pick(&v).clone())
    }

    /// One random change.
    fn random_op(&mut self, lb: &mut Lockbox) {
        match self.rng.below(100) {
            0..=24 => {
                let s = self.random_size();
                self.put(lb, s);
            }
            25..=36 => {
                if let Some(p) = self.pick_file(|_| true) {
                    let s = self.random_size();
                    self.put_at(lb, &p, s); // overwrite, maybe changing kind
                }
            }
            37..=50 => {
                if let Some(p) = self.pick_file(|_| true) {
                    self.delete(lb, &p);
                }
            }
            51..=58 => {
                let files = self.staged.files();
                if !files.is_empty() {
                    let p = self.rng.pick(&files).clone();
                    self.rename(lb, &p);
                }
            }
            59..=62 => {
                let dirs = self.staged.dirs();
                if !dirs.is_empty() {
                    let d = self.rng.pick(&dirs).clone();
                    if self.rng.chance(1, 3) {
                        self.delete(lb, &d);
                    } else {
                        self.rename(lb, &d);
                    }
                }
            }
            63..=68 => {
                let links = self.staged.links();
                if !links.is_empty() && self.rng.chance(1, 2) {
                    let l = self.rng.pick(&links).clone();
                    if self.rng.chance(1, 2) {
                        self.symlink(lb, Some(l)); // new target
                    } else {
                        self.delete(lb, &l);
                    }
                } else {
                    self.symlink(lb, None);
                }
            }
            69..=70 => {
                self.mkdir(lb);
            }
            71..=80 => {
                let s = self.random_size();
                let name = if self.rng.chance(1, 2) {
                    self.pick_var()
                } else {
                    None
                };
                self.set_var(lb, name, s);
            }
            81..=87 => {
                if let Some(n) = self.pick_var() {
                    self.remove_var(lb, &n);
                }
            }
            88..=93 => {
                // put then delete (or rename then delete) in this session
                let s = self.random_size();
                let p = self.put(lb, s);
                let p = if self.rng.chance(1, 3) {
                    self.rename(lb, &p)
                } else {
                    p
                };
                self.delete(lb, &p);
            }
            94..=96 => {
                // set then remove in this session
                let s = self.random_size();
                let n = self.set_var(lb, None, s);
                self.remove_var(lb, &n);
            }
            _ => {
                // put then overwrite in this session
                let s = self.random_size();
                let p = self.put(lb, s);
                let s2 = self.random_size();
                self.put_at(lb, &p, s2);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    checks: u64,
    commits: u64,
    dead_checked: u64,
    live_checked: u64,
    plaintext_bytes: u64,
    /// Violations of (a)–(e), in order: the test fails at the end of the
    /// run if there is any, after reporting all of them (so one broken
    /// property does not hide another).
    violations: Vec<(char, String)>,
}

impl Tally {
    fn fail(&mut self, what: char, msg: String) {
        self.violations.push((what, msg));
    }

    /// Panics with every violation found (the first ones in full).
    fn finish(&self, label: &str) {
        if self.violations.is_empty() {
            return;
        }
        let mut by: BTreeMap<char, usize> = BTreeMap::new();
        for (c, _) in &self.violations {
            *by.entry(*c).or_default() += 1;
        }
        let mut firsts = String::new();
        let mut shown: BTreeMap<char, usize> = BTreeMap::new();
        for (c, m) in &self.violations {
            let n = shown.entry(*c).or_default();
            if *n < 2 {
                firsts.push_str(&format!("\n--- ({c}) ---\n{m}\n"));
            }
            *n += 1;
        }
        panic!(
            "[{label}] redaction properties violated at {} of {} checks; violations by property: {by:?}\n{firsts}",
            self.violations.len(),
            self.checks
        );
    }
}

/// Checks (a)–(e), `verify()` and the visible state against `w.committed`.
/// `raw` is the whole file as stored. `verify()`/`inspect()` errors and a
/// state differing from the reference panic at once; (a)–(e) violations are
/// recorded in `t` (see [`Tally::finish`]).
fn check(lb: &Lockbox, w: &World, raw: &[u8], label: &str, t: &mut Tally) {
    let ctx = || format!("[{label}] last ops:\n    {}", w.tail());
    let scanner = Scanner::new(&w.markers);

    // live markers: those the committed reference holds, by form
    let mut live: HashSet<(usize, Form)> = HashSet::new();
    for text in w.committed.texts() {
        scanner.scan(text, &mut live);
    }
    let live_ids: HashSet<usize> = live.iter().map(|(m, _)| *m).collect();

    if let Err(e) = lb.verify() {
        panic!("verify() failed: {e:?}\n{}", ctx());
    }
    let insp = lb
        .inspect()
        .unwrap_or_else(|e| panic!("inspect() failed: {e:?}\n{}", ctx()));

    // (a) and (e): scan every plaintext, and every reconstructed node key
    let mut found: HashSet<(usize, Form)> = HashSet::new();
    let mut where_found: BTreeMap<usize, String> = BTreeMap::new();
    for (i, pt) in insp.plaintexts.iter().enumerate() {
        t.plaintext_bytes += pt.len() as u64;
        let mut here = HashSet::new();
        scanner.scan(pt, &mut here);
        if let Some(keys) = node_keys(pt) {
            for k in keys {
                scanner.scan(&k, &mut here);
            }
        }
        for &(m, _) in &here {
            where_found
                .entry(m)
                .or_insert_with(|| format!("plaintext #{i} ({} bytes)", pt.len()));
        }
        found.extend(here);
    }
    let dead_found: Vec<String> = found
        .iter()
        .filter(|(m, _)| !live_ids.contains(m))
        .map(|&(m, f)| {
            format!(
                "{} ({f:?}, marker {}) in {}",
                w.what[m],
                hex(&w.markers[m]),
                where_found[&m]
            )
        })
        .collect();
    if !dead_found.is_empty() {
        t.fail(
            'a',
            format!(
                "(a) {} dead marker(s) still decrypt from the file: {:#?}\n{}",
                dead_found.len(),
                &dead_found[..dead_found.len().min(12)],
                ctx()
            ),
        );
    }
    let missing: Vec<String> = live
        .iter()
        .filter(|x| !found.contains(x))
        .map(|&(m, f)| format!("{} ({f:?})", w.what[m]))
        .collect();
    if !missing.is_empty() {
        t.fail(
            'e',
            format!(
                "(e) {} live marker(s) not found in the plaintexts (inspect() misses \
                 reachable data?): {:#?}\n{}",
                missing.len(),
                &missing[..missing.len().min(12)],
                ctx()
            ),
        );
    }

    // (b)
    if !insp.unreachable_nonzero.is_empty() {
        t.fail(
            'b',
            format!(
                "(b) unreachable non-zero bytes at {:?} (file_len {}, data_end {})\n{}",
                &insp.unreachable_nonzero[..insp.unreachable_nonzero.len().min(10)],
                insp.file_len,
                insp.data_end,
                ctx()
            ),
        );
    }
    // (c)
    let seq = lb.sequence();
    if insp.slot_sequences != [Some(seq), Some(seq)] {
        t.fail(
            'c',
            format!(
                "(c) commit slots hold {:?}, both must hold sequence {seq}\n{}",
                insp.slot_sequences,
                ctx()
            ),
        );
    }
    // (d)
    assert_eq!(
        raw.len() as u64,
        insp.file_len,
        "raw bytes and inspect() disagree on the file length\n{}",
        ctx()
    );
    let in_raw = scanner.find_offsets(raw);
    if !in_raw.is_empty() {
        t.fail(
            'd',
            format!(
                "(d) marker(s) in the raw file bytes: {:?}\n{}",
                in_raw
                    .iter()
                    .take(10)
                    .map(|&(o, m, f)| format!("{} ({f:?}) at byte {o}", w.what[m]))
                    .collect::<Vec<_>>(),
                ctx()
            ),
        );
    }

    // the visible state is the reference (so "live" means what we think)
    check_state(lb, &w.committed, &ctx());

    t.checks += 1;
    t.dead_checked += (w.markers.len() - live_ids.len()) as u64;
    t.live_checked += live_ids.len() as u64;
}

fn check_state(lb: &Lockbox, m: &Model, ctx: &str) {
    let s = snapshot(lb);
    let mut want_paths: Vec<&String> = m.entries.keys().collect();
    want_paths.sort();
    let mut got_paths: Vec<&String> = s.entries.iter().map(|e| &e.path).collect();
    got_paths.sort();
    assert_eq!(got_paths, want_paths, "listed paths differ\n{ctx}");
    for e in &s.entries {
        match &m.entries[&e.path] {
            Node::File(d) => assert!(
                s.files.get(&e.path) == Some(d),
                "{}: content differs from the reference\n{ctx}",
                e.path
            ),
            Node::Link(t) => assert_eq!(e.target.as_ref(), Some(t), "{}: target\n{ctx}", e.path),
            Node::Dir => assert_eq!(e.kind, lockbox::EntryKind::Dir, "{}\n{ctx}", e.path),
        }
    }
    assert_eq!(s.vars, m.vars, "variables differ\n{ctx}");
}

// ---------------------------------------------------------------------------
// Where the lockbox lives
// ---------------------------------------------------------------------------

enum Place {
    File(#[allow(dead_code)] tempfile::TempDir, PathBuf),
    Memory,
}

struct Subject {
    place: Place,
    builder: Builder,
    lb: Option<Lockbox>,
}

impl Subject {
    fn new(file: bool, builder: Builder) -> Subject {
        if file {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("redact.lbox");
            let lb = builder.clone().create(&path, raw_key(7)).unwrap();
            Subject {
                place: Place::File(dir, path),
                builder,
                lb: Some(lb),
            }
        } else {
            let lb = builder.clone().create_in_memory(raw_key(7)).unwrap();
            Subject {
                place: Place::Memory,
                builder,
                lb: Some(lb),
            }
        }
    }

    fn lb(&mut self) -> &mut Lockbox {
        self.lb.as_mut().unwrap()
    }

    fn raw(&self) -> Vec<u8> {
        match &self.place {
            Place::File(_, p) => std::fs::read(p).unwrap(),
            Place::Memory => {
                // image() is the committed bytes: the whole store after a
                // commit trims the file (checked against file_len).
                self.lb.as_ref().unwrap().image().unwrap()
            }
        }
    }

    fn reopen(&mut self) {
        let lb = self.lb.take().unwrap();
        let b = self.builder.clone();
        self.lb = Some(match &self.place {
            Place::File(_, p) => {
                drop(lb);
                b.open(p, raw_key(7)).unwrap()
            }
            Place::Memory => {
                let img = lb.image().unwrap();
                drop(lb);
                b.open_bytes(img, raw_key(7)).unwrap()
            }
        });
    }

    fn check(&mut self, w: &World, label: &str, t: &mut Tally) {
        let raw = self.raw();
        check(self.lb.as_ref().unwrap(), w, &raw, label, t);
    }
}

// ---------------------------------------------------------------------------
// The scripted and random workload
// ---------------------------------------------------------------------------

/// Builds the first commit: every storage kind, shared packs, symlinks,
/// variables of every size, an explicit directory.
fn populate(w: &mut World, lb: &mut Lockbox) {
    let da = w.name("d");
    let db = w.name("d");
    let sub = w.name("s");
    let dirs = [da.clone(), db.clone(), format!("{da}/{sub}")];
    for i in 0..36 {
        let d = dirs[i % 3].clone();
        let f = w.name("f");
        w.put_at(lb, &format!("{d}/{f}"), Size::Small);
    }
    for i in 0..6 {
        let d = dirs[i % 3].clone();
        let f = w.name("f");
        w.put_at(lb, &format!("{d}/{f}"), Size::Tiny);
    }
    for i in 0..5 {
        let d = dirs[i % 3].clone();
        let f = w.name("f");
        w.put_at(lb, &format!("{d}/{f}"), Size::Large);
    }
    for i in 0..5 {
        let d = dirs[i % 3].clone();
        let l = w.name("l");
        w.symlink(lb, Some(format!("{d}/{l}")));
    }
    w.mkdir(lb);
    for s in [
        Size::Tiny,
        Size::Tiny,
        Size::Tiny,
        Size::Small,
        Size::Small,
        Size::Small,
        Size::Large,
        Size::Large,
    ] {
        w.set_var(lb, None, s);
    }
}

/// Every kind of removal of committed data, in one commit.
fn remove_some(w: &mut World, lb: &mut Lockbox) {
    let small = w.staged.files_where(|l| (200..=20 * 1024).contains(&l));
    // a third of the small (packed) files: their packs keep other members
    for p in small.iter().step_by(3) {
        w.delete(lb, p);
    }
    // overwrite some, rename some (old names must vanish)
    for p in small.iter().skip(1).step_by(6) {
        w.put_at(lb, p, Size::Small);
    }
    for p in small.iter().skip(2).step_by(6) {
        w.rename(lb, p);
    }
    let large = w.staged.files_where(|l| l > FRAME);
    w.delete(lb, &large[0]);
    w.put_at(lb, &large[1], Size::Large);
    w.rename(lb, &large[2]);
    w.put_at(lb, &large[3], Size::Small); // framed -> packed
    let tiny = w.staged.files_where(|l| l <= 128);
    w.delete(lb, &tiny[0]);
    w.rename(lb, &tiny[1]);
    let links = w.staged.links();
    w.delete(lb, &links[0]);
    w.symlink(lb, Some(links[1].clone()));
    w.rename(lb, &links[2]);
    let explicit: Vec<String> = w
        .staged
        .entries
        .iter()
        .filter(|(_, n)| matches!(n, Node::Dir))
        .map(|(k, _)| k.clone())
        .collect();
    w.rename(lb, &explicit[0]);
    // variables: remove, and replace moving between storage kinds
    let vars: Vec<(String, usize)> = w
        .staged
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), v.len()))
        .collect();
    let by = |lo: usize, hi: usize| -> Vec<String> {
        vars.iter()
            .filter(|(_, l)| (lo..=hi).contains(l))
            .map(|(k, _)| k.clone())
            .collect()
    };
    let (tv, sv, lv) = (by(0, 128), by(129, 20 * 1024), by(FRAME, usize::MAX));
    w.remove_var(lb, &tv[0]);
    w.remove_var(lb, &sv[0]);
    w.remove_var(lb, &lv[0]);
    w.set_var(lb, Some(tv[1].clone()), Size::Small);
    w.set_var(lb, Some(sv[1].clone()), Size::Large);
    w.set_var(lb, Some(lv[1].clone()), Size::Tiny);
    w.set_var(lb, Some(tv[2].clone()), Size::Tiny);
    w.set_var(lb, Some(sv[2].clone()), Size::Small);
}

/// Changes undone inside one session: nothing of them may reach the file.
fn session_churn(w: &mut World, lb: &mut Lockbox) {
    let d = w.name("d");
    let mut fresh = Vec::new();
    // more than one pack's worth, so the first pack is written mid-session
    for _ in 0..14 {
        let f = w.name("f");
        let p = format!("{d}/{f}");
        w.put_at(lb, &p, Size::Small);
        fresh.push(p);
    }
    for p in fresh.iter().step_by(2) {
        w.delete(lb, p);
    }
    // renamed then deleted
    let p = w.rename(lb, &fresh[1]);
    w.delete(lb, &p);
    // large put then deleted; large put then overwritten by a small one
    let p = w.put(lb, Size::Large);
    w.delete(lb, &p);
    let p = w.put(lb, Size::Large);
    w.put_at(lb, &p, Size::Small);
    // small put then overwritten twice
    let p = w.put(lb, Size::Small);
    w.put_at(lb, &p, Size::Small);
    w.put_at(lb, &p, Size::Tiny);
    // overwrite a committed file twice in the session
    if let Some(p) = w.pick_file(|l| l > 128) {
        w.put_at(lb, &p, Size::Large);
        w.put_at(lb, &p, Size::Small);
    }
    // variables set and removed, set twice
    let n = w.set_var(lb, None, Size::Small);
    w.remove_var(lb, &n);
    let n = w.set_var(lb, None, Size::Large);
    w.remove_var(lb, &n);
    let n = w.set_var(lb, None, Size::Small);
    w.set_var(lb, Some(n), Size::Tiny);
    // a symlink created and deleted
    let l = w.symlink(lb, None);
    w.delete(lb, &l);
}

fn staged_then_rolled_back(w: &mut World, lb: &mut Lockbox) {
    for _ in 0..6 {
        w.put(lb, Size::Small);
    }
    w.put(lb, Size::Large);
    w.put(lb, Size::Large);
    w.set_var(lb, None, Size::Small);
    w.symlink(lb, None);
    if let Some(p) = w.pick_file(|_| true) {
        w.delete(lb, &p);
    }
    if let Some(p) = w.pick_file(|_| true) {
        w.rename(lb, &p);
    }
    if let Some(n) = w.pick_var() {
        w.set_var(lb, Some(n), Size::Small);
    }
    w.rollback(lb);
}

fn run_scenario(label: &str, seed: u64, file: bool, builder: Builder, rounds: usize) {
    let started = Instant::now();
    let mut t = Tally::default();
    let mut w = World::new(seed);
    let mut s = Subject::new(file, builder);

    populate(&mut w, s.lb());
    w.commit(s.lb());
    t.commits += 1;
    s.check(&w, &format!("{label}: first commit"), &mut t);

    remove_some(&mut w, s.lb());
    w.commit(s.lb());
    t.commits += 1;
    s.check(&w, &format!("{label}: removals"), &mut t);

    session_churn(&mut w, s.lb());
    w.commit(s.lb());
    t.commits += 1;
    s.check(&w, &format!("{label}: session churn"), &mut t);

    staged_then_rolled_back(&mut w, s.lb());
    s.check(&w, &format!("{label}: after rollback"), &mut t);

    // a whole directory subtree
    let dirs = w.committed.dirs();
    let top = dirs.iter().find(|d| !d.contains('/')).unwrap().clone();
    w.delete(s.lb(), &top);
    w.commit(s.lb());
    t.commits += 1;
    s.check(&w, &format!("{label}: directory deleted"), &mut t);

    s.reopen();
    s.check(&w, &format!("{label}: reopened"), &mut t);

    for round in 0..rounds {
        if round % 4 == 3 {
            for _ in 0..w.rng.range(2, 8) {
                w.random_op(s.lb());
            }
            w.rollback(s.lb());
            s.check(&w, &format!("{label}: round {round} rollback"), &mut t);
        }
        for _ in 0..w.rng.range(4, 16) {
            w.random_op(s.lb());
        }
        w.commit(s.lb());
        t.commits += 1;
        s.check(&w, &format!("{label}: round {round}"), &mut t);
        if round % 3 == 2 {
            s.reopen();
            s.check(&w, &format!("{label}: round {round} reopened"), &mut t);
        }
    }

    // everything goes
    w.delete(s.lb(), "");
    for n in w.staged.vars.keys().cloned().collect::<Vec<_>>() {
        w.remove_var(s.lb(), &n);
    }
    w.commit(s.lb());
    t.commits += 1;
    s.check(&w, &format!("{label}: everything deleted"), &mut t);

    // One more commit: the space the last one freed (pending in its
    // redaction list, so not checked by inspect() yet) becomes free space,
    // which must be all zeros.
    w.set_var(s.lb(), None, Size::Tiny);
    w.commit(s.lb());
    t.commits += 1;
    s.check(&w, &format!("{label}: one more commit"), &mut t);
    s.reopen();
    s.check(&w, &format!("{label}: final reopen"), &mut t);

    eprintln!(
        "[redaction] {label}: {} markers written, {} commits, {} checks; \
         {} dead-marker and {} live-marker checks; {:.1} MiB of plaintext scanned; \
         {} violation(s); {:.1?}",
        w.markers.len(),
        t.commits,
        t.checks,
        t.dead_checked,
        t.live_checked,
        t.plaintext_bytes as f64 / (1 << 20) as f64,
        t.violations.len(),
        started.elapsed()
    );
    t.finish(label);
}

#[test]
fn redaction_markers_file() {
    run_scenario("file", test_seed(0xA11CE), true, Lockbox::builder(), 40);
}

#[test]
fn redaction_markers_memory_small_nodes() {
    // 1 KiB nodes: deep trees, splits and merges supersede many nodes.
    // Every repack goes to relocation commits, one frame each, so the
    // checks after each commit cover what they leave behind.
    run_scenario(
        "memory, 1 KiB nodes, relocation commits",
        test_seed(0xB0B),
        false,
        Lockbox::builder().node_capacity(1024).relocation_batch(1),
        40,
    );
}

// ---------------------------------------------------------------------------
// Crash right after the commit point, and inside redaction
// ---------------------------------------------------------------------------

/// Index (in `log`) of the sync that makes the commit slot durable: the
/// first sync after the first write to a commit slot.
fn commit_point(log: &[OpRec]) -> Option<usize> {
    let slot = log
        .iter()
        .position(|o| matches!(o, OpRec::Write { off, .. } if COMMIT_SLOTS.contains(off)))?;
    (slot + 1..log.len()).find(|&i| log[i] == OpRec::Sync)
}

/// Checks a crash image from after the commit point, before it opens
/// writable: read-only, it shows exactly the new state (whether or not the
/// relocation commits finished: the frames they had yet to repack are
/// still live and read correctly), verifies, and its raw bytes hold no
/// marker. Returns how many frames it had left to repack.
fn check_read_only(img: &[u8], w: &World, new_seq: u64, label: &str, t: &mut Tally) -> u64 {
    let ro = Lockbox::builder()
        .read_only(true)
        .open_bytes(img.to_vec(), raw_key(7))
        .unwrap_or_else(|e| panic!("[{label}] read-only open of the crash image: {e:?}"));
    assert!(
        ro.sequence() >= new_seq,
        "[{label}] the crash came after the commit point: the new commit (or one of its \
         relocation commits) must open, got sequence {} < {new_seq}",
        ro.sequence()
    );
    let report = ro
        .verify()
        .unwrap_or_else(|e| panic!("[{label}] read-only verify of the crash image: {e:?}"));
    check_state(&ro, &w.committed, &format!("[{label}] read-only"));
    if !Scanner::new(&w.markers).find_offsets(img).is_empty() {
        t.fail(
            'd',
            format!("(d) [{label}] marker in the raw crash image before recovery"),
        );
    }
    report.repack_pending
}

/// Checks a crash image: it opens writable (finishing the redaction and
/// any relocation commits a crash cut short) as the new commit, or a
/// relocation commit after it (the same content), and passes (a)–(e).
fn check_recovered(img: Vec<u8>, w: &World, new_seq: u64, label: &str, t: &mut Tally) {
    let mut lb = Lockbox::builder()
        .open_bytes(img, raw_key(7))
        .unwrap_or_else(|e| panic!("[{label}] writable open of the crash image: {e:?}"));
    assert!(
        lb.sequence() >= new_seq,
        "[{label}] the crash came after the commit point: the new commit must open, got \
         sequence {} < {new_seq}",
        lb.sequence()
    );
    assert_eq!(
        lb.verify().unwrap().repack_pending,
        0,
        "[{label}] a writable open left frames to repack"
    );
    let raw = lb.image().unwrap();
    check(&lb, w, &raw, label, t);
    // and it goes on working: another deleting commit redacts normally
    let mut w2 = w.clone();
    if let Some(p) = w2.pick_file(|_| true) {
        w2.delete(&mut lb, &p);
    }
    w2.set_var(&mut lb, None, Size::Small);
    w2.commit(&mut lb);
    let raw = lb.image().unwrap();
    check(&lb, &w2, &raw, &format!("{label}, next commit"), t);
}

/// A deleting commit cut right after its commit point and at every later
/// backend operation: inside its redaction and, with `defer`
/// (`Builder::relocation_batch(1)`: every repack goes to relocation
/// commits, one frame each), inside every relocation commit that follows. Each image reads
/// correctly read-only, and a writable open finishes the redaction and the
/// relocation: no dead marker is left anywhere.
fn crash_past_commit_point(defer: bool) {
    let started = Instant::now();
    let mut t = Tally::default();
    let seed = test_seed(0xC4A5);
    let what = if defer { "deferred repack" } else { "default" };

    // The starting image: one populated commit, then one more, all durable.
    let mut w0 = World::new(seed);
    let be = RecBackend::new();
    let mut lb = Lockbox::builder()
        .create_on(Box::new(be.clone()), raw_key(7))
        .unwrap();
    populate(&mut w0, &mut lb);
    w0.commit(&mut lb);
    session_churn(&mut w0, &mut lb);
    w0.commit(&mut lb);
    let old_seq = lb.sequence();
    drop(lb);
    let base = be.durable();

    // The commit to cut: deletes, renames, overwrites, variable removals.
    let run = |fail_at: Option<u64>| -> (
        World,
        RecBackend,
        u64,
        lockbox::Result<lockbox::CommitStats>,
    ) {
        let be = RecBackend::from_bytes(base.clone());
        let mut b = Lockbox::builder();
        if defer {
            b = b.relocation_batch(1);
        }
        let mut lb = b.open_on(Box::new(be.clone()), raw_key(7)).unwrap();
        let mut w = w0.clone();
        remove_some(&mut w, &mut lb);
        let start = be.ops();
        be.fail_from(fail_at.map(|n| start + n));
        let r = lb.commit();
        if r.is_ok() {
            w.committed = w.staged.clone();
        }
        w.log.push("commit (cut)".into());
        drop(lb);
        (w, be, start, r)
    };

    // Dry run: count the commit's operations and find its commit point.
    let (w_new, be_dry, start, r) = run(None);
    let stats = r.expect("uncut commit");
    let log = be_dry.log_from(start);
    let cp = commit_point(&log).expect("a commit-slot write followed by a sync");
    let total = log.len();
    eprintln!(
        "[redaction] crash ({what}): the deleting commit makes {total} backend ops in {} \
         relocation commit(s) after its own; commit-slot sync at op {cp}",
        stats.relocations
    );
    if defer {
        assert!(
            stats.relocations > 0,
            "with deferred repacks the deleting commit runs relocation commits"
        );
    }
    assert!(
        total > cp + 1,
        "redaction must write after the commit point (slot rewrite, zeroing, sync)"
    );
    // The uncut run itself is clean.
    {
        let lb = Lockbox::builder()
            .read_only(true)
            .open_bytes(be_dry.durable(), raw_key(7))
            .unwrap();
        assert_eq!(lb.sequence(), stats.sequence, "CommitStats::sequence");
        let raw = be_dry.durable();
        check(&lb, &w_new, &raw, "crash: uncut run", &mut t);
    }
    let new_seq = old_seq + 1;

    let mut cut_points = 0;
    let mut pending_images = 0;
    for n in (cp + 1)..total {
        let (w, be, start, r) = run(Some(n as u64));
        let log = be.log_from(start);
        assert_eq!(
            commit_point(&log[..n.min(log.len())]),
            Some(cp),
            "op count of the replay differs from the dry run: commit point moved \
             (replay log {log:?})"
        );
        match &r {
            Err(Error::RedactionPending { sequence, .. }) => assert!(
                (new_seq..=stats.sequence).contains(sequence),
                "RedactionPending for sequence {sequence}, expected {new_seq}..={}",
                stats.sequence
            ),
            other => panic!(
                "commit cut at op {n} (after the commit point, op {cp}) returned {:?}, \
                 expected RedactionPending",
                other.as_ref().map(|_| "Ok").map_err(err_kind)
            ),
        }
        let mut w = w;
        w.committed = w.staged.clone();
        let durable = be.durable();
        let current = be.current();
        if n == cp + 1 {
            // The durable image right after the commit point still needs
            // its redaction: the other slot holds the old commit. Opened
            // read-only (no redaction), that is visible.
            let ro = Lockbox::builder()
                .read_only(true)
                .open_bytes(durable.clone(), raw_key(7))
                .unwrap();
            assert_eq!(ro.sequence(), new_seq);
            let insp = ro.inspect().unwrap();
            assert_ne!(
                insp.slot_sequences,
                [Some(new_seq), Some(new_seq)],
                "right after the commit point the other slot should still hold the old commit \
                 (else this crash point tests nothing)"
            );
        }
        for (kind, img) in [
            ("durable image", durable),
            ("every issued write landed", current),
        ] {
            let label = format!("{what}: crash at commit op {n} (commit point {cp}), {kind}");
            if check_read_only(&img, &w, new_seq, &label, &mut t) > 0 {
                pending_images += 1;
            }
            check_recovered(img, &w, new_seq, &label, &mut t);
        }
        cut_points += 1;
    }
    eprintln!(
        "[redaction] crash ({what}): {cut_points} cut points after the commit point, {} images \
         checked, {pending_images} of them with frames left to repack ({} checks, {} markers, \
         {} dead-marker checks); {:.1?}",
        cut_points * 2,
        t.checks,
        w_new.markers.len(),
        t.dead_checked,
        started.elapsed()
    );
    if defer {
        assert!(
            pending_images > 0,
            "no crash image had frames left to repack: the sweep missed the relocation commits"
        );
    }
    t.finish("crash past the commit point");
}

#[test]
fn redaction_finished_after_crash_past_commit_point() {
    crash_past_commit_point(false);
}

/// The same, cutting inside the relocation commits too.
#[test]
fn redaction_finished_after_crash_inside_relocation_commits() {
    crash_past_commit_point(true);
}

// ---------------------------------------------------------------------------
// Minimal case: free space holds only zeros
// ---------------------------------------------------------------------------

/// The smallest sequence that shows a non-zero free extent: overwrite one
/// 300-byte file in four commits. Every extent in the free-space index must
/// be zeros ("the index only ever holds zeroed space", `space.rs`,
/// `storage/alloc.rs`; `inspect()` checks every byte no reachable region
/// covers). The extents a commit frees "plain" (the previous redaction list,
/// superseded free-index pages) reach the free-space index one commit later
/// without ever being zeroed.
#[test]
fn free_space_is_zeroed_after_repeated_overwrites() {
    let mut lb = Lockbox::builder().create_in_memory(raw_key(7)).unwrap();
    let mut seen = Vec::new();
    for i in 1..=6u8 {
        lb.put("a", &[i; 300]).unwrap();
        lb.commit().unwrap();
        lb.verify().unwrap();
        let insp = lb.inspect().unwrap();
        assert_eq!(insp.slot_sequences, [Some(lb.sequence()); 2]);
        seen.push((i, lb.sequence(), insp.unreachable_nonzero.clone()));
    }
    let bad: Vec<_> = seen.iter().filter(|(_, _, u)| !u.is_empty()).collect();
    assert!(
        bad.is_empty(),
        "non-zero bytes outside every reachable region after overwrite #n \
         (n, sequence, ranges): {bad:?}"
    );
}

// ---------------------------------------------------------------------------
// Crash before the commit point: the cut commit's pages are garbage
// ---------------------------------------------------------------------------

fn overlaps(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s1, e1) in a {
        for &(s2, e2) in b {
            let (s, e) = (s1.max(s2), e1.min(e2));
            if s < e {
                out.push((s, e));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A commit cut before its commit point opens as the old commit. Its pages
/// (new TOC leaves naming live entries, repacked frames holding live
/// content, new large files written while staging) were written into free
/// space and past the committed end: sealed copies of names and content
/// that nothing references. If they stay, then once those entries are
/// deleted and the deletion committed, the copies still decrypt with the
/// master key. So: recover each image (durable, and every issued write
/// landed) of a deleting commit cut at every backend operation up to its
/// commit point (the staging writes before it included), delete everything
/// and commit; then (a)–(e) must hold, and in particular none of the bytes
/// the cut commit wrote may be left non-zero outside the reachable regions
/// (property (g), reported separately).
#[test]
fn crash_before_commit_point_leaves_no_garbage() {
    let started = Instant::now();
    let mut t = Tally::default();
    let seed = test_seed(0xBEF0);
    let mut w0 = World::new(seed);
    let be = RecBackend::new();
    let mut lb = Lockbox::builder()
        .create_on(Box::new(be.clone()), raw_key(7))
        .unwrap();
    populate(&mut w0, &mut lb);
    w0.commit(&mut lb);
    session_churn(&mut w0, &mut lb);
    w0.commit(&mut lb);
    // free space for the cut commit to write into: a large file and some
    // small ones deleted, then one more commit moves them to the index
    let large = w0.staged.files_where(|l| l > FRAME);
    w0.delete(&mut lb, &large[4]);
    for p in w0
        .staged
        .files_where(|l| (200..=20 * 1024).contains(&l))
        .iter()
        .step_by(7)
    {
        w0.delete(&mut lb, p);
    }
    w0.commit(&mut lb);
    w0.set_var(&mut lb, None, Size::Tiny);
    w0.commit(&mut lb);
    let old_seq = lb.sequence();
    let free = lb.verify().unwrap().free_bytes;
    assert!(free > 100_000, "the base needs free space ({free} B)");
    drop(lb);
    let base = be.durable();

    struct Cut {
        w: World,
        be: RecBackend,
        start: u64,
        result: lockbox::Result<lockbox::CommitStats>,
    }
    let run = |fail_at: Option<u64>| -> Cut {
        let be = RecBackend::from_bytes(base.clone());
        let mut lb = Lockbox::builder()
            .open_on(Box::new(be.clone()), raw_key(7))
            .unwrap();
        let mut w = w0.clone();
        remove_some(&mut w, &mut lb);
        let start = be.ops();
        be.fail_from(fail_at.map(|n| start + n));
        let result = lb.commit();
        w.log.push("commit (cut)".into());
        drop(lb);
        Cut {
            w,
            be,
            start,
            result,
        }
    };
    let dry = run(None);
    dry.result.as_ref().expect("uncut commit");
    let log = dry.be.log_from(dry.start);
    let cp = commit_point(&log).expect("commit point");

    let mut images = 0;
    let mut garbage_images = Vec::new();
    for n in 0..=cp {
        let cut = run(Some(n as u64));
        assert!(
            cut.result.is_err(),
            "commit cut at op {n} (before the commit point {cp}) returned Ok"
        );
        // every range written since the open: staging and the cut commit
        let written: Vec<(u64, u64)> = cut
            .be
            .log_from(0)
            .iter()
            .filter_map(|o| match o {
                OpRec::Write { off, len } if *off >= 20480 => Some((*off, off + len)),
                _ => None,
            })
            .collect();
        for (kind, img) in [
            ("durable", cut.be.durable()),
            ("all writes landed", cut.be.current()),
        ] {
            let label = format!(
                "cut at commit op {n} of {} (commit point {cp}), {kind}",
                log.len()
            );
            let mut lb = Lockbox::builder()
                .open_bytes(img, raw_key(7))
                .unwrap_or_else(|e| panic!("[{label}] writable open: {e:?}"));
            let mut w = cut.w.clone();
            if lb.sequence() == old_seq {
                w.staged = w0.committed.clone();
            } else {
                // the new commit, or a relocation commit after it (the
                // same content; the open finished any that were cut)
                assert!(lb.sequence() > old_seq, "[{label}] old or new commit");
            }
            w.committed = w.staged.clone();
            // everything that was live goes
            w.delete(&mut lb, "");
            for v in w.staged.vars.keys().cloned().collect::<Vec<_>>() {
                w.remove_var(&mut lb, &v);
            }
            w.commit(&mut lb);
            let raw = lb.image().unwrap();
            check(&lb, &w, &raw, &label, &mut t);
            let insp = lb.inspect().unwrap();
            let left = overlaps(&insp.unreachable_nonzero, &written);
            if !left.is_empty() {
                let bytes: u64 = left.iter().map(|(s, e)| e - s).sum();
                garbage_images.push(format!(
                    "{label}: {bytes} B the cut commit wrote are still non-zero outside every \
                     reachable region after recovery and a committed delete-all, e.g. {:?}",
                    &left[..left.len().min(4)]
                ));
            }
            images += 1;
        }
    }
    eprintln!(
        "[redaction] crash before the commit point: {} cut points, {images} images, {} checks, \
         {} with garbage left; {:.1?}",
        cp + 1,
        t.checks,
        garbage_images.len(),
        started.elapsed()
    );
    for g in &garbage_images {
        eprintln!(
            "[redaction]   garbage left: {}",
            g.split(':').next().unwrap_or("")
        );
        t.fail('g', format!("(g) {g}"));
    }
    t.finish("crash before the commit point");
}

// ---------------------------------------------------------------------------
// Staged data abandoned by dropping the handle
// ---------------------------------------------------------------------------

/// Staged large content is written (sealed) while staging, into free space
/// or past the committed end. `rollback()` zeroes it again; dropping the
/// handle without commit or rollback abandons the same changes, so it must
/// not leave them behind either: after a reopen and the next commit, every
/// byte outside the reachable regions must be zero. (Found by the model
/// test's redaction check: a dropped handle's staged frames stay in free
/// space, sealed and decryptable, and the allocator later hands out those
/// non-zero extents.)
#[test]
fn dropping_a_handle_with_staged_data_leaves_no_trace() {
    for reuse_free_space in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drop.lbox");
        let mut w = World::new(test_seed(0xD40F));
        let mut lb = Lockbox::create(&path, raw_key(7)).unwrap();
        w.put_at(&mut lb, "keep", Size::Small);
        w.commit(&mut lb);
        if reuse_free_space {
            // free space for the staged frames to land in
            w.put_at(&mut lb, "old", Size::Large);
            w.put_at(&mut lb, "old2", Size::Large);
            w.commit(&mut lb);
            w.delete(&mut lb, "old");
            w.delete(&mut lb, "old2");
            w.commit(&mut lb);
            w.set_var(&mut lb, Some("v".into()), Size::Tiny);
            w.commit(&mut lb);
        }
        let mut t = Tally::default();
        let raw = std::fs::read(&path).unwrap();
        check(&lb, &w, &raw, "before staging", &mut t);
        let len_before = raw.len();
        // staged, never committed: sealed frames go to the file now
        w.put_at(&mut lb, "abandoned-large", Size::Large);
        w.put_at(&mut lb, "abandoned-small", Size::Small);
        w.staged = w.committed.clone(); // dropping loses the staged changes
        drop(lb);
        let staged_len = std::fs::metadata(&path).unwrap().len();

        let mut lb = Lockbox::open(&path, raw_key(7)).unwrap();
        let after_open = lb.inspect().unwrap();
        w.set_var(&mut lb, Some("v2".into()), Size::Tiny);
        w.commit(&mut lb);
        let raw = std::fs::read(&path).unwrap();
        let label = format!(
            "{} free space: file {len_before} B before staging, {staged_len} B when dropped; \
             after the reopen unreachable non-zero {:?}; then one commit",
            if reuse_free_space {
                "staged frames written into"
            } else {
                "no"
            },
            after_open.unreachable_nonzero
        );
        check(&lb, &w, &raw, &label, &mut t);
        eprintln!(
            "[redaction] drop with staged data: {label}: {} violation(s)",
            t.violations.len()
        );
        t.finish("dropped handle with staged data");
    }
}
