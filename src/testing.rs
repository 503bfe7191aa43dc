//! Hooks for the crate's own crash, fault-injection, hostile-archive and
//! fuzz tests. Not part of the stable API: they let a test that knows the
//! key build pages with arbitrary plaintext, which `put` would never write,
//! to prove the readers refuse them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::crypto::seal::Kind;
use crate::error::{Error, Result};
use crate::format::commit::{CommitRecord, TreeRoot};
use crate::format::ptr::Ptr;
use crate::lockbox::{Lockbox, now};

/// The AEAD every region is sealed with: the perf example's cipher bounds
/// run the same code.
pub use crate::crypto::aead::Cipher;
pub use crate::storage::backend::Backend;
pub use crate::storage::memory::{read_image, write_image};
pub use crate::verify::Inspection;

/// Region kinds, as numbered in `docs/format.md`.
pub mod kind {
    pub const TOC_NODE: u8 = 1;
    pub const VAR_NODE: u8 = 2;
    pub const FRAME: u8 = 3;
    pub const FRAME_INDEX: u8 = 4;
    pub const PACK_NODE: u8 = 7;
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
    commit_trees(lb, toc, vars, None)
}

/// [`commit_roots`] with a pack-reference tree as well (which a
/// well-formed archive with packed or framed files needs).
pub fn commit_trees(
    lb: &mut Lockbox,
    toc: Option<Root>,
    vars: Option<Root>,
    packs: Option<Root>,
) -> Result<()> {
    lb.toc.clear();
    lb.vars.clear();
    let seq = lb.next_gen();
    lb.store.backend().sync()?;
    let rec = CommitRecord {
        seq,
        data_end: lb.store.tail(),
        toc: decode_root(toc)?,
        vars: decode_root(vars)?,
        packs: decode_root(packs)?,
        time: now().0,
        ..Default::default()
    };
    lb.write_commit_slot(rec.clone())?;
    let other = 1 - lb.active_slot;
    lb.put_commit_slot(other, &rec)?;
    lb.store.backend().sync()?;
    Ok(())
}

/// The archive id of `lb` (public in its header): how a test asks the
/// nonce recorder for the pairs of its own archives.
pub fn archive_id(lb: &Lockbox) -> [u8; 16] {
    lb.header.archive_id
}

// ---------------------------------------------------------------------------
// The (subkey, nonce) recorder
// ---------------------------------------------------------------------------
//
// Every AEAD sealing the crate performs (regions, commit slots, key slots)
// reports its key's identity and its nonce here. While no recording is
// active that costs one relaxed atomic load per seal: no lock, no
// allocation, no hashing (region subkeys' identities are computed once at
// derivation; a key slot's wrapping key is hashed only while recording).
//
// Why global and not thread-local: seals run on worker threads
// (`par_map_owned` seals a batch of frames on scoped threads), so a
// thread-local recorder would miss them. The recorder is one process-wide
// table, and test binaries run their tests on parallel threads, so pairs
// are filed by archive id and a test takes only the pairs of the archives
// it created (`Recording::take`). Compacted copies and reopened or
// recovered images keep the archive id and the master key, so their pairs
// land in the same set as the original's: exactly where a replayed or
// derived nonce would repeat. Pairs of archives no test takes (other tests
// of the same binary, running meanwhile) are dropped when the last
// `Recording` ends.

pub use crate::crypto::keys::KeyId;

/// Whether any [`Recording`] is active. Relaxed is enough: a test starts
/// recording before its own seals, on its own thread or on threads it
/// spawns afterwards (spawning synchronises); seals of other tests may
/// race the flag, and nothing asserts on them.
static RECORDING: AtomicBool = AtomicBool::new(false);

struct Recorded {
    sessions: usize,
    by_archive: BTreeMap<[u8; 16], NonceRecorder>,
}

static RECORDED: Mutex<Recorded> = Mutex::new(Recorded {
    sessions: 0,
    by_archive: BTreeMap::new(),
});

fn recorded() -> std::sync::MutexGuard<'static, Recorded> {
    // Nothing panics while holding the lock; a poisoned lock (a test that
    // panicked elsewhere) still holds consistent data.
    RECORDED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A set of (key identity, nonce) pairs that counts repeats.
#[derive(Debug, Default)]
pub struct NonceRecorder {
    pairs: ahash::AHashSet<(KeyId, [u8; 24])>,
    repeats: Vec<(KeyId, [u8; 24])>,
}

impl NonceRecorder {
    /// Notes one sealing; `false` if this key already sealed with `nonce`.
    pub fn note(&mut self, key: KeyId, nonce: [u8; 24]) -> bool {
        let new = self.pairs.insert((key, nonce));
        if !new {
            self.repeats.push((key, nonce));
        }
        new
    }

    /// Distinct pairs seen.
    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }

    /// Sealings seen (distinct pairs plus repeats).
    pub fn sealings(&self) -> usize {
        self.pairs.len() + self.repeats.len()
    }

    /// Every sealing whose (key, nonce) pair had been seen before.
    pub fn repeats(&self) -> &[(KeyId, [u8; 24])] {
        &self.repeats
    }

    /// Distinct keys seen.
    pub fn keys(&self) -> usize {
        self.pairs
            .iter()
            .map(|(k, _)| *k)
            .collect::<ahash::AHashSet<_>>()
            .len()
    }

    /// Every distinct pair seen, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &(KeyId, [u8; 24])> {
        self.pairs.iter()
    }
}

/// While alive, every sealing is recorded, filed by archive id.
#[must_use = "recording stops when the guard is dropped"]
pub struct Recording(());

/// Starts recording (see [`Recording`]); recordings may overlap.
pub fn start_recording() -> Recording {
    let mut r = recorded();
    r.sessions += 1;
    RECORDING.store(true, Ordering::SeqCst);
    Recording(())
}

impl Recording {
    /// Removes and returns the pairs recorded so far for `archive_id`.
    pub fn take(&self, archive_id: &[u8; 16]) -> NonceRecorder {
        recorded().by_archive.remove(archive_id).unwrap_or_default()
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let mut r = recorded();
        r.sessions -= 1;
        if r.sessions == 0 {
            RECORDING.store(false, Ordering::SeqCst);
            r.by_archive = BTreeMap::new();
        }
    }
}

/// Whether a recording is active (cheap; lets a caller skip work that
/// only the recorder needs).
#[inline]
pub(crate) fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// Called by every sealing with the key's identity and the nonce it is
/// about to use.
#[inline]
pub(crate) fn on_seal(archive_id: &[u8; 16], key: &KeyId, nonce: &[u8]) {
    if recording() {
        record_seal(archive_id, key, nonce);
    }
}

/// Records one sealing as if the crate had performed it (the path every
/// real seal takes while recording); a nonce that is not 24 bytes is
/// ignored. Public so a test can show that a repeat is caught.
#[cold]
pub fn record_seal(archive_id: &[u8; 16], key: &KeyId, nonce: &[u8]) {
    let Ok(nonce) = <[u8; 24]>::try_from(nonce) else {
        return;
    };
    let mut r = recorded();
    if r.sessions > 0 {
        r.by_archive
            .entry(*archive_id)
            .or_default()
            .note(*key, nonce);
    }
}

/// How many packed frames the last commit left to repack (its redaction
/// list's `repack` part): non-zero only between a commit and the end of
/// its relocation commits, i.e. after a crash or an error cut them short
/// and before a writable open finished them.
pub fn repack_pending(lb: &Lockbox) -> Result<usize> {
    Ok(lb.redact_list()?.repack.len())
}

/// A data frame of a lockbox, for the perf example's decoding bound.
#[derive(Clone, Copy, Debug)]
pub struct DataFrame {
    ptr: Ptr,
    /// Bytes it decodes to.
    pub raw_len: u32,
}

/// Every data frame the committed tree's files use, each once, in tree
/// order: what `extract_all` decodes in one pass.
pub fn data_frames(lb: &Lockbox) -> Result<Vec<DataFrame>> {
    let mut seen = std::collections::HashSet::new();
    let (mut ptrs, mut out) = (Vec::new(), Vec::new());
    for item in lb.extraction_list("")? {
        let (_, rec) = item?;
        lb.frames_of_file(&rec, &mut ptrs)?;
        let fresh = ptrs.drain(..).filter(|p| seen.insert((p.offset, p.tag)));
        out.extend(fresh.map(|ptr| DataFrame {
            ptr,
            raw_len: ptr.raw_len,
        }));
    }
    Ok(out)
}

/// Reads, authenticates, decrypts and decompresses `frame` into `buf`
/// (its capacity reused), as extraction does, bypassing every cache.
pub fn decode_frame(lb: &Lockbox, frame: &DataFrame, buf: Vec<u8>) -> Result<Vec<u8>> {
    lb.store.decode_owned(&frame.ptr, Kind::Frame, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_detects_a_repeated_pair() {
        let mut r = NonceRecorder::default();
        assert!(r.note([1; 16], [2; 24]));
        assert!(r.note([1; 16], [3; 24]));
        assert!(r.note([4; 16], [2; 24]), "same nonce, other key: no repeat");
        assert!(!r.note([1; 16], [2; 24]));
        assert_eq!((r.pairs(), r.sealings(), r.keys()), (3, 4, 2));
        assert_eq!(r.repeats(), &[([1; 16], [2; 24])]);
    }

    #[test]
    fn global_recording_files_pairs_by_archive() {
        // An archive id no real archive has (ids are random).
        let id = *b"recorder-test-id";
        let rec = start_recording();
        record_seal(&id, &[9; 16], &[7; 24]);
        record_seal(&id, &[9; 16], &[8; 24]);
        record_seal(&id, &[9; 16], &[7; 24]);
        let got = rec.take(&id);
        assert_eq!(got.sealings(), 3);
        assert_eq!(got.repeats(), &[([9; 16], [7; 24])]);
        assert_eq!(rec.take(&id).sealings(), 0, "take removes them");
    }
}
