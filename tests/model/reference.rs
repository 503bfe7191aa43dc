//! The reference (committed and staged state) and the operations, with
//! the outcome the reference expects of each.

use super::*;

// ---------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    File(Vec<u8>),
    Symlink(String),
    Dir,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    File,
    Symlink,
    Dir,
}

#[derive(Clone, Default, Debug, PartialEq)]
pub struct State {
    pub entries: BTreeMap<String, Node>,
    pub vars: BTreeMap<String, Vec<u8>>,
}

pub fn ancestors(p: &str) -> impl Iterator<Item = &str> {
    p.match_indices('/').map(move |(i, _)| &p[..i])
}

impl State {
    pub fn has_children(&self, p: &str) -> bool {
        common::has_children(&self.entries, p)
    }
    pub fn kind(&self, p: &str) -> Option<Kind> {
        match self.entries.get(p) {
            Some(Node::File(_)) => Some(Kind::File),
            Some(Node::Symlink(_)) => Some(Kind::Symlink),
            Some(Node::Dir) => Some(Kind::Dir),
            None if self.has_children(p) => Some(Kind::Dir),
            None => None,
        }
    }
    pub fn ancestor_not_dir(&self, p: &str) -> bool {
        ancestors(p).any(|a| matches!(self.entries.get(a), Some(Node::File(_) | Node::Symlink(_))))
    }
    /// Stored keys at or below `p` ("" = all).
    pub fn subtree(&self, p: &str) -> Vec<String> {
        common::subtree(&self.entries, p)
    }
    pub fn implicit_dirs(&self) -> BTreeSet<String> {
        let mut s = BTreeSet::new();
        for k in self.entries.keys() {
            for a in ancestors(k) {
                if !self.entries.contains_key(a) {
                    s.insert(a.to_string());
                }
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

#[derive(Clone)]
pub enum Op {
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
    Reopen,
    Compact,
    AddKey(u8),
    RemoveKey(u8),
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put(p, d) => write!(f, "put({p:?}, {} bytes)", d.len()),
            Op::PutReader(p, d) => write!(f, "put_reader({p:?}, {} bytes)", d.len()),
            Op::Delete(p) => write!(f, "delete({p:?})"),
            Op::Rename(a, b) => write!(f, "rename({a:?}, {b:?})"),
            Op::Symlink(p, t) => write!(f, "symlink({p:?}, {t:?})"),
            Op::Mkdir(p) => write!(f, "mkdir({p:?})"),
            Op::SetVar(n, v) => write!(f, "set_var({n:?}, {} bytes)", v.len()),
            Op::RemoveVar(n) => write!(f, "remove_var({n:?})"),
            Op::Commit => write!(f, "commit()"),
            Op::Rollback => write!(f, "rollback()"),
            Op::Reopen => write!(f, "reopen"),
            Op::Compact => write!(f, "compact()"),
            Op::AddKey(k) => write!(f, "add_key(raw #{k})"),
            Op::RemoveKey(k) => write!(f, "remove_key(raw #{k})"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ret {
    Unit,
    U64(u64),
    Bool(bool),
}

pub enum Expect {
    /// Must succeed, with this return value, giving this state.
    Ok(State, Ret),
    /// Must fail with one of these errors (empty: any error); state unchanged.
    Err(Vec<&'static str>),
    /// Unspecified by the contract: either succeeds (return value and state as
    /// given) or fails leaving the state unchanged.
    Either(State, Ret),
    /// mkdir of a path that is only an implicit directory: succeeds (with or
    /// without adding an explicit entry) or fails leaving the state unchanged.
    MkdirImplicit(String),
}

pub fn expect(st: &State, op: &Op) -> Expect {
    match op {
        Op::Put(p, d) | Op::PutReader(p, d) => {
            let ret = if matches!(op, Op::Put(..)) {
                Ret::Unit
            } else {
                Ret::U64(d.len() as u64)
            };
            if st.ancestor_not_dir(p) {
                return Expect::Err(vec!["NotADirectory"]);
            }
            let mut n = st.clone();
            n.entries.insert(p.clone(), Node::File(d.clone()));
            match st.kind(p) {
                Some(Kind::Dir) => Expect::Err(vec![]),
                Some(Kind::Symlink) => Expect::Either(n, ret),
                _ => Expect::Ok(n, ret),
            }
        }
        Op::Symlink(p, t) => {
            if st.ancestor_not_dir(p) {
                return Expect::Err(vec!["NotADirectory"]);
            }
            let mut n = st.clone();
            n.entries.insert(p.clone(), Node::Symlink(t.clone()));
            match st.kind(p) {
                Some(Kind::Dir) => Expect::Err(vec![]),
                Some(_) => Expect::Either(n, Ret::Unit),
                None => Expect::Ok(n, Ret::Unit),
            }
        }
        Op::Mkdir(p) => {
            if st.ancestor_not_dir(p) {
                return Expect::Err(vec!["NotADirectory"]);
            }
            match (st.entries.get(p), st.kind(p)) {
                (Some(Node::Dir), _) => Expect::Either(st.clone(), Ret::Unit),
                (Some(_), _) => Expect::Err(vec![]),
                (None, Some(Kind::Dir)) => Expect::MkdirImplicit(p.clone()),
                _ => {
                    let mut n = st.clone();
                    n.entries.insert(p.clone(), Node::Dir);
                    Expect::Ok(n, Ret::Unit)
                }
            }
        }
        Op::Delete(p) => {
            if p.is_empty() {
                let mut n = st.clone();
                n.entries.clear();
                let count = st.entries.len() as u64;
                return if count == 0 {
                    Expect::Either(n, Ret::U64(0))
                } else {
                    Expect::Ok(n, Ret::U64(count))
                };
            }
            if st.ancestor_not_dir(p) {
                return Expect::Err(vec!["NotFound", "NotADirectory"]);
            }
            let keys = st.subtree(p);
            if keys.is_empty() {
                return Expect::Err(vec!["NotFound"]);
            }
            let mut n = st.clone();
            for k in &keys {
                n.entries.remove(k);
            }
            Expect::Ok(n, Ret::U64(keys.len() as u64))
        }
        Op::Rename(from, to) => {
            let from_exists = st.kind(from).is_some();
            if from == to {
                if from_exists {
                    return Expect::Either(st.clone(), Ret::Unit);
                }
                return Expect::Err(vec![
                    "NotFound",
                    "AlreadyExists",
                    "InvalidPath",
                    "NotADirectory",
                ]);
            }
            let mut errs = Vec::new();
            if !from_exists {
                errs.push("NotFound");
                if st.ancestor_not_dir(from) {
                    errs.push("NotADirectory");
                }
            }
            if to.starts_with(&format!("{from}/")) {
                errs.push("InvalidPath");
            }
            if st.kind(to).is_some() {
                errs.push("AlreadyExists");
            }
            if st.ancestor_not_dir(to) {
                errs.push("NotADirectory");
            }
            if !errs.is_empty() {
                return Expect::Err(errs);
            }
            let mut n = st.clone();
            for k in st.subtree(from) {
                let node = n.entries.remove(&k).unwrap();
                n.entries.insert(format!("{to}{}", &k[from.len()..]), node);
            }
            Expect::Ok(n, Ret::Unit)
        }
        Op::SetVar(name, v) => {
            let mut n = st.clone();
            n.vars.insert(name.clone(), v.clone());
            Expect::Ok(n, Ret::Unit)
        }
        Op::RemoveVar(name) => {
            let mut n = st.clone();
            let had = n.vars.remove(name).is_some();
            Expect::Ok(n, Ret::Bool(had))
        }
        Op::Commit | Op::Rollback | Op::Reopen | Op::Compact | Op::AddKey(_) | Op::RemoveKey(_) => {
            unreachable!()
        }
    }
}

/// A reader handing out small, irregular chunks.
pub struct Trickle<'a> {
    pub data: &'a [u8],
    pub pos: usize,
    pub n: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.n = self.n % 97 + 13;
        let k = buf.len().min(self.n).min(self.data.len() - self.pos);
        buf[..k].copy_from_slice(&self.data[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}
