//! Large files: fixed-size frames written in parallel batches (or, from a
//! reader, through a pipeline: each frame compresses on the workers as soon
//! as it is read), and the frame-index tree over them, built while
//! streaming so memory stays bounded by one index page per level.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::INDEX_FANOUT;
use crate::format::entry::Content;
use crate::format::ptr::Ptr;
use crate::storage::store::{Compressing, Store};

pub use crate::format::entry::MAX_INDEX_DEPTH;

/// Bytes of frames a stream keeps in flight (read, compressing, or waiting
/// to be written in order), at least two frames per worker.
const STREAM_AHEAD: usize = 16 << 20;

/// Reads until `buf` is full or the reader ends; returns bytes read.
pub fn fill(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(n)
}

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

    /// Streams `first` (a whole frame) and the rest of `r` as frames: each
    /// frame starts compressing on the workers as soon as it is read, while
    /// this thread reads the next; once `STREAM_AHEAD` bytes are in flight
    /// the older half is sealed and written, in order.
    /// Every byte also goes through `hasher`. Returns the bytes streamed;
    /// the buffers of written frames, read into again meanwhile, are left
    /// in `spare` (for the caller to keep).
    pub fn write_stream(
        &mut self,
        store: &Store,
        first: Vec<u8>,
        r: &mut impl Read,
        hasher: &mut blake3::Hasher,
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<u64> {
        let frame = self.frame_size as usize;
        let ahead = (STREAM_AHEAD / frame.max(1)).max(2 * rayon::current_num_threads());
        let mut queue: VecDeque<(Option<Compressing>, Arc<Vec<u8>>)> = VecDeque::new();
        let mut total = 0u64;
        let mut next = first;
        loop {
            let len = next.len();
            total += len as u64;
            hasher.update(&next);
            let chunk = Arc::new(next);
            queue.push_back((store.start_frame(chunk.clone()), chunk));
            // Half the queue at a time once it is full: the writes do not
            // depend on timing (crash tests replay them op by op), and the
            // other half keeps compressing meanwhile.
            let n = if queue.len() >= ahead {
                (ahead / 2).max(1)
            } else {
                0
            };
            if n > 0 {
                self.write_queued(store, queue.drain(..n).collect(), spare)?;
            }
            if len < frame {
                break;
            }
            // A written frame's buffer: its old bytes are overwritten (only
            // the `got` read are used), not zeroed first.
            let mut buf = match spare.pop() {
                Some(mut b) => {
                    b.resize(frame, 0);
                    b
                }
                None => vec![0u8; frame],
            };
            let got = fill(r, &mut buf)?;
            if got == 0 {
                break;
            }
            buf.truncate(got);
            next = buf;
        }
        self.write_queued(store, queue.into_iter().collect(), spare)?;
        Ok(total)
    }

    /// Writes frames of [`write_stream`](Self::write_stream) in order and
    /// keeps their buffers for reuse.
    fn write_queued(
        &mut self,
        store: &Store,
        frames: Vec<(Option<Compressing>, Arc<Vec<u8>>)>,
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<()> {
        if frames.is_empty() {
            return Ok(());
        }
        let (started, bufs): (Vec<_>, Vec<_>) = frames.into_iter().unzip();
        let raws = started
            .into_iter()
            .zip(bufs.iter().map(|b| b.as_slice()))
            .collect();
        for ptr in store.write_started(self.generation, raws)? {
            self.frames += 1;
            self.push(store, 0, ptr)?;
        }
        // A compression that finished may not have dropped its handle on
        // the buffer yet: such a buffer is left to be freed.
        spare.extend(bufs.into_iter().filter_map(|b| Arc::try_unwrap(b).ok()));
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
