//! The seeded operation sequences, and the reference they are checked
//! against.

use super::*;

// ---------------------------------------------------------------------------
// Operations and the reference
// ---------------------------------------------------------------------------

pub const DIRS: [&str; 3] = ["a", "b", "c/d"];
pub const NAMES: [&str; 6] = ["f0", "f1", "f2", "f3", "f4", "f5"];
pub const VARS: [&str; 3] = ["v", "v2", "alpha"];
pub const TARGETS: [&str; 4] = ["f0", "../b/f1", "/etc/hosts", "t0"];

pub fn leaves() -> Vec<String> {
    let mut v: Vec<String> = DIRS
        .iter()
        .flat_map(|d| NAMES.iter().map(move |n| format!("{d}/{n}")))
        .collect();
    v.extend(["t0", "t1", "t2"].map(String::from));
    v
}

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
    /// `add_key(extra_key(k))`: takes effect at once, apart from commits.
    AddKey(u8),
    RemoveKey(u8),
}

/// Extra raw keys that `AddKey`/`RemoveKey` add and remove (the base key,
/// `key()`, always stays).
pub const EXTRA_KEYS: [u8; 3] = [1, 2, 3];

pub fn extra_key(k: u8) -> lockbox::Key {
    lockbox::Key::raw([k; 32])
}

/// The extra keys that open a lockbox.
pub type Keys = BTreeSet<u8>;

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
pub fn apply_ref(st: &mut RefState, op: &Op) {
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
pub fn data_len(rng: &mut XorShift, packed_heavy: bool) -> usize {
    let (inline, packed) = if packed_heavy { (20, 90) } else { (45, 85) };
    match rng.below(100) {
        x if x < inline => rng.below(129) as usize, // inline (incl. empty)
        x if x < packed => rng.range(129, 12_000),  // packed
        _ => rng.range(65_537, 200_000),            // framed, several frames
    }
}

/// Contents that recur (seed, length): packed, packed and indexed (4 KiB
/// and more), framed. One put in four stores one of them, so shared bytes
/// (`data::dedup`, `data::index`) and their freeing with the last user are
/// cut by crashes too.
const RECURRING: [(u64, usize); 4] = [(11, 300), (12, 5000), (13, 9000), (14, 100_000)];

/// A put's content: one of [`RECURRING`] (one in four), or a new one of
/// [`data_len`] bytes.
fn data(rng: &mut XorShift, packed_heavy: bool) -> Vec<u8> {
    if rng.chance(1, 4) {
        let (seed, len) = *rng.pick(&RECURRING);
        return content(seed, len);
    }
    let len = data_len(rng, packed_heavy);
    content(rng.next_u64(), len)
}

/// Whether a seed's repacks go to relocation commits (see [`builder`]).
pub fn relocating(seed: u64) -> bool {
    seed % 4 < 2
}

/// A seeded sequence of changes that are all valid when applied in order
/// (so any failure without a crash is a bug), ending with a commit.
pub fn gen_ops(
    seed: u64,
    n: usize,
    from: &RefState,
    from_keys: &Keys,
    packed_heavy: bool,
) -> Vec<Op> {
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
                Op::Put(p, data(&mut rng, packed_heavy))
            }
            28..=35 => {
                let p = rng.pick(&leaves).clone();
                if matches!(st.entries.get(&p), Some(RefNode::Symlink(_))) {
                    continue;
                }
                Op::PutReader(p, data(&mut rng, packed_heavy))
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
