//! A copy-on-write B-tree over sealed pages. Nodes are never changed in
//! place: a commit applies a sorted batch of changes and writes new nodes
//! for the touched paths only ([`apply`]); reads descend from a root
//! through the store's cache ([`cursor`]).

pub mod apply;
pub mod cursor;

use crate::crypto::seal::Kind;
use crate::error::{Error, Result};
use crate::format::MAX_TREE_HEIGHT;
use crate::format::commit::TreeRoot;
use crate::format::node::Node;
use crate::format::ptr::Ptr;
use crate::storage::store::Store;

/// Index of the child of an internal node that may hold `key`: the last
/// child whose smallest key is `<= key`, or the first child.
pub fn child_index(children: &[(Vec<u8>, Ptr)], key: &[u8]) -> usize {
    children
        .partition_point(|(k, _)| k.as_slice() <= key)
        .saturating_sub(1)
}

/// The root pointer and its level (height - 1), or `None` for an empty
/// tree; a height out of range is `Corrupt`.
pub fn top(root: &TreeRoot) -> Result<Option<(Ptr, u8)>> {
    let Some(ptr) = root.root else {
        return Ok(None);
    };
    if root.height == 0 || root.height > MAX_TREE_HEIGHT {
        return Err(Error::corrupt("tree height out of range", ptr.offset));
    }
    Ok(Some((ptr, (root.height - 1) as u8)))
}

/// Looks `key` up in the tree at `root`.
pub fn get(store: &Store, kind: Kind, root: &TreeRoot, key: &[u8]) -> Result<Option<Vec<u8>>> {
    Ok(get_in_leaf(store, kind, root, key)?.and_then(|(v, _)| v))
}

/// Looks `key` up in the tree at `root`; also returns the leaf that holds
/// or would hold it (`None` for an empty tree).
pub fn get_in_leaf(
    store: &Store,
    kind: Kind,
    root: &TreeRoot,
    key: &[u8],
) -> Result<Option<(Option<Vec<u8>>, Ptr)>> {
    let Some((mut ptr, mut level)) = top(root)? else {
        return Ok(None);
    };
    loop {
        let node = store.read_node(kind, &ptr, level)?;
        match &*node {
            Node::Leaf(entries) => {
                let v = entries
                    .binary_search_by(|(k, _)| k.as_slice().cmp(key))
                    .ok()
                    .map(|i| entries[i].1.clone());
                return Ok(Some((v, ptr)));
            }
            Node::Internal { children, .. } => {
                let child = children[child_index(children, key)].1;
                if child.generation > ptr.generation {
                    return Err(Error::corrupt("child newer than its parent", child.offset));
                }
                ptr = child;
                level -= 1;
            }
        }
    }
}
