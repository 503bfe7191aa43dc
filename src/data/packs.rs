//! Decoded packed frames shared by the threads of one pass over many
//! files (`extract_to_directory`, `compact`): a frame whose members are
//! reached apart from each other (deduplicated files far apart in the
//! tree, groups cut by a chunk) is decoded once while it stays among the
//! most recently used.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::format::ptr::Ptr;
use crate::storage::store::Store;

/// The most recently used `PACK_CACHE_BYTES` of decoded packed frames.
#[derive(Default)]
pub struct PackCache {
    frames: Mutex<Kept>,
}

type FrameKey = (u64, [u8; 16]);

/// Decoded frames, least recently used first, and their bytes.
#[derive(Default)]
struct Kept {
    frames: VecDeque<(FrameKey, Arc<Vec<u8>>)>,
    bytes: u64,
}

const PACK_CACHE_BYTES: u64 = 16 << 20;

impl PackCache {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The member `len` bytes long at `offset` of packed frame `ptr`: the
    /// decoded frame and the member's range in it.
    pub fn member(
        &self,
        store: &Store,
        ptr: &Ptr,
        offset: u32,
        len: u64,
    ) -> Result<(Arc<Vec<u8>>, Range<usize>)> {
        let bytes = self.get(store, ptr)?;
        let start = offset as usize;
        let range = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&end| end <= bytes.len())
            .map(|end| start..end)
            .ok_or_else(|| Error::corrupt("content shorter than its length", ptr.offset))?;
        Ok((bytes, range))
    }

    /// The decoded bytes of packed frame `ptr`: kept, or decoded now (by
    /// the caller, outside the lock) and kept.
    fn get(&self, store: &Store, ptr: &Ptr) -> Result<Arc<Vec<u8>>> {
        let key = (ptr.offset, ptr.tag);
        {
            let mut g = self.lock();
            if let Some(i) = g.frames.iter().position(|(k, _)| *k == key)
                && let Some(hit) = g.frames.remove(i)
            {
                let bytes = hit.1.clone();
                g.frames.push_back(hit);
                return Ok(bytes);
            }
        }
        let bytes = Arc::new(store.frame_owned(ptr)?);
        let mut g = self.lock();
        g.bytes += bytes.len() as u64;
        g.frames.push_back((key, bytes.clone()));
        while g.bytes > PACK_CACHE_BYTES {
            match g.frames.pop_front() {
                Some((_, b)) => g.bytes -= b.len() as u64,
                None => break,
            }
        }
        Ok(bytes)
    }
}
