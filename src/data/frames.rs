//! Large files: fixed-size frames written in parallel batches, and the
//! frame-index tree over them, built while streaming so memory stays
//! bounded by one index page per level.

use crate::error::{Error, Result};
use crate::format::INDEX_FANOUT;
use crate::format::entry::Content;
use crate::format::ptr::Ptr;
use crate::storage::store::Store;

pub use crate::format::entry::MAX_INDEX_DEPTH;

pub struct FrameWriter {
    frame_size: u32,
    generation: u64,
    /// Pointers waiting for an index page, per level (0 = frames).
    levels: Vec<Vec<Ptr>>,
    pub frames: u64,
    pub pages_written: u64,
}

impl FrameWriter {
    pub fn new(frame_size: u32, generation: u64) -> FrameWriter {
        FrameWriter {
            frame_size,
            generation,
            levels: vec![Vec::new()],
            frames: 0,
            pages_written: 0,
        }
    }

    /// Compresses, seals and writes `chunks` (each a whole frame but the
    /// file's last) as one run.
    pub fn write(&mut self, store: &Store, chunks: &[&[u8]]) -> Result<()> {
        for ptr in store.write_frames(self.generation, chunks)? {
            self.frames += 1;
            self.push(store, 0, ptr)?;
        }
        Ok(())
    }

    fn push(&mut self, store: &Store, level: usize, ptr: Ptr) -> Result<()> {
        if self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        self.levels[level].push(ptr);
        if self.levels[level].len() as u64 == INDEX_FANOUT {
            let page = store.write_index(self.generation, &self.levels[level])?;
            self.pages_written += 1;
            self.levels[level].clear();
            self.push(store, level + 1, page)?;
        }
        Ok(())
    }

    /// Writes the partial index pages and returns the content locator.
    pub fn finish(mut self, store: &Store) -> Result<Content> {
        let mut level = 0;
        loop {
            let higher_empty = self.levels[level + 1..].iter().all(Vec::is_empty);
            let here = std::mem::take(&mut self.levels[level]);
            if higher_empty && here.len() == 1 {
                let depth = u8::try_from(level).map_err(|_| Error::corrupt("index too deep", 0))?;
                return Ok(Content::Frames {
                    frame_size: self.frame_size,
                    depth,
                    root: here[0],
                });
            }
            if higher_empty && here.is_empty() {
                return Ok(Content::Empty);
            }
            if !here.is_empty() {
                let page = store.write_index(self.generation, &here)?;
                self.pages_written += 1;
                if self.levels.len() <= level + 1 {
                    self.levels.push(Vec::new());
                }
                self.levels[level + 1].push(page);
            }
            level += 1;
        }
    }
}

/// The pointer of frame `i` of the `n` frames of a framed file `len`
/// bytes long in frames of `fs` bytes, checked to hold exactly the bytes
/// the layout gives it.
pub fn frame_of(
    store: &Store,
    (depth, root): (u8, &Ptr),
    (len, fs, n): (u64, u64, u64),
    i: u64,
) -> Result<Ptr> {
    let ptr = locate(store, depth, root, i)?;
    let expect = if i + 1 == n { len - i * fs } else { fs };
    if ptr.raw_len as u64 != expect {
        return Err(Error::corrupt(
            "frame length differs from the file's layout",
            ptr.offset,
        ));
    }
    Ok(ptr)
}

/// The pointer of frame `i` of a framed file.
pub fn locate(store: &Store, depth: u8, root: &Ptr, i: u64) -> Result<Ptr> {
    if depth > MAX_INDEX_DEPTH {
        return Err(Error::corrupt("frame index too deep", root.offset));
    }
    let mut span = INDEX_FANOUT.pow(depth as u32);
    if i >= span {
        return Err(Error::corrupt("frame beyond its index", root.offset));
    }
    let mut ptr = *root;
    let mut rest = i;
    for _ in 0..depth {
        span /= INDEX_FANOUT;
        let page = store.read_index(&ptr)?;
        let idx = (rest / span) as usize;
        rest %= span;
        let child = *page
            .get(idx)
            .ok_or_else(|| Error::corrupt("frame index shorter than the file", ptr.offset))?;
        if child.generation > ptr.generation {
            return Err(Error::corrupt("child newer than its parent", child.offset));
        }
        ptr = child;
    }
    Ok(ptr)
}
