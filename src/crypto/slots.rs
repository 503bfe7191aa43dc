//! Key slots: each wraps the master key under a key derived from a
//! passphrase (Argon2id) or a raw key. The slot table is stored twice
//! (tables A and B, newest valid sequence wins) so it can be rewritten
//! without a window where no table is valid.

use zeroize::Zeroizing;

use super::aead::Cipher;
use super::keys::{Key, KeyKind, MasterKey};
use super::seal::{Kind, fill_random};
use crate::error::{Error, Result};
use crate::format::FORMAT_VERSION;
use crate::format::bytes::{Put, Reader};

/// Argon2id parameters of a passphrase slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes (parallelism).
    pub p: u32,
}

impl KdfParams {
    /// The weakest parameters `create` accepts: 19 MiB, 2 passes, 1 lane.
    pub const MIN: KdfParams = KdfParams {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };
    /// The strongest parameters `open` runs (checked before allocating):
    /// 4 GiB, 16 passes, 16 lanes.
    pub const MAX: KdfParams = KdfParams {
        m_kib: 4 * 1024 * 1024,
        t: 16,
        p: 16,
    };

    fn within_max(&self) -> bool {
        self.m_kib <= Self::MAX.m_kib
            && self.t <= Self::MAX.t
            && self.p <= Self::MAX.p
            && self.p >= 1
    }

    /// Checks the parameters for a new slot.
    pub fn check_for_create(&self) -> Result<()> {
        if self.m_kib < Self::MIN.m_kib || self.t < Self::MIN.t || self.p < 1 {
            return Err(Error::InvalidKdfParams(format!(
                "{self:?} is weaker than the minimum m = 19 MiB, t = 2, p = 1"
            )));
        }
        if !self.within_max() {
            return Err(Error::InvalidKdfParams(format!(
                "{self:?} is above the maximum m = 4 GiB, t = 16, p = 16"
            )));
        }
        if self.m_kib < 8 * self.p {
            return Err(Error::InvalidKdfParams(
                "m_kib must be at least 8 × p".into(),
            ));
        }
        Ok(())
    }
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane.
    fn default() -> Self {
        KdfParams {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

const SLOT_PASSPHRASE: u8 = 1;
const SLOT_RAW: u8 = 2;
/// Encoded size of one slot.
pub const SLOT_LEN: usize = 128;
/// Slots per table.
pub const MAX_SLOTS: usize = 16;

/// One key slot as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    kind: u8,
    kdf: KdfParams,
    salt: [u8; 16],
    nonce: [u8; 24],
    wrapped: [u8; 32],
    tag: [u8; 16],
}

fn wrapping_key(
    key: &Key,
    kind: u8,
    kdf: &KdfParams,
    salt: &[u8; 16],
) -> Result<Option<Zeroizing<[u8; 32]>>> {
    let mut out = Zeroizing::new([0u8; 32]);
    match (&key.0, kind) {
        (KeyKind::Passphrase(p), SLOT_PASSPHRASE) => {
            if !kdf.within_max() {
                return Err(Error::InvalidKdfParams(format!(
                    "a key slot asks for {kdf:?}, above the maximum m = 4 GiB, t = 16, p = 16; \
                     refusing to run it"
                )));
            }
            let params = argon2::Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32))
                .map_err(|e| Error::InvalidKdfParams(e.to_string()))?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(p.as_bytes(), salt, &mut out[..])
                .map_err(|e| Error::InvalidKdfParams(e.to_string()))?;
        }
        (KeyKind::Raw(r), SLOT_RAW) => {
            let mut h = blake3::Hasher::new_derive_key("lockbox v1 2026-11 raw key slot");
            h.update(&r[..]);
            h.update(salt);
            out.copy_from_slice(h.finalize().as_bytes());
        }
        _ => return Ok(None),
    }
    Ok(Some(out))
}

fn slot_aad(archive_id: &[u8; 16]) -> [u8; 21] {
    let mut a = [0u8; 21];
    a[..16].copy_from_slice(archive_id);
    a[16..20].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    a[20] = Kind::KeySlot as u8;
    a
}

impl Slot {
    /// Wraps `master` under `key`.
    pub fn new(
        key: &Key,
        kdf: KdfParams,
        master: &MasterKey,
        archive_id: &[u8; 16],
    ) -> Result<Slot> {
        let (kind, kdf) = match key.0 {
            KeyKind::Passphrase(_) => {
                kdf.check_for_create()?;
                (SLOT_PASSPHRASE, kdf)
            }
            KeyKind::Raw(_) => (
                SLOT_RAW,
                KdfParams {
                    m_kib: 0,
                    t: 0,
                    p: 0,
                },
            ),
        };
        let mut salt = [0u8; 16];
        fill_random(&mut salt)?;
        let mut nonce = [0u8; 24];
        fill_random(&mut nonce)?;
        let wk = wrapping_key(key, kind, &kdf, &salt)?.ok_or(Error::WrongKey)?;
        if crate::testing::recording() {
            // Each slot has its own wrapping key (its own salt): its own
            // identity in the recorder. Hashed only while recording.
            let id = crate::crypto::keys::key_id(&wk);
            crate::testing::on_seal(archive_id, &id, &nonce);
        }
        let mut wrapped = *master.0;
        let tag = Cipher::new(&wk)
            .seal(&nonce, &slot_aad(archive_id), &mut wrapped[..])
            .map_err(|_| Error::corrupt("key wrap failed", 0))?;
        Ok(Slot {
            kind,
            kdf,
            salt,
            nonce,
            wrapped,
            tag,
        })
    }

    /// Unwraps the master key with `key`; `None` if this slot is not the
    /// key's kind or the key is wrong. Runs at most one KDF.
    pub fn unwrap(&self, key: &Key, archive_id: &[u8; 16]) -> Result<Option<MasterKey>> {
        let Some(wk) = wrapping_key(key, self.kind, &self.kdf, &self.salt)? else {
            return Ok(None);
        };
        let mut m = Zeroizing::new(self.wrapped);
        match Cipher::new(&wk).open(&self.nonce, &slot_aad(archive_id), &mut m[..], &self.tag) {
            Ok(()) => Ok(Some(MasterKey(m))),
            Err(_) => Ok(None),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u8(self.kind);
        out.put_u32(self.kdf.m_kib);
        out.put_u32(self.kdf.t);
        out.put_u32(self.kdf.p);
        out.put_bytes(&self.salt);
        out.put_bytes(&self.nonce);
        out.put_bytes(&self.wrapped);
        out.put_bytes(&self.tag);
        out.resize(start + SLOT_LEN, 0);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Slot> {
        let raw = r.bytes(SLOT_LEN)?;
        let mut r = Reader::new(raw, "key slot", 0);
        let kind = r.u8()?;
        if kind != SLOT_PASSPHRASE && kind != SLOT_RAW {
            return Err(r.err("unknown slot kind"));
        }
        Ok(Slot {
            kind,
            kdf: KdfParams {
                m_kib: r.u32()?,
                t: r.u32()?,
                p: r.u32()?,
            },
            salt: r.array()?,
            nonce: r.array()?,
            wrapped: r.array()?,
            tag: r.array()?,
        })
    }
}

/// A key slot table: `seq u64, count u8, pad[7], slots[count × 128], zeros,
/// blake3(table[0..TABLE_LEN-32])` at `TABLE_LEN - 32`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotTable {
    pub seq: u64,
    pub slots: Vec<Slot>,
}

/// Size of one slot table on disk.
pub const TABLE_LEN: usize = 4096;

impl SlotTable {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TABLE_LEN);
        out.put_u64(self.seq);
        out.put_u8(self.slots.len() as u8);
        out.resize(16, 0);
        for s in &self.slots {
            s.encode(&mut out);
        }
        out.resize(TABLE_LEN - 32, 0);
        let sum = blake3::hash(&out);
        out.put_bytes(sum.as_bytes());
        out
    }

    /// Decodes a table; `None` if its checksum does not match (never
    /// written, torn, or damaged).
    pub fn decode(buf: &[u8], offset: u64) -> Result<Option<SlotTable>> {
        if buf.len() != TABLE_LEN {
            return Ok(None);
        }
        let (body, sum) = buf.split_at(TABLE_LEN - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Ok(None);
        }
        let mut r = Reader::new(body, "key slot table", offset);
        let seq = r.u64()?;
        let count = r.u8()? as usize;
        r.bytes(7)?;
        if count == 0 || count > MAX_SLOTS {
            return Err(r.err("slot count out of range"));
        }
        let slots = (0..count)
            .map(|_| Slot::decode(&mut r))
            .collect::<Result<_>>()?;
        Ok(Some(SlotTable { seq, slots }))
    }
}
