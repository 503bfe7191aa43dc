//! The public header at offset 0: the only plaintext structure apart from
//! the key slot tables. It says what the file is and how it is laid out;
//! nothing in it is secret.

use super::bytes::{Put, Reader};
use super::{DATA_START, FORMAT_VERSION, MAGIC, MAX_NODE_CAPACITY, MIN_NODE_CAPACITY};
use crate::error::{Error, Result};

/// Bytes of the header covered by its checksum.
const BODY_LEN: usize = 96;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub archive_id: [u8; 16],
    pub node_capacity: u32,
    pub frame_size: u32,
}

impl Header {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        out.put_bytes(&MAGIC);
        out.put_u32(FORMAT_VERSION);
        out.put_u32(0); // flags
        out.put_bytes(&self.archive_id);
        out.put_u64(DATA_START);
        out.put_u32(self.node_capacity);
        out.put_u32(self.frame_size);
        out.resize(BODY_LEN, 0);
        let sum = blake3::hash(&out);
        out.put_bytes(sum.as_bytes());
        out.resize(super::HEADER_LEN as usize, 0);
        out
    }

    /// Parses the header: `NotALockbox` without the magic,
    /// `UnsupportedVersion` for another version, `Corrupt` when the
    /// checksum or a field is wrong.
    pub fn decode(buf: &[u8]) -> Result<Header> {
        if buf.len() < BODY_LEN + 32 || buf[..8] != MAGIC {
            return Err(Error::NotALockbox);
        }
        let mut r = Reader::new(&buf[..BODY_LEN + 32], "header", 0);
        r.bytes(8)?;
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if blake3::hash(&buf[..BODY_LEN]).as_bytes() != &buf[BODY_LEN..BODY_LEN + 32] {
            return Err(Error::corrupt("header checksum mismatch", 0));
        }
        let flags = r.u32()?;
        if flags != 0 {
            return Err(r.err("unknown header flags"));
        }
        let archive_id = r.array()?;
        if r.u64()? != DATA_START {
            return Err(r.err("unexpected data start"));
        }
        let node_capacity = r.u32()?;
        let frame_size = r.u32()?;
        if !(MIN_NODE_CAPACITY..=MAX_NODE_CAPACITY).contains(&node_capacity) {
            return Err(r.err("node capacity out of range"));
        }
        if !(4096..=16 * 1024 * 1024).contains(&frame_size) {
            return Err(r.err("frame size out of range"));
        }
        Ok(Header {
            archive_id,
            node_capacity,
            frame_size,
        })
    }
}
