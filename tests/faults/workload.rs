//! The scripted workload the faults are injected into.

use super::*;

// ---------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------

#[derive(Clone)]
pub enum Step {
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

pub fn workload() -> Vec<Step> {
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
pub fn builder(relocate: bool) -> lockbox::Builder {
    let b = Lockbox::builder().node_capacity(1024);
    if relocate { b.relocation_batch(1) } else { b }
}
