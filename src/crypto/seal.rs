//! Sealing: zstd (when it pays) then XChaCha20-Poly1305, with associated
//! data that binds every sealed region to its archive, format version,
//! kind, location, generation and uncompressed length.
//!
//! A sealed region is `nonce[24] || ciphertext || tag[16]`; the plaintext is
//! `codec u8 || body`, codec 0 = stored, 1 = zstd. See `docs/format.md`.

use crate::crypto::aead::Cipher;
use crate::crypto::keys::SealKey;
use crate::error::{Error, Result};
use crate::format::FORMAT_VERSION;

pub use crate::crypto::aead::{NONCE_LEN, TAG_LEN};
/// Bytes a sealed region adds around its body: nonce, codec byte, tag.
pub const OVERHEAD: usize = NONCE_LEN + 1 + TAG_LEN;

/// Codec byte of a body stored as is (compression did not pay).
pub const CODEC_STORED: u8 = 0;
/// Codec byte of a zstd-compressed body.
const CODEC_ZSTD: u8 = 1;

/// What a sealed region holds; part of its associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    TocNode = 1,
    VarNode = 2,
    Frame = 3,
    FrameIndex = 4,
    Commit = 5,
    KeySlot = 6,
    PackNode = 7,
    FreeNode = 8,
    RedactList = 9,
}

/// Fills `buf` from the operating system's random source.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))
}

/// The associated data of a sealed region.
pub fn aad(
    archive_id: &[u8; 16],
    kind: Kind,
    offset: u64,
    generation: u64,
    raw_len: u32,
) -> [u8; 41] {
    let mut a = [0u8; 41];
    a[..16].copy_from_slice(archive_id);
    a[16..20].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    a[20] = kind as u8;
    a[21..29].copy_from_slice(&offset.to_le_bytes());
    a[29..37].copy_from_slice(&generation.to_le_bytes());
    a[37..41].copy_from_slice(&raw_len.to_le_bytes());
    a
}

/// A region being prepared: `[nonce space][codec][body][tag space]`.
pub struct Prepared {
    pub buf: Vec<u8>,
    pub raw_len: u32,
}

impl Prepared {
    /// Compresses `raw` with zstd at `level` (`None`: store it) and keeps
    /// whichever is smaller.
    pub fn new(raw: &[u8], level: Option<i32>) -> Result<Prepared> {
        let raw_len = u32::try_from(raw.len()).map_err(|_| Error::LimitExceeded {
            what: "sealed region larger than 4 GiB".into(),
            limit: u32::MAX as u64,
        })?;
        let head = NONCE_LEN + 1;
        let mut buf = Vec::with_capacity(head + raw.len() + TAG_LEN);
        buf.resize(head, 0);
        let mut stored = true;
        if let (Some(level), true) = (level, raw.len() >= 64) {
            ZSTD_C.with(|c| -> Result<()> {
                let mut c = c.borrow_mut();
                let body = c.compress(raw, level)?;
                if body.len() + 8 < raw.len() {
                    buf.extend_from_slice(body);
                    buf[NONCE_LEN] = CODEC_ZSTD;
                    stored = false;
                }
                Ok(())
            })?;
        }
        if stored {
            buf[NONCE_LEN] = CODEC_STORED;
            buf.extend_from_slice(raw);
        }
        Ok(Prepared { buf, raw_len })
    }

    /// Length of the sealed region.
    pub fn sealed_len(&self) -> usize {
        self.buf.len() + TAG_LEN
    }

    /// Encrypts in place with a fresh random nonce under `key`, for the
    /// archive `archive_id`; returns the tag. After this `buf` is the whole
    /// sealed region.
    pub fn seal(&mut self, key: &SealKey, archive_id: &[u8; 16], aad: &[u8]) -> Result<[u8; 16]> {
        fill_random(&mut self.buf[..NONCE_LEN])?;
        let (nonce, body) = self.buf.split_at_mut(NONCE_LEN);
        crate::testing::on_seal(archive_id, &key.id, nonce);
        let nonce: &[u8; NONCE_LEN] = (&*nonce).try_into().expect("nonce prefix");
        let t = key
            .cipher
            .seal(nonce, aad, body)
            .map_err(|_| Error::LimitExceeded {
                what: "region too large to encrypt".into(),
                limit: u32::MAX as u64,
            })?;
        self.buf.extend_from_slice(&t);
        Ok(t)
    }
}

thread_local! {
    static ZSTD_C: std::cell::RefCell<Compressor> = std::cell::RefCell::new(Compressor::default());
    static ZSTD_D: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// A per-thread zstd context and output buffer, reused across frames.
#[derive(Default)]
struct Compressor {
    level: i32,
    inner: Option<zstd::bulk::Compressor<'static>>,
    out: Vec<u8>,
}

impl Compressor {
    fn compress(&mut self, raw: &[u8], level: i32) -> Result<&[u8]> {
        if self.inner.is_none() || self.level != level {
            self.inner = Some(zstd::bulk::Compressor::new(level)?);
            self.level = level;
        }
        let bound = zstd::zstd_safe::compress_bound(raw.len());
        self.out.clear();
        self.out.reserve(bound);
        if let Some(c) = self.inner.as_mut() {
            c.compress_to_buffer(raw, &mut self.out)?;
        }
        Ok(&self.out)
    }
}

/// Authenticates and decrypts a sealed `region` in place; returns the
/// plaintext's codec byte and body (a sub-slice of `region`).
pub fn open<'a>(
    cipher: &Cipher,
    aad: &[u8],
    region: &'a mut [u8],
    offset: u64,
) -> Result<(u8, &'a [u8])> {
    if region.len() < OVERHEAD {
        return Err(Error::corrupt(
            "sealed region shorter than its envelope",
            offset,
        ));
    }
    let (nonce, rest) = region.split_at_mut(NONCE_LEN);
    let split = rest.len() - TAG_LEN;
    let (body, tag) = rest.split_at_mut(split);
    let nonce: &[u8; NONCE_LEN] = (&*nonce).try_into().expect("nonce prefix");
    let tag: &[u8; TAG_LEN] = (&*tag).try_into().expect("tag suffix");
    cipher.open(nonce, aad, body, tag).map_err(|_| {
        Error::corrupt(
            "authentication failed (damaged, moved or replayed region)",
            offset,
        )
    })?;
    let (codec, body) = body
        .split_first()
        .ok_or_else(|| Error::corrupt("empty plaintext", offset))?;
    Ok((*codec, body))
}

/// Decodes an opened body into `out` (its previous contents dropped),
/// which then holds exactly `raw_len` bytes, or fails: one-shot zstd into
/// the buffer's reserved capacity (no zero-filling first), so a frame can
/// never expand beyond that capacity, and one that decodes to any other
/// length than its authenticated one is refused.
pub fn decode_into(
    codec: u8,
    body: &[u8],
    raw_len: usize,
    out: &mut Vec<u8>,
    offset: u64,
) -> Result<()> {
    out.clear();
    match codec {
        CODEC_STORED => {
            if body.len() != raw_len {
                return Err(Error::corrupt(
                    "stored body length differs from its recorded length",
                    offset,
                ));
            }
            out.extend_from_slice(body);
            Ok(())
        }
        CODEC_ZSTD => {
            out.reserve(raw_len);
            unzstd(body, out, raw_len, offset)
        }
        _ => Err(Error::corrupt("unknown codec", offset)),
    }
}

/// [`decode_into`] straight into `out`, exactly the body's recorded
/// length: a whole frame read into the caller's buffer without a copy.
pub fn decode_to_slice(codec: u8, body: &[u8], out: &mut [u8], offset: u64) -> Result<()> {
    let raw_len = out.len();
    match codec {
        CODEC_STORED => {
            if body.len() != raw_len {
                return Err(Error::corrupt(
                    "stored body length differs from its recorded length",
                    offset,
                ));
            }
            out.copy_from_slice(body);
            Ok(())
        }
        CODEC_ZSTD => unzstd(body, out, raw_len, offset),
        _ => Err(Error::corrupt("unknown codec", offset)),
    }
}

/// One-shot zstd of `body` into `out`'s room (a `Vec`'s spare capacity or
/// a slice), which must come to exactly `raw_len` bytes.
fn unzstd<W: zstd::zstd_safe::WriteBuf + ?Sized>(
    body: &[u8],
    out: &mut W,
    raw_len: usize,
    offset: u64,
) -> Result<()> {
    ZSTD_D.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        let dec = d
            .as_mut()
            .ok_or_else(|| Error::corrupt("zstd context", offset))?;
        let n = dec.decompress_to_buffer(body, out).map_err(|_| {
            Error::corrupt("zstd frame does not decode to its recorded length", offset)
        })?;
        if n != raw_len {
            return Err(Error::corrupt(
                "zstd frame does not decode to its recorded length",
                offset,
            ));
        }
        Ok(())
    })
}
