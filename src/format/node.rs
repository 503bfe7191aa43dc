//! B-tree node encoding. A node's plaintext is
//! `level u8, count u32, entries…`; each entry is `shared u16, suffix_len u16,
//! suffix` (the key, sharing `shared` bytes with the previous key) followed by
//! `value_len u32, value` in a leaf (level 0) or a child [`Ptr`] in an
//! internal node, whose key is the smallest key of that child's subtree.

use super::bytes::{Put, Reader};
use super::ptr::{PTR_LEN, Ptr};
use crate::error::Result;

/// Longest key accepted in a node.
pub const MAX_KEY: usize = 8192;
/// Longest value accepted in a leaf.
pub const MAX_VALUE: usize = 16384;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Leaf(Vec<(Vec<u8>, Vec<u8>)>),
    Internal {
        level: u8,
        children: Vec<(Vec<u8>, Ptr)>,
    },
}

/// Fixed part of a node's encoding.
pub const NODE_HEADER: usize = 5;

/// Logical size of a leaf entry (before prefix sharing and compression).
pub fn leaf_entry_size(key: &[u8], value: &[u8]) -> usize {
    8 + key.len() + value.len()
}

/// Logical size of an internal entry.
pub fn child_entry_size(key: &[u8]) -> usize {
    4 + key.len() + PTR_LEN
}

fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .take_while(|(x, y)| x == y)
        .count()
        .min(u16::MAX as usize)
}

impl Node {
    pub fn level(&self) -> u8 {
        match self {
            Node::Leaf(_) => 0,
            Node::Internal { level, .. } => *level,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Node::Leaf(e) => e.len(),
            Node::Internal { children, .. } => children.len(),
        }
    }

    pub fn first_key(&self) -> Option<&[u8]> {
        match self {
            Node::Leaf(e) => e.first().map(|(k, _)| k.as_slice()),
            Node::Internal { children, .. } => children.first().map(|(k, _)| k.as_slice()),
        }
    }

    /// Logical size: what counts against the node capacity.
    pub fn logical_size(&self) -> usize {
        NODE_HEADER
            + match self {
                Node::Leaf(e) => e.iter().map(|(k, v)| leaf_entry_size(k, v)).sum::<usize>(),
                Node::Internal { children, .. } => {
                    children.iter().map(|(k, _)| child_entry_size(k)).sum()
                }
            }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.logical_size());
        out.put_u8(self.level());
        out.put_u32(self.len() as u32);
        let mut prev: &[u8] = &[];
        match self {
            Node::Leaf(entries) => {
                for (k, v) in entries {
                    put_key(&mut out, prev, k);
                    out.put_u32(v.len() as u32);
                    out.put_bytes(v);
                    prev = k;
                }
            }
            Node::Internal { children, .. } => {
                for (k, p) in children {
                    put_key(&mut out, prev, k);
                    p.encode(&mut out);
                    prev = k;
                }
            }
        }
        out
    }

    /// Parses and checks a node: keys strictly ascending, lengths in
    /// bounds, the level as the parent expects, nothing left over.
    pub fn decode(buf: &[u8], offset: u64, expect_level: u8) -> Result<Node> {
        let mut r = Reader::new(buf, "B-tree node", offset);
        let level = r.u8()?;
        if level != expect_level {
            return Err(r.err("node level differs from its place in the tree"));
        }
        let count = r.u32()? as usize;
        // Each entry takes at least 8 bytes: bound the allocation by the input.
        if count == 0 || count > r.remaining() / 8 {
            return Err(r.err("entry count out of range"));
        }
        let mut prev: Vec<u8> = Vec::new();
        let mut next_key = |r: &mut Reader<'_>, first: bool| -> Result<Vec<u8>> {
            let shared = r.u16()? as usize;
            let suffix_len = r.u16()? as usize;
            if shared > prev.len() || shared + suffix_len > MAX_KEY {
                return Err(r.err("key length out of range"));
            }
            let mut k = Vec::with_capacity(shared + suffix_len);
            k.extend_from_slice(&prev[..shared]);
            k.extend_from_slice(r.bytes(suffix_len)?);
            if !first && k <= prev {
                return Err(r.err("keys out of order"));
            }
            prev.clone_from(&k);
            Ok(k)
        };
        let node = if level == 0 {
            let mut entries = Vec::with_capacity(count);
            for i in 0..count {
                let k = next_key(&mut r, i == 0)?;
                let vlen = r.u32()? as usize;
                if vlen > MAX_VALUE {
                    return Err(r.err("value too long"));
                }
                entries.push((k, r.bytes(vlen)?.to_vec()));
            }
            Node::Leaf(entries)
        } else {
            let mut children = Vec::with_capacity(count);
            for i in 0..count {
                let k = next_key(&mut r, i == 0)?;
                children.push((k, Ptr::decode(&mut r)?));
            }
            Node::Internal { level, children }
        };
        r.finish()?;
        Ok(node)
    }
}

fn put_key(out: &mut Vec<u8>, prev: &[u8], k: &[u8]) {
    let s = shared_prefix(prev, k);
    out.put_u16(s as u16);
    out.put_u16((k.len() - s) as u16);
    out.put_bytes(&k[s..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let leaf = Node::Leaf(vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"ab".to_vec(), vec![]),
            (b"b".to_vec(), b"xyz".to_vec()),
        ]);
        assert_eq!(Node::decode(&leaf.encode(), 0, 0).unwrap(), leaf);
        let p = Ptr {
            offset: 7,
            len: 9,
            generation: 2,
            raw_len: 4,
            tag: [3; 16],
        };
        let int = Node::Internal {
            level: 2,
            children: vec![(b"".to_vec(), p), (b"q".to_vec(), p)],
        };
        assert_eq!(Node::decode(&int.encode(), 0, 2).unwrap(), int);
        assert!(Node::decode(&int.encode(), 0, 1).is_err());
        let bad = Node::Leaf(vec![(b"b".to_vec(), vec![]), (b"a".to_vec(), vec![])]);
        assert!(Node::decode(&bad.encode(), 0, 0).is_err());
    }
}
