//! A streaming cursor over a key range of a tree: a stack of nodes from the
//! root to the current leaf, so memory is O(height), not O(entries).

use std::sync::Arc;

use super::child_index;
use crate::crypto::seal::Kind;
use crate::error::{Error, Result};
use crate::format::commit::TreeRoot;
use crate::format::node::Node;
use crate::format::ptr::Ptr;
use crate::storage::store::Store;

pub struct Cursor<'a> {
    store: &'a Store,
    kind: Kind,
    /// (node, its pointer, index of the next item to visit)
    stack: Vec<(Arc<Node>, Ptr, usize)>,
    end: Option<Vec<u8>>,
    done: bool,
    /// The last key returned: keys must come strictly ascending across
    /// leaves too (a hostile tree could break its separators).
    last: Option<Vec<u8>>,
}

impl<'a> Cursor<'a> {
    /// A cursor over keys in `[start, end)` (`end == None`: to the last key).
    pub fn new(
        store: &'a Store,
        kind: Kind,
        root: &TreeRoot,
        start: &[u8],
        end: Option<Vec<u8>>,
    ) -> Result<Cursor<'a>> {
        let mut c = Cursor {
            store,
            kind,
            stack: Vec::new(),
            end,
            done: false,
            last: None,
        };
        let Some((mut ptr, mut level)) = super::top(root)? else {
            c.done = true;
            return Ok(c);
        };
        loop {
            let node = store.read_node(kind, &ptr, level)?;
            match &*node {
                Node::Leaf(entries) => {
                    let i = entries.partition_point(|(k, _)| k.as_slice() < start);
                    c.stack.push((node.clone(), ptr, i));
                    return Ok(c);
                }
                Node::Internal { children, .. } => {
                    let i = child_index(children, start);
                    let child = children[i].1;
                    c.stack.push((node.clone(), ptr, i + 1));
                    check_child(&ptr, &child)?;
                    ptr = child;
                    level -= 1;
                }
            }
        }
    }

    /// Moves to the next entry and hands it to `f` as borrowed key and
    /// value; `None` at the end.
    fn advance<R>(&mut self, f: impl FnOnce(&[u8], &[u8]) -> R) -> Result<Option<R>> {
        loop {
            let Some((node, ptr, idx)) = self.stack.last_mut() else {
                return Ok(None);
            };
            match &**node {
                Node::Leaf(entries) => {
                    let Some((k, v)) = entries.get(*idx) else {
                        self.stack.pop();
                        continue;
                    };
                    *idx += 1;
                    if self.end.as_ref().is_some_and(|e| k >= e) {
                        return Ok(None);
                    }
                    match &mut self.last {
                        Some(l) if k <= l => {
                            return Err(Error::corrupt("tree keys out of order across nodes", 0));
                        }
                        Some(l) => {
                            l.clear();
                            l.extend_from_slice(k);
                        }
                        None => self.last = Some(k.clone()),
                    }
                    return Ok(Some(f(k, v)));
                }
                Node::Internal { children, level } => {
                    let Some((_, child)) = children.get(*idx) else {
                        self.stack.pop();
                        continue;
                    };
                    let child = *child;
                    *idx += 1;
                    check_child(ptr, &child)?;
                    let level = level - 1;
                    let n = self.store.read_node(self.kind, &child, level)?;
                    self.stack.push((n, child, 0));
                }
            }
        }
    }

    /// The next entry, handed to `f` as borrowed key and value (no copy
    /// of either unless `f` makes one); `None` at the end or after an
    /// error.
    pub fn next_with<R>(&mut self, f: impl FnOnce(&[u8], &[u8]) -> R) -> Option<Result<R>> {
        if self.done {
            return None;
        }
        match self.advance(f) {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn check_child(parent: &Ptr, child: &Ptr) -> Result<()> {
    if child.generation > parent.generation {
        return Err(Error::corrupt("child newer than its parent", child.offset));
    }
    Ok(())
}

impl Iterator for Cursor<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(|k, v| (k.to_vec(), v.to_vec()))
    }
}
