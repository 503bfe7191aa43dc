//! Reading content: range reads straight into the caller's buffer,
//! decoding only the frames the range overlaps.

use super::frames::frame_of;
use crate::error::{Error, Result};
use crate::format::entry::Content;
use crate::format::ptr::Ptr;
use crate::par::{par_map, par_map_owned};
use crate::storage::store::Store;

/// A range read spanning this many frames decodes them in parallel.
const PARALLEL_FROM: usize = 3;

/// Frames of one file decoded together by [`visit`]: enough to keep every
/// core busy, few enough to bound memory (8 × 1 MiB at most).
const VISIT_BATCH: u64 = 8;

/// Copies bytes `[offset, offset + buf.len())` of content `len` bytes long
/// into `buf`; returns how many (fewer at the end, 0 past it). `pending`
/// is the open pack's bytes, for `Content::Pending`.
pub fn read_at(
    store: &Store,
    content: &Content,
    len: u64,
    offset: u64,
    buf: &mut [u8],
    pending: &[u8],
) -> Result<usize> {
    if offset >= len || buf.is_empty() {
        return Ok(0);
    }
    let want = (len - offset).min(buf.len() as u64) as usize;
    let buf = &mut buf[..want];
    let nframes = content.check_layout(len)?;
    match content {
        Content::Empty => Err(Error::corrupt("empty content with a length", 0)),
        Content::Inline(b) => exact(copy_slice(b, offset, buf, 0)?, want, 0),
        Content::Pending { offset: start, .. } => exact(
            copy_slice(pending, *start as u64 + offset, buf, 0)?,
            want,
            0,
        ),
        Content::Packed {
            frame,
            offset: start,
        } => {
            let n = store.with_frame(frame, |bytes| {
                copy_slice(bytes, *start as u64 + offset, buf, frame.offset)
            })?;
            exact(n, want, frame.offset)
        }
        Content::Frames {
            frame_size,
            depth,
            root,
        } => {
            let fs = *frame_size as u64;
            let nframes = nframes.unwrap_or(0);
            // The caller's buffer cut at frame boundaries: each piece is
            // filled straight from its decoded frame (a whole frame is
            // decoded into its piece), several frames at once on the
            // worker threads when the range spans a few.
            let mut pieces: Vec<(Ptr, u64, &mut [u8])> = Vec::new();
            let mut rest: &mut [u8] = buf;
            let mut pos = offset;
            while !rest.is_empty() {
                let i = pos / fs;
                let within = pos - i * fs;
                let ptr = frame_of(store, (*depth, root), (len, fs, nframes), i)?;
                let n = ((ptr.raw_len as u64 - within) as usize).min(rest.len());
                let (piece, tail) = std::mem::take(&mut rest).split_at_mut(n);
                pieces.push((ptr, within, piece));
                rest = tail;
                pos += n as u64;
            }
            let fill = |(ptr, within, dst): (Ptr, u64, &mut [u8])| {
                if within == 0 && dst.len() == ptr.raw_len as usize {
                    // A whole frame: decoded straight into place.
                    store.frame_to_slice(&ptr, dst)?;
                    return Ok(dst.len());
                }
                let n =
                    store.with_frame(&ptr, |bytes| copy_slice(bytes, within, dst, ptr.offset))?;
                if n == 0 {
                    return Err(Error::corrupt("empty frame", ptr.offset));
                }
                Ok(n)
            };
            let filled: Vec<Result<usize>> = if pieces.len() >= PARALLEL_FROM {
                par_map_owned(pieces, fill)
            } else {
                pieces.into_iter().map(fill).collect()
            };
            let mut done = 0;
            for n in filled {
                done += n?;
            }
            exact(done, want, 0)
        }
    }
}

/// Copies as much of `src[from..]` as fits into `dst`.
fn copy_slice(src: &[u8], from: u64, dst: &mut [u8], at: u64) -> Result<usize> {
    let avail = usize::try_from(from)
        .ok()
        .and_then(|f| src.get(f..))
        .ok_or_else(|| Error::corrupt("content shorter than its length", at))?;
    let n = avail.len().min(dst.len());
    dst[..n].copy_from_slice(&avail[..n]);
    Ok(n)
}

fn exact(n: usize, want: usize, at: u64) -> Result<usize> {
    if n != want {
        return Err(Error::corrupt("content shorter than its length", at));
    }
    Ok(n)
}

/// Hands all of a content `len` bytes long to `f` in order, a frame at a
/// time, as `f(offset, bytes)`, straight from the decoded frame (no copy):
/// extraction writes each piece where it belongs. `pending` is as for
/// [`read_at`]. Checks every frame's length against the layout and that
/// the pieces add up to `len`.
pub fn visit(
    store: &Store,
    content: &Content,
    len: u64,
    pending: &[u8],
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let nframes = content.check_layout(len)?;
    match content {
        Content::Empty => Ok(()),
        Content::Inline(b) => f(0, piece(b, 0, len, 0)?),
        Content::Pending { offset, .. } => f(0, piece(pending, *offset, len, 0)?),
        Content::Packed { frame, offset } => store.with_frame(frame, |bytes| {
            f(0, piece(bytes, *offset, len, frame.offset)?)
        }),
        Content::Frames {
            frame_size,
            depth,
            root,
        } => {
            let fs = *frame_size as u64;
            let n = nframes.unwrap_or(0);
            let mut i = 0;
            while i < n {
                // A batch of frames is decrypted and decompressed on the
                // worker threads, then handed over in order.
                let batch = (n - i).min(VISIT_BATCH);
                let mut ptrs = Vec::with_capacity(batch as usize);
                for j in i..i + batch {
                    ptrs.push(frame_of(store, (*depth, root), (len, fs, n), j)?);
                }
                let decoded = if batch == 1 {
                    vec![store.frame_owned(&ptrs[0])]
                } else {
                    par_map(&ptrs, |p| store.frame_owned(p))
                };
                for (j, (bytes, ptr)) in decoded.into_iter().zip(&ptrs).enumerate() {
                    let bytes = bytes?;
                    if bytes.len() != ptr.raw_len as usize {
                        return Err(Error::corrupt("frame shorter than its length", ptr.offset));
                    }
                    f((i + j as u64) * fs, &bytes)?;
                }
                i += batch;
            }
            Ok(())
        }
    }
}

/// Bytes `[start, start + len)` of `bytes`.
fn piece(bytes: &[u8], start: u32, len: u64, at: u64) -> Result<&[u8]> {
    let s = start as usize;
    usize::try_from(len)
        .ok()
        .and_then(|l| bytes.get(s..s.checked_add(l)?))
        .ok_or_else(|| Error::corrupt("content shorter than its length", at))
}
