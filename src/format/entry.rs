//! TOC values (file, directory and symlink records) and variable values,
//! and the content locator they share.

use super::bytes::{Put, Reader};
use super::ptr::{PTR_LEN, Ptr};
use crate::error::Result;

/// Contents up to this many bytes are stored inline in the B-tree value.
pub const INLINE_MAX: usize = 128;
/// Longest symlink target, bytes.
pub const MAX_TARGET: usize = 4096;
/// Deepest frame-index tree accepted (2048^4 frames is far beyond any file).
pub const MAX_INDEX_DEPTH: u8 = 4;

/// Where an entry's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// No bytes (directories, empty files).
    Empty,
    /// The bytes themselves (small values, symlink targets).
    Inline(Vec<u8>),
    /// A slice `[offset, offset + len)` of a shared packed frame.
    Packed { frame: Ptr, offset: u32 },
    /// Whole frames of `frame_size` bytes (the last one shorter), reached
    /// through a frame-index tree of `depth` levels (`depth == 0`: `root`
    /// is the single frame).
    Frames {
        frame_size: u32,
        depth: u8,
        root: Ptr,
    },
    /// Staged in the open pack buffer of this handle; never encoded.
    Pending { pack_id: u64, offset: u32 },
}

const C_EMPTY: u8 = 0;
const C_INLINE: u8 = 1;
const C_PACKED: u8 = 2;
const C_FRAMES: u8 = 3;

impl Content {
    /// Checks that content of `len` bytes fits this locator's structure,
    /// without any I/O: empty and inline lengths match, a packed slice lies
    /// inside its frame, frames can hold the length through an index of
    /// this depth. Returns the frame count for framed content. The one
    /// place these rules live: reads, allocation checks and `verify` use it.
    pub fn check_layout(&self, len: u64) -> Result<Option<u64>> {
        let bad = |what: &str, at: u64| {
            Err(crate::error::Error::corrupt(
                format!("content layout: {what}"),
                at,
            ))
        };
        match self {
            Content::Empty if len != 0 => bad("empty content with a length", 0),
            Content::Inline(b) if b.len() as u64 != len => bad("inline length differs", 0),
            Content::Packed { frame, offset }
                if (*offset as u64)
                    .checked_add(len)
                    .is_none_or(|e| e > frame.raw_len as u64) =>
            {
                bad("packed file beyond its frame", frame.offset)
            }
            Content::Frames {
                frame_size,
                depth,
                root,
            } => {
                let fs = *frame_size as u64;
                if fs == 0 || *depth > MAX_INDEX_DEPTH || len == 0 {
                    return bad("frame size or index depth out of range", root.offset);
                }
                let n = len.div_ceil(fs);
                if n > super::INDEX_FANOUT.pow(*depth as u32) {
                    return bad("more frames than its index holds", root.offset);
                }
                Ok(Some(n))
            }
            _ => Ok(None),
        }
    }

    /// The length of [`encode`](Self::encode)'s output.
    fn encoded_len(&self) -> usize {
        match self {
            Content::Empty | Content::Pending { .. } => 1,
            Content::Inline(b) => 1 + b.len(),
            Content::Packed { .. } => 1 + PTR_LEN + 4,
            Content::Frames { .. } => 1 + 4 + 1 + PTR_LEN,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Content::Empty | Content::Pending { .. } => out.put_u8(C_EMPTY),
            Content::Inline(b) => {
                out.put_u8(C_INLINE);
                out.put_bytes(b);
            }
            Content::Packed { frame, offset } => {
                out.put_u8(C_PACKED);
                frame.encode(out);
                out.put_u32(*offset);
            }
            Content::Frames {
                frame_size,
                depth,
                root,
            } => {
                out.put_u8(C_FRAMES);
                out.put_u32(*frame_size);
                out.put_u8(*depth);
                root.encode(out);
            }
        }
    }

    /// Decodes a content locator for `len` bytes.
    fn decode(r: &mut Reader<'_>, len: u64) -> Result<Content> {
        let c = match r.u8()? {
            C_EMPTY => Content::Empty,
            C_INLINE => {
                if len > MAX_TARGET as u64 {
                    return Err(r.err("inline content too long"));
                }
                Content::Inline(r.bytes(len as usize)?.to_vec())
            }
            C_PACKED => Content::Packed {
                frame: Ptr::decode(r)?,
                offset: r.u32()?,
            },
            C_FRAMES => Content::Frames {
                frame_size: r.u32()?,
                depth: r.u8()?,
                root: Ptr::decode(r)?,
            },
            _ => return Err(r.err("unknown content kind")),
        };
        if matches!(c, Content::Empty) && len != 0 {
            return Err(r.err("empty content with a length"));
        }
        Ok(c)
    }
}

/// Kind of a TOC entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// A TOC value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: EntryKind,
    pub mode: u32,
    pub mtime: i64,
    pub mtime_nanos: u32,
    pub len: u64,
    pub content: Content,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let len = 25 + self.content.encoded_len();
        let mut out = Vec::with_capacity(len);
        out.put_u8(match self.kind {
            EntryKind::File => 1,
            EntryKind::Dir => 2,
            EntryKind::Symlink => 3,
        });
        out.put_u32(self.mode);
        out.put_i64(self.mtime);
        out.put_u32(self.mtime_nanos);
        out.put_u64(self.len);
        self.content.encode(&mut out);
        debug_assert_eq!(out.len(), len);
        out
    }

    pub fn decode(buf: &[u8], offset: u64) -> Result<Record> {
        let mut r = Reader::new(buf, "TOC entry", offset);
        let kind = match r.u8()? {
            1 => EntryKind::File,
            2 => EntryKind::Dir,
            3 => EntryKind::Symlink,
            _ => return Err(r.err("unknown entry kind")),
        };
        let mode = r.u32()?;
        let mtime = r.i64()?;
        let mtime_nanos = r.u32()?;
        let len = r.u64()?;
        let content = Content::decode(&mut r, len)?;
        r.finish()?;
        let ok = match kind {
            EntryKind::Dir => matches!(content, Content::Empty),
            EntryKind::Symlink => {
                matches!(&content, Content::Inline(t) if std::str::from_utf8(t).is_ok() && !t.is_empty())
            }
            EntryKind::File => true,
        };
        if !ok || mtime_nanos >= 1_000_000_000 {
            return Err(r.err("entry fields do not fit its kind"));
        }
        Ok(Record {
            kind,
            mode,
            mtime,
            mtime_nanos,
            len,
            content,
        })
    }
}

/// A variable's value: length and where the bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarRecord {
    pub len: u64,
    pub content: Content,
}

impl VarRecord {
    pub fn encode(&self) -> Vec<u8> {
        let len = 8 + self.content.encoded_len();
        let mut out = Vec::with_capacity(len);
        out.put_u64(self.len);
        self.content.encode(&mut out);
        debug_assert_eq!(out.len(), len);
        out
    }

    pub fn decode(buf: &[u8], offset: u64) -> Result<VarRecord> {
        let mut r = Reader::new(buf, "variable", offset);
        let len = r.u64()?;
        let content = Content::decode(&mut r, len)?;
        r.finish()?;
        Ok(VarRecord { len, content })
    }
}
