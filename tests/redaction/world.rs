//! The reference of what the lockbox holds, and the markers in it: which
//! are live and which are dead.

use super::*;

// ---------------------------------------------------------------------------
// Reference and marker bookkeeping
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    File(Vec<u8>),
    Link(String),
    Dir,
}

#[derive(Clone, Default, Debug, PartialEq)]
pub struct Model {
    pub entries: BTreeMap<String, Node>,
    pub vars: BTreeMap<String, Vec<u8>>,
}

impl Model {
    pub fn subtree(&self, p: &str) -> Vec<String> {
        crate::support::paths::subtree(&self.entries, p)
    }

    pub fn files(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, n)| matches!(n, Node::File(_)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn files_where(&self, f: impl Fn(usize) -> bool) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, n)| matches!(n, Node::File(d) if f(d.len())))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn links(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, n)| matches!(n, Node::Link(_)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Directories: explicit ones and every parent of an entry.
    pub fn dirs(&self) -> Vec<String> {
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
    pub fn texts(&self) -> Vec<&[u8]> {
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
pub enum Size {
    Tiny,
    Small,
    Large,
}

#[derive(Clone)]
pub struct World {
    pub rng: Rng,
    pub markers: Vec<[u8; 16]>,
    pub what: Vec<String>,
    pub committed: Model,
    pub staged: Model,
    /// Operations applied, for failure messages.
    pub log: Vec<String>,
}

impl World {
    pub fn new(seed: u64) -> World {
        World {
            rng: Rng::new(seed),
            markers: Vec::new(),
            what: Vec::new(),
            committed: Model::default(),
            staged: Model::default(),
            log: Vec::new(),
        }
    }

    pub fn marker(&mut self, what: String) -> [u8; 16] {
        let m = self.rng.marker();
        self.markers.push(m);
        self.what.push(what);
        m
    }

    /// A name component carrying a fresh hex marker.
    pub fn name(&mut self, prefix: &str) -> String {
        let m = self.marker(format!("name {prefix}"));
        format!("{prefix}_{}", hex(&m))
    }

    pub fn size_len(&mut self, size: Size) -> usize {
        match size {
            Size::Tiny => self.rng.range(40, 129),
            Size::Small => self.rng.range(200, 20 * 1024 + 1),
            Size::Large => self.rng.range(FRAME + 4096, 300 * 1024),
        }
    }

    /// Content of `len` bytes with raw markers at random places, none
    /// straddling a frame boundary; at least one per started frame.
    pub fn content(&mut self, len: usize, what: &str) -> Vec<u8> {
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

    pub fn sized_content(&mut self, size: Size, what: &str) -> Vec<u8> {
        let len = self.size_len(size);
        self.content(len, what)
    }

    pub fn random_size(&mut self) -> Size {
        match self.rng.below(10) {
            0..=1 => Size::Tiny,
            2..=7 => Size::Small,
            _ => Size::Large,
        }
    }

    /// A directory for a new entry: an existing one, or a new (nested) one.
    pub fn some_dir(&mut self) -> String {
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

    pub fn put(&mut self, lb: &mut Lockbox, size: Size) -> String {
        let dir = self.some_dir();
        let f = self.name("f");
        let p = format!("{dir}/{f}");
        self.put_at(lb, &p, size);
        p
    }

    pub fn put_at(&mut self, lb: &mut Lockbox, p: &str, size: Size) {
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

    pub fn symlink(&mut self, lb: &mut Lockbox, at: Option<String>) -> String {
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

    pub fn mkdir(&mut self, lb: &mut Lockbox) -> String {
        let p = self.name("e");
        lb.mkdir(&p).unwrap_or_else(|e| panic!("mkdir({p}): {e:?}"));
        self.log.push(format!("mkdir({p})"));
        self.staged.entries.insert(p.clone(), Node::Dir);
        p
    }

    pub fn delete(&mut self, lb: &mut Lockbox, p: &str) {
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
    pub fn rename(&mut self, lb: &mut Lockbox, p: &str) -> String {
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

    pub fn set_var(&mut self, lb: &mut Lockbox, name: Option<String>, size: Size) -> String {
        let name = name.unwrap_or_else(|| self.name("var"));
        let v = self.sized_content(size, &format!("var {name}"));
        lb.set_var(&name, &v)
            .unwrap_or_else(|e| panic!("set_var({name}): {e:?}"));
        self.log.push(format!("set_var({name}, {})", v.len()));
        self.staged.vars.insert(name.clone(), v);
        name
    }

    pub fn remove_var(&mut self, lb: &mut Lockbox, name: &str) {
        let had = lb
            .remove_var(name)
            .unwrap_or_else(|e| panic!("remove_var({name}): {e:?}"));
        self.log.push(format!("remove_var({name}) -> {had}"));
        assert_eq!(had, self.staged.vars.remove(name).is_some());
    }

    pub fn commit(&mut self, lb: &mut Lockbox) {
        lb.commit()
            .unwrap_or_else(|e| panic!("commit: {e:?}\n{}", self.tail()));
        self.log.push("commit".into());
        self.committed = self.staged.clone();
    }

    pub fn rollback(&mut self, lb: &mut Lockbox) {
        lb.rollback();
        self.log.push("rollback".into());
        self.staged = self.committed.clone();
    }

    pub fn tail(&self) -> String {
        let n = self.log.len();
        self.log[n.saturating_sub(30)..].join("\n    ")
    }

    pub fn pick_file(&mut self, f: impl Fn(usize) -> bool) -> Option<String> {
        let v = self.staged.files_where(f);
        (!v.is_empty()).then(|| self.rng.pick(&v).clone())
    }

    pub fn pick_var(&mut self) -> Option<String> {
        let v: Vec<String> = self.staged.vars.keys().cloned().collect();
        (!v.is_empty()).then(|| self.rng.pick(&v).clone())
    }

    /// One random change.
    pub fn random_op(&mut self, lb: &mut Lockbox) {
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
