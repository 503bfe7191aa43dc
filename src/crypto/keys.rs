//! User keys, the master key and the subkeys derived from it.

use crate::crypto::aead::Cipher;
use zeroize::{Zeroize, Zeroizing};

/// A key that opens a lockbox: a passphrase (stretched with Argon2id) or a
/// raw 256-bit key. Zeroized on drop; never printed by `Debug`.
#[derive(Clone)]
pub struct Key(pub(crate) KeyKind);

#[derive(Clone)]
pub(crate) enum KeyKind {
    Passphrase(Zeroizing<String>),
    Raw(Zeroizing<[u8; 32]>),
}

impl Key {
    /// A passphrase key. Its wrapping key is derived with Argon2id using the
    /// parameters stored in the key slot.
    pub fn passphrase(passphrase: impl Into<String>) -> Key {
        Key(KeyKind::Passphrase(Zeroizing::new(passphrase.into())))
    }

    /// A raw 256-bit key (for keys kept in a secret store or a KMS).
    pub fn raw(key: [u8; 32]) -> Key {
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&key);
        let mut key = key;
        key.zeroize();
        Key(KeyKind::Raw(k))
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            KeyKind::Passphrase(_) => f.write_str("Key::Passphrase(<redacted>)"),
            KeyKind::Raw(_) => f.write_str("Key::Raw(<redacted>)"),
        }
    }
}

/// The archive's random master key. Only used to derive subkeys.
pub(crate) struct MasterKey(pub(crate) Zeroizing<[u8; 32]>);

impl MasterKey {
    /// A second copy (for a compacted file, which keeps the same key).
    pub fn duplicate(&self) -> MasterKey {
        MasterKey(Zeroizing::new(*self.0))
    }

    pub fn random() -> crate::Result<MasterKey> {
        let mut k = Zeroizing::new([0u8; 32]);
        crate::crypto::seal::fill_random(&mut k[..])?;
        Ok(MasterKey(k))
    }
}

/// A subkey that seals regions: its cipher, and a short identity for the
/// test-only nonce recorder (`testing::start_recording`). The identity is
/// a one-way hash of the subkey, not the key: it is computed once here, so
/// a seal that is not being recorded pays nothing for it.
pub(crate) struct SealKey {
    pub cipher: Cipher,
    pub id: KeyId,
}

/// Identity of a sealing key in the nonce recorder.
pub type KeyId = [u8; 16];

/// The recorder's identity of `key`: 128 bits of a BLAKE3 derivation from
/// it. Compacted copies and reopened images derive the same subkeys from
/// the same master key, so they get the same identity, which is what lets
/// the recorder see a nonce repeated across them.
pub(crate) fn key_id(key: &[u8; 32]) -> KeyId {
    let full = blake3::derive_key("lockbox v1 2026-11 test-only key identity", key);
    let mut id = [0u8; 16];
    id.copy_from_slice(&full[..16]);
    id
}

/// The subkeys derived from the master key, one per purpose, so the master
/// key itself never encrypts anything.
pub(crate) struct SubKeys {
    /// Seals metadata: TOC and variable nodes, frame indexes.
    pub meta: SealKey,
    /// Seals file-data frames.
    pub data: SealKey,
    /// Seals the commit slots.
    pub commit: SealKey,
    /// Keys content hashes (deduplication and the content index).
    pub hash: Zeroizing<[u8; 32]>,
}

fn derive(context: &str, master: &MasterKey) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(blake3::derive_key(context, &master.0[..]))
}

fn seal_key(context: &str, master: &MasterKey) -> SealKey {
    let k = derive(context, master);
    SealKey {
        cipher: Cipher::new(&k),
        id: key_id(&k),
    }
}

impl SubKeys {
    pub fn derive(master: &MasterKey) -> SubKeys {
        SubKeys {
            meta: seal_key("lockbox v1 2026-11 metadata pages", master),
            data: seal_key("lockbox v1 2026-11 data frames", master),
            commit: seal_key("lockbox v1 2026-11 commit slots", master),
            hash: derive("lockbox v1 2026-11 content hash", master),
        }
    }
}

impl std::fmt::Debug for SubKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubKeys(<redacted>)")
    }
}
