//! Hooks for the crate's own crash, fault-injection, hostile-archive and
//! fuzz tests. Not part of the stable API: they let a test that knows the
//! key build pages with arbitrary plaintext, which `put` would never write,
//! to prove the readers refuse them.

use crate::crypto::seal::Kind;
use crate::error::{Error, Result};
use crate::format::commit::{CommitRecord, TreeRoot};
use crate::format::ptr::Ptr;
use crate::lockbox::{Lockbox, now};

pub use crate::storage::backend::Backend;
pub use crate::verify::Inspection;

/// Region kinds, as numbered in `docs/format.md`.
pub mod kind {
    pub const TOC_NODE: u8 = 1;
    pub const VAR_NODE: u8 = 2;
    pub const FRAME: u8 = 3;
    pub const FRAME_INDEX: u8 = 4;
}

fn kind_of(k: u8) -> Result<Kind> {
    Ok(match k {
        1 => Kind::TocNode,
        2 => Kind::VarNode,
        3 => Kind::Frame,
        4 => Kind::FrameIndex,
        7 => Kind::PackNode,
        _ => {
            return Err(Error::Unsupported(
                "testing::seal: kind must be 1, 2, 3, 4 or 7",
            ));
        }
    })
}

/// Seals `plaintext` (compressed with zstd when that pays, like any region)
/// as a region of `kind` at the end of the file, with the generation of
/// the next commit; returns its 40-byte encoded pointer (format.md §Ptr).
pub fn seal(lb: &mut Lockbox, kind: u8, plaintext: &[u8]) -> Result<[u8; 40]> {
    let kind = kind_of(kind)?;
    let generation = lb.next_gen();
    lb.store.set_tail_only(true);
    let r = lb.store.write_region(kind, generation, plaintext);
    lb.store.set_tail_only(false);
    let ptr = r?;
    let mut out = Vec::with_capacity(40);
    ptr.encode(&mut out);
    let mut a = [0u8; 40];
    a.copy_from_slice(&out);
    Ok(a)
}

/// A tree root for [`commit_roots`]: encoded pointer, height, entry count.
pub type Root = ([u8; 40], u32, u64);

fn decode_root(r: Option<Root>) -> Result<TreeRoot> {
    let Some((p, height, count)) = r else {
        return Ok(TreeRoot::default());
    };
    let ptr = Ptr::decode(&mut crate::format::bytes::Reader::new(
        &p,
        "test pointer",
        0,
    ))?;
    Ok(TreeRoot {
        root: Some(ptr),
        height,
        count,
    })
}

/// Commits a record whose TOC and variable roots are the given ones
/// (as built with [`seal`]), bypassing every check `put` makes. Staged
/// changes are dropped. The handle should be reopened afterwards.
pub fn commit_roots(lb: &mut Lockbox, toc: Option<Root>, vars: Option<Root>) -> Result<()> {
    lb.toc.clear();
    lb.vars.clear();
    let seq = lb.next_gen();
    lb.store.backend().sync()?;
    let rec = CommitRecord {
        seq,
        data_end: lb.store.tail(),
        toc: decode_root(toc)?,
        vars: decode_root(vars)?,
        time: now().0,
        ..Default::default()
    };
    lb.write_commit_slot(rec.clone())?;
    let other = 1 - lb.active_slot;
    lb.put_commit_slot(other, &rec)?;
    lb.store.backend().sync()?;
    Ok(())
}

/// How many packed frames the last commit left to repack (its redaction
/// list's `repack` part): non-zero only between a commit and the end of
/// its relocation commits, i.e. after a crash or an error cut them short
/// and before a writable open finished them.
pub fn repack_pending(lb: &Lockbox) -> Result<usize> {
    Ok(lb.redact_list()?.repack.len())
}
