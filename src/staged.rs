//! Staged changes over a committed tree: an ordered overlay of new values
//! and tombstones, and a streaming merge of the two in key order.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::ops::Bound;

use crate::btree::cursor::Cursor;
use crate::crypto::seal::Kind;
use crate::error::Result;
use crate::format::commit::TreeRoot;
use crate::storage::store::Store;

/// Staged values by key; `None` is a tombstone.
pub type Overlay<V> = BTreeMap<Vec<u8>, Option<V>>;

/// Decodes a committed tree value.
pub type Decode<V> = fn(&[u8], u64) -> Result<V>;

/// A tree entry: its key and its decoded value (or why that failed).
type TreeItem<V> = Result<(Vec<u8>, Result<V>)>;

/// The live entries of `[start, end)`: the overlay merged over the tree.
pub struct Merged<'a, V> {
    tree: Cursor<'a>,
    /// The tree's next entry once looked at: its key, and its value
    /// decoded straight from the node (a decoding error is reported only
    /// if the entry is returned, not when the overlay replaces it).
    peeked: Option<Option<TreeItem<V>>>,
    staged: std::iter::Peekable<btree_map::Range<'a, Vec<u8>, Option<V>>>,
    decode: Decode<V>,
}

impl<'a, V: Clone> Merged<'a, V> {
    pub fn new(
        store: &'a Store,
        kind: Kind,
        root: &TreeRoot,
        overlay: &'a Overlay<V>,
        start: &[u8],
        end: Option<Vec<u8>>,
        decode: Decode<V>,
    ) -> Result<Merged<'a, V>> {
        let upper = match &end {
            Some(e) => Bound::Excluded(e.clone()),
            None => Bound::Unbounded,
        };
        let staged = overlay
            .range((Bound::Included(start.to_vec()), upper))
            .peekable();
        let tree = Cursor::new(store, kind, root, start, end)?;
        Ok(Merged {
            tree,
            peeked: None,
            staged,
            decode,
        })
    }

    fn peek_tree(&mut self) -> Option<&TreeItem<V>> {
        let decode = self.decode;
        self.peeked
            .get_or_insert_with(|| self.tree.next_with(|k, v| (k.to_vec(), decode(v, 0))))
            .as_ref()
    }

    fn next_tree(&mut self) -> Option<TreeItem<V>> {
        self.peek_tree();
        self.peeked.take().flatten()
    }
}

impl<V: Clone> Iterator for Merged<'_, V> {
    type Item = Result<(Vec<u8>, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let staged = self.staged.peek().map(|(k, _)| k.as_slice());
            let order = match (self.peek_tree(), staged) {
                (None, None) => return None,
                (Some(Err(_)), _) => std::cmp::Ordering::Less,
                (Some(Ok((tk, _))), Some(sk)) => tk.as_slice().cmp(sk),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    return match self.next_tree()? {
                        Ok((k, v)) => Some(v.map(|v| (k, v))),
                        Err(e) => Some(Err(e)),
                    };
                }
                std::cmp::Ordering::Equal => {
                    self.next_tree();
                }
                std::cmp::Ordering::Greater => {}
            }
            let (k, v) = self.staged.next()?;
            if let Some(v) = v {
                return Some(Ok((k.clone(), v.clone())));
            }
        }
    }
}
