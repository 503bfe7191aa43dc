//! The commit record sealed into a commit slot: the root of everything.

use super::bytes::{Put, Reader};
use super::ptr::Ptr;
use crate::error::Result;

/// Plaintext length of a commit record.
pub const RECORD_LEN: usize = 512;

/// Root and size of one B-tree; `root == None` is the empty tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TreeRoot {
    pub root: Option<Ptr>,
    pub height: u32,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CommitRecord {
    /// Commit sequence number; also the generation of regions it wrote.
    pub seq: u64,
    /// End of allocated space: regions live in `[DATA_START, data_end)`.
    pub data_end: u64,
    pub toc: TreeRoot,
    pub vars: TreeRoot,
    /// Unix time of the commit, seconds.
    pub time: i64,
    /// Pack references: which TOC entries and variables use each packed frame.
    pub packs: TreeRoot,
    /// The free-space index: extents that are free and already zeroed.
    pub free: TreeRoot,
    /// The redaction list: extents this commit freed, to be zeroed once it
    /// is durable (and again by the next writer to open, if a crash cut
    /// that short). The next commit moves them into the free-space index.
    pub redact: Option<Ptr>,
}

fn put_root(out: &mut Vec<u8>, t: &TreeRoot) {
    t.root.unwrap_or_default().encode(out);
    out.put_u32(t.height);
    out.put_u64(t.count);
}

fn get_root(r: &mut Reader<'_>) -> Result<TreeRoot> {
    let p = Ptr::decode(r)?;
    let height = r.u32()?;
    let count = r.u64()?;
    let root = if p.offset == 0 { None } else { Some(p) };
    if root.is_none() && (height != 0 || count != 0) {
        return Err(r.err("empty tree with a height or count"));
    }
    if root.is_some() && height == 0 {
        return Err(r.err("tree with a root but height 0"));
    }
    Ok(TreeRoot {
        root,
        height,
        count,
    })
}

impl CommitRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_LEN);
        out.put_u64(self.seq);
        out.put_u64(self.data_end);
        put_root(&mut out, &self.toc);
        put_root(&mut out, &self.vars);
        out.put_i64(self.time);
        put_root(&mut out, &self.packs);
        put_root(&mut out, &self.free);
        self.redact.unwrap_or_default().encode(&mut out);
        out.resize(RECORD_LEN, 0);
        out
    }

    pub fn decode(buf: &[u8], offset: u64) -> Result<CommitRecord> {
        let mut r = Reader::new(buf, "commit record", offset);
        if buf.len() != RECORD_LEN {
            return Err(r.err("wrong length"));
        }
        let seq = r.u64()?;
        // No real file gets near 2^62 commits; refusing more keeps every
        // `seq + 1` in range for a hostile record.
        if seq == 0 || seq > 1 << 62 {
            return Err(r.err("sequence number out of range"));
        }
        Ok(CommitRecord {
            seq,
            data_end: r.u64()?,
            toc: get_root(&mut r)?,
            vars: get_root(&mut r)?,
            time: r.i64()?,
            packs: get_root(&mut r)?,
            free: get_root(&mut r)?,
            redact: Some(Ptr::decode(&mut r)?).filter(|p| p.offset != 0),
        })
    }
}
