//! XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03): HChaCha20 derives a
//! one-use key from the key and the first 16 bytes of the 24-byte nonce,
//! then ChaCha20-Poly1305 (RFC 8439) runs under that key with the nonce
//! `0u32 ‖ nonce[16..24]`. HChaCha20 is the `chacha20` crate's; the bulk
//! AEAD is `ring`'s assembly, 2.3 × the throughput of the portable AVX2
//! code on the machine of `docs/benchmark_history.md` (the import seals,
//! and every read opens, the whole compressed archive). The bytes are
//! those of any XChaCha20-Poly1305: a test checks them against the
//! `chacha20poly1305` crate.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::{Zeroize, Zeroizing};

/// Bytes of a nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of an authentication tag.
pub const TAG_LEN: usize = 16;

/// An XChaCha20-Poly1305 key. The key bytes are wiped on drop; so is the
/// one-use key of each call (ring's copy of it lives on the stack for the
/// call only).
#[derive(Clone)]
pub struct Cipher {
    key: Zeroizing<[u8; 32]>,
}

/// Encryption or authentication failed: the region is damaged, moved or
/// replayed, or (sealing) longer than the AEAD accepts.
#[derive(Debug)]
pub struct Failed;

impl Cipher {
    /// A cipher under `key`.
    pub fn new(key: &[u8; 32]) -> Cipher {
        Cipher {
            key: Zeroizing::new(*key),
        }
    }

    /// The RFC 8439 key and nonce that `nonce` selects under this key.
    fn one_use(&self, nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
        let input: [u8; 16] = nonce[..16].try_into().expect("16-byte prefix");
        let mut sub: [u8; 32] = chacha20::hchacha::<chacha20::R20>(
            &chacha20::Key::from(*self.key),
            &chacha20::cipher::Array::from(input),
        )
        .into();
        let key = UnboundKey::new(&CHACHA20_POLY1305, &sub).expect("32-byte key");
        sub.zeroize();
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&nonce[16..]);
        (LessSafeKey::new(key), Nonce::assume_unique_for_key(n))
    }

    /// Encrypts `buf` in place; returns the tag. `nonce` must never be
    /// used twice with this key.
    pub fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Failed> {
        let (key, n) = self.one_use(nonce);
        let tag = key
            .seal_in_place_separate_tag(n, Aad::from(aad), buf)
            .map_err(|_| Failed)?;
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag.as_ref());
        Ok(t)
    }

    /// Authenticates and decrypts `buf` in place. On failure `buf` holds
    /// no plaintext the caller may use.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Failed> {
        let (key, n) = self.one_use(nonce);
        let tag = Tag::from(*tag);
        key.open_in_place_separate_tag(n, Aad::from(aad), tag, buf, 0..)
            .map(|_| ())
            .map_err(|_| Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305, XNonce};

    /// Same bytes as the `chacha20poly1305` crate, at lengths around the
    /// 64-byte block and ring's multi-block strides.
    #[test]
    fn matches_the_reference_xchacha20poly1305() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        };
        for len in [
            0usize, 1, 15, 16, 63, 64, 65, 255, 256, 257, 1000, 4096, 70_001,
        ] {
            let key: [u8; 32] = std::array::from_fn(|_| next());
            let nonce: [u8; 24] = std::array::from_fn(|_| next());
            let aad: Vec<u8> = (0..len % 50).map(|_| next()).collect();
            let plain: Vec<u8> = (0..len).map(|_| next()).collect();

            let reference = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(key));
            let mut want = plain.clone();
            let want_tag = reference
                .encrypt_inout_detached(&XNonce::from(nonce), &aad, want.as_mut_slice().into())
                .unwrap();

            let c = Cipher::new(&key);
            let mut got = plain.clone();
            let tag = c.seal(&nonce, &aad, &mut got).unwrap();
            assert_eq!(got, want, "ciphertext, {len} bytes");
            assert_eq!(&tag[..], &want_tag[..], "tag, {len} bytes");

            c.open(&nonce, &aad, &mut got, &tag).unwrap();
            assert_eq!(got, plain, "round trip, {len} bytes");

            // Any flipped bit of the ciphertext, tag, nonce or data fails.
            let mut sealed = want.clone();
            if len > 0 {
                sealed[len / 2] ^= 1;
                assert!(c.open(&nonce, &aad, &mut sealed, &tag).is_err());
            }
            let mut bad_tag = tag;
            bad_tag[3] ^= 0x80;
            assert!(c.open(&nonce, &aad, &mut want.clone(), &bad_tag).is_err());
            for i in [0, 15, 16, 23] {
                let mut n = nonce;
                n[i] ^= 4;
                assert!(c.open(&n, &aad, &mut want.clone(), &tag).is_err());
            }
            let mut a = aad.clone();
            a.push(1);
            assert!(c.open(&nonce, &a, &mut want.clone(), &tag).is_err());
        }
    }
}
