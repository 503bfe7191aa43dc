//! A pointer to a sealed region: where it is, how long, which generation
//! wrote it, its uncompressed length and its authentication tag. The tag
//! makes a pointer name exactly one sealing, so a region swapped, moved or
//! replayed from an older state is refused even if it authenticates.

use super::bytes::{Put, Reader};
use crate::error::Result;

/// Encoded size of a [`Ptr`].
pub const PTR_LEN: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ptr {
    /// File offset of the sealed region.
    pub offset: u64,
    /// Length of the sealed region (nonce + ciphertext + tag).
    pub len: u32,
    /// Commit sequence number that wrote the region.
    pub generation: u64,
    /// Uncompressed plaintext length.
    pub raw_len: u32,
    /// Poly1305 tag of the region.
    pub tag: [u8; 16],
}

impl Ptr {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.offset);
        out.put_u32(self.len);
        out.put_u64(self.generation);
        out.put_u32(self.raw_len);
        out.put_bytes(&self.tag);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Ptr> {
        Ok(Ptr {
            offset: r.u64()?,
            len: r.u32()?,
            generation: r.u64()?,
            raw_len: r.u32()?,
            tag: r.array()?,
        })
    }

    /// End offset of the region.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len as u64)
    }

    /// Cache key: offset and tag identify one sealing.
    pub fn cache_key(&self) -> (u64, [u8; 16]) {
        (self.offset, self.tag)
    }
}
