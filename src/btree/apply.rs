//! Copy-on-write mutation: apply a sorted batch of changes to a tree and
//! write new nodes for the touched root-to-leaf paths only. Nodes that fall
//! under a quarter of the capacity merge with a sibling; nodes over the
//! capacity split into balanced parts; the root grows and shrinks.

use std::sync::Arc;

use crate::crypto::seal::Kind;
use crate::error::{Error, Result};
use crate::format::commit::TreeRoot;
use crate::format::node::{NODE_HEADER, Node, child_entry_size, leaf_entry_size};
use crate::format::ptr::Ptr;
use crate::storage::store::Store;

/// A change: set `key` to the value, or remove it (`None`).
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// A child slot of an internal node being rebuilt.
enum Slot {
    Old(Vec<u8>, Ptr),
    Fresh(Node),
}

pub struct Applier<'a> {
    store: &'a Store,
    kind: Kind,
    generation: u64,
    capacity: usize,
    /// Regions the new tree no longer references.
    pub freed: Vec<Ptr>,
    pub pages_written: u64,
    pub bytes_written: u64,
    delta: i64,
}

impl<'a> Applier<'a> {
    pub fn new(store: &'a Store, kind: Kind, generation: u64, capacity: usize) -> Applier<'a> {
        Applier {
            store,
            kind,
            generation,
            capacity,
            freed: Vec::new(),
            pages_written: 0,
            bytes_written: 0,
            delta: 0,
        }
    }

    /// Applies `changes` (sorted by key, unique) and returns the new root.
    /// Keys and values are moved out of `changes` (left empty) into the
    /// new nodes.
    pub fn apply(&mut self, root: &TreeRoot, changes: &mut [Change]) -> Result<TreeRoot> {
        if changes.is_empty() {
            return Ok(*root);
        }
        self.delta = 0;
        let (mut nodes, mut level) = match root.root {
            None => {
                let entries: Vec<_> = changes
                    .iter_mut()
                    .filter_map(|(k, v)| v.take().map(|v| (std::mem::take(k), v)))
                    .collect();
                self.delta = entries.len() as i64;
                (self.chunk_leaf(entries), 0u8)
            }
            Some(ptr) => {
                let level = (root.height - 1) as u8;
                (self.rec(&ptr, level, changes)?, level)
            }
        };
        let count = (root.count as i64 + self.delta).max(0) as u64;
        loop {
            match nodes.len() {
                0 => return Ok(TreeRoot::default()),
                1 => {
                    let mut node = nodes
                        .pop()
                        .ok_or_else(|| Error::corrupt("empty level", 0))?;
                    // Shrink: a root with a single child is replaced by it.
                    while let Node::Internal { children, .. } = &node {
                        if children.len() != 1 {
                            break;
                        }
                        let (_, child) = children[0].clone();
                        level -= 1;
                        let n = self.store.read_node(self.kind, &child, level)?;
                        let single =
                            matches!(&*n, Node::Internal { children, .. } if children.len() == 1);
                        if !single {
                            return Ok(TreeRoot {
                                root: Some(child),
                                height: level as u32 + 1,
                                count,
                            });
                        }
                        self.freed.push(child);
                        node = (*n).clone();
                    }
                    let ptr = self.write(node)?;
                    return Ok(TreeRoot {
                        root: Some(ptr),
                        height: level as u32 + 1,
                        count,
                    });
                }
                _ => {
                    // Grow: write this level and build a parent level over it.
                    let keys: Vec<Vec<u8>> = nodes
                        .iter()
                        .map(|n| n.first_key().map(<[u8]>::to_vec).unwrap_or_default())
                        .collect();
                    let children = keys.into_iter().zip(self.write_all(nodes)?).collect();
                    level = level
                        .checked_add(1)
                        .ok_or_else(|| Error::corrupt("tree too tall", 0))?;
                    nodes = self.chunk_internal(children, level);
                }
            }
        }
    }

    /// Writes `nodes` together (see `Store::write_nodes`).
    fn write_all(&mut self, nodes: Vec<Node>) -> Result<Vec<Ptr>> {
        if nodes.len() <= 1 {
            return nodes.into_iter().map(|n| self.write(n)).collect();
        }
        let ptrs = self.store.write_nodes(
            self.kind,
            self.generation,
            nodes.into_iter().map(Arc::new).collect(),
        )?;
        self.pages_written += ptrs.len() as u64;
        self.bytes_written += ptrs.iter().map(|p| p.len as u64).sum::<u64>();
        Ok(ptrs)
    }

    fn write(&mut self, node: Node) -> Result<Ptr> {
        let ptr = self
            .store
            .write_node(self.kind, self.generation, Arc::new(node))?;
        self.pages_written += 1;
        self.bytes_written += ptr.len as u64;
        Ok(ptr)
    }

    /// Applies `changes` below `ptr` (a node at `level`); returns the
    /// replacement nodes, not yet written (zero, one or several).
    fn rec(&mut self, ptr: &Ptr, level: u8, changes: &mut [Change]) -> Result<Vec<Node>> {
        let node = self.store.read_node(self.kind, ptr, level)?;
        self.freed.push(*ptr);
        match &*node {
            Node::Leaf(entries) => {
                let merged = self.merge(entries, changes);
                Ok(self.chunk_leaf(merged))
            }
            Node::Internal { children, .. } => {
                let mut slots = Vec::with_capacity(children.len() + 2);
                let mut rest = changes;
                for (i, (key, child)) in children.iter().enumerate() {
                    if child.generation > ptr.generation {
                        return Err(Error::corrupt("child newer than its parent", child.offset));
                    }
                    let take = match children.get(i + 1) {
                        Some((next, _)) => rest.partition_point(|(k, _)| k < next),
                        None => rest.len(),
                    };
                    let (mine, after) = std::mem::take(&mut rest).split_at_mut(take);
                    rest = after;
                    if mine.is_empty() {
                        slots.push(Slot::Old(key.clone(), *child));
                    } else {
                        for n in self.rec(child, level - 1, mine)? {
                            slots.push(Slot::Fresh(n));
                        }
                    }
                }
                self.fix_underflow(&mut slots, level - 1)?;
                // In a sound tree the rebuilt children are in key order; a
                // damaged or hostile one could put a leaf's keys outside its
                // separators: refuse rather than write an unordered node.
                let firsts: Vec<Option<&[u8]>> = slots
                    .iter()
                    .map(|s| match s {
                        Slot::Old(k, _) => Some(k.as_slice()),
                        Slot::Fresh(n) => n.first_key(),
                    })
                    .collect();
                if firsts.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(Error::corrupt("child nodes out of key order", ptr.offset));
                }
                // The rebuilt children are written together.
                let mut fresh = Vec::new();
                let mut out = Vec::with_capacity(slots.len());
                for s in slots {
                    match s {
                        Slot::Old(k, p) => out.push(Some((k, p))),
                        Slot::Fresh(n) => {
                            out.push(None);
                            fresh.push(n);
                        }
                    }
                }
                let keys: Vec<Vec<u8>> = fresh
                    .iter()
                    .map(|n| n.first_key().map(<[u8]>::to_vec).unwrap_or_default())
                    .collect();
                let mut written = keys.into_iter().zip(self.write_all(fresh)?);
                let out = out
                    .into_iter()
                    .map(|o| o.or_else(|| written.next()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| Error::corrupt("internal: child not written", ptr.offset))?;
                Ok(self.chunk_internal(out, level))
            }
        }
    }

    fn merge(
        &mut self,
        entries: &[(Vec<u8>, Vec<u8>)],
        changes: &mut [Change],
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::with_capacity(entries.len() + changes.len());
        let (mut i, mut j) = (0, 0);
        while i < entries.len() || j < changes.len() {
            let take_change = match (entries.get(i), changes.get(j)) {
                (Some((ek, _)), Some((ck, _))) => match ek.cmp(ck) {
                    std::cmp::Ordering::Less => false,
                    std::cmp::Ordering::Equal => {
                        i += 1; // replaced or removed
                        self.delta -= 1;
                        true
                    }
                    std::cmp::Ordering::Greater => true,
                },
                (Some(_), None) => false,
                _ => true,
            };
            if take_change {
                let (k, v) = &mut changes[j];
                j += 1;
                if let Some(v) = v.take() {
                    out.push((std::mem::take(k), v));
                    self.delta += 1;
                }
            } else {
                out.push(entries[i].clone());
                i += 1;
            }
        }
        out
    }

    fn fix_underflow(&mut self, slots: &mut Vec<Slot>, level: u8) -> Result<()> {
        let min_fill = self.capacity / 4;
        let mut i = 0;
        while i < slots.len() {
            let small = matches!(&slots[i], Slot::Fresh(n) if n.logical_size() < min_fill);
            if !small || slots.len() < 2 {
                i += 1;
                continue;
            }
            let a = if i + 1 < slots.len() { i } else { i - 1 };
            let second = slots.remove(a + 1);
            let first = slots.remove(a);
            let (x, y) = (self.take(first, level)?, self.take(second, level)?);
            let parts = match (x, y) {
                (Node::Leaf(mut x), Node::Leaf(y)) => {
                    ordered(x.last().map(|e| &e.0), y.first().map(|e| &e.0))?;
                    x.extend(y);
                    self.chunk_leaf(x)
                }
                (
                    Node::Internal {
                        children: mut x, ..
                    },
                    Node::Internal { children: y, .. },
                ) => {
                    ordered(x.last().map(|e| &e.0), y.first().map(|e| &e.0))?;
                    x.extend(y);
                    self.chunk_internal(x, level)
                }
                _ => return Err(Error::corrupt("siblings at different levels", 0)),
            };
            let produced = parts.len();
            for (k, n) in parts.into_iter().enumerate() {
                slots.insert(a + k, Slot::Fresh(n));
            }
            // One node: it may still be small, so look at it again (the
            // slot count fell, so this ends). Several: the split is as
            // balanced as the entries allow; move past it.
            i = if produced == 1 { a } else { a + produced };
        }
        Ok(())
    }

    fn take(&mut self, slot: Slot, level: u8) -> Result<Node> {
        match slot {
            Slot::Fresh(n) => Ok(n),
            Slot::Old(_, p) => {
                self.freed.push(p);
                Ok((*self.store.read_node(self.kind, &p, level)?).clone())
            }
        }
    }

    fn chunk_leaf(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<Node> {
        let sizes: Vec<usize> = entries.iter().map(|(k, v)| leaf_entry_size(k, v)).collect();
        split(entries, &sizes, self.capacity, 1)
            .into_iter()
            .map(Node::Leaf)
            .collect()
    }

    fn chunk_internal(&self, children: Vec<(Vec<u8>, Ptr)>, level: u8) -> Vec<Node> {
        let sizes: Vec<usize> = children.iter().map(|(k, _)| child_entry_size(k)).collect();
        split(children, &sizes, self.capacity, 2)
            .into_iter()
            .map(|children| Node::Internal { level, children })
            .collect()
    }
}

/// Siblings being merged must not overlap: in a damaged or hostile tree
/// their keys could, and the merged node would be out of order.
fn ordered(last_of_left: Option<&Vec<u8>>, first_of_right: Option<&Vec<u8>>) -> Result<()> {
    match (last_of_left, first_of_right) {
        (Some(a), Some(b)) if a >= b => Err(Error::corrupt("sibling nodes overlap", 0)),
        _ => Ok(()),
    }
}

/// Splits `items` into the fewest balanced chunks of about `capacity`
/// logical bytes, each with at least `min_items` items where possible.
fn split<T>(items: Vec<T>, sizes: &[usize], capacity: usize, min_items: usize) -> Vec<Vec<T>> {
    if items.is_empty() {
        return Vec::new();
    }
    let total: usize = NODE_HEADER + sizes.iter().sum::<usize>();
    let mut n = total.div_ceil(capacity.max(1)).max(1);
    n = n.min((items.len() / min_items).max(1));
    if n == 1 {
        return vec![items];
    }
    let target = total / n;
    let mut out = Vec::with_capacity(n);
    let mut cur = Vec::new();
    let mut acc = NODE_HEADER;
    let len = items.len();
    for (i, (item, size)) in items.into_iter().zip(sizes).enumerate() {
        cur.push(item);
        acc += size;
        let left = len - i - 1;
        if acc >= target && out.len() + 1 < n && cur.len() >= min_items && left >= min_items {
            out.push(std::mem::take(&mut cur));
            acc = NODE_HEADER;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
