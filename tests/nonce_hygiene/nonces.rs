//! A backend that keeps every write, and the nonces found in regions and
//! writes.

use super::*;
use lockbox::testing::Backend;
use std::sync::{Arc, Mutex, RwLock};

// ---------------------------------------------------------------------------
// A backend that keeps every write
// ---------------------------------------------------------------------------

#[derive(Default)]
pub struct Shared {
    pub bytes: RwLock<Vec<u8>>,
    pub writes: Mutex<Vec<(u64, Vec<u8>)>>,
}

// Not the RecBackend of tests/support: this one keeps the data of every write, synced or not.
#[derive(Clone, Default)]
pub struct Rec(Arc<Shared>);

impl Rec {
    pub fn from_bytes(b: Vec<u8>) -> Rec {
        let r = Rec::default();
        *r.0.bytes.write().unwrap() = b;
        r
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.0.bytes.read().unwrap().clone()
    }
    pub fn writes(&self) -> Vec<(u64, Vec<u8>)> {
        self.0.writes.lock().unwrap().clone()
    }
}

impl Backend for Rec {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> lockbox::Result<()> {
        let b = self.0.bytes.read().unwrap();
        let s = offset as usize;
        match b.get(s..s + buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "past the end",
            ))),
        }
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> lockbox::Result<()> {
        let mut b = self.0.bytes.write().unwrap();
        let s = offset as usize;
        if b.len() < s + data.len() {
            b.resize(s + data.len(), 0);
        }
        b[s..s + data.len()].copy_from_slice(data);
        self.0.writes.lock().unwrap().push((offset, data.to_vec()));
        Ok(())
    }
    fn sync(&self) -> lockbox::Result<()> {
        Ok(())
    }
    fn len(&self) -> lockbox::Result<u64> {
        Ok(self.0.bytes.read().unwrap().len() as u64)
    }
    fn set_len(&self, len: u64) -> lockbox::Result<()> {
        self.0.bytes.write().unwrap().resize(len as usize, 0);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Nonces found in regions and writes
// ---------------------------------------------------------------------------

/// The subkey a region kind is sealed with (format.md §4).
pub fn domain(kind: u8) -> &'static str {
    match kind {
        forge::kind::FRAME => "data",
        forge::kind::COMMIT => "commit",
        _ => "meta",
    }
}

/// Every (domain, nonce) seen, with the hashes of the sealed regions that
/// carried it, and where.
#[derive(Default)]
pub struct Nonces {
    pub seen: BTreeMap<(&'static str, [u8; 24]), BTreeSet<[u8; 32]>>,
    pub wherefrom: BTreeMap<[u8; 24], Vec<String>>,
    /// First 24 bytes of every write of a sealed region or run of regions.
    pub written: BTreeMap<[u8; 24], BTreeSet<[u8; 32]>>,
}

impl Nonces {
    pub fn add(&mut self, dom: &'static str, nonce: [u8; 24], region: &[u8], what: String) {
        self.seen
            .entry((dom, nonce))
            .or_default()
            .insert(*blake3::hash(region).as_bytes());
        self.wherefrom.entry(nonce).or_default().push(what);
    }

    /// Every region reachable from the newest commit of `image`, both
    /// commit slots, and the key slots of both tables.
    pub fn snapshot(&mut self, image: &[u8], label: &str) -> usize {
        let keys = forge::unwrap_raw(image, &RAW).expect("unwrap");
        let rec = forge::newest_commit(&keys, image).expect("commit");
        let regions = forge::walk(&keys, image, &rec).expect("walk");
        for r in &regions {
            let b = &image[r.ptr.offset as usize..r.ptr.end() as usize];
            let n = forge::nonce_of(image, r.ptr.offset);
            self.add(
                domain(r.kind),
                n,
                b,
                format!("{label}: kind {} at {}", r.kind, r.ptr.offset),
            );
        }
        for (i, _) in forge::commit_records(&keys, image) {
            let off = forge::COMMIT_SLOTS[i];
            let b = &image[off as usize..off as usize + 553];
            self.add(
                "commit",
                forge::nonce_of(image, off),
                b,
                format!("{label}: commit slot {i}"),
            );
        }
        for t in forge::SLOT_TABLES {
            let table = &image[t..t + forge::TABLE_LEN];
            for s in 0..table[8] as usize {
                let slot = &table[16 + s * 128..16 + (s + 1) * 128];
                let n: [u8; 24] = slot[29..53].try_into().unwrap();
                // Each slot has its own wrapping key: its own domain.
                self.add(
                    "slot",
                    n,
                    &slot[..101],
                    format!("{label}: table {t} slot {s}"),
                );
            }
        }
        regions.len()
    }

    /// The writes a backend logged: a sealed region (or a run of them)
    /// starts every write of 41 bytes or more at a commit slot or in the
    /// data area; zero-fills (redaction) are skipped.
    pub fn writes(&mut self, log: &[(u64, Vec<u8>)]) -> usize {
        let mut n = 0;
        for (off, b) in log {
            let at_region = *off >= forge::DATA_START || forge::COMMIT_SLOTS.contains(off);
            if !at_region || b.len() < forge::OVERHEAD || b[..24].iter().all(|&x| x == 0) {
                continue;
            }
            let nonce: [u8; 24] = b[..24].try_into().unwrap();
            self.written
                .entry(nonce)
                .or_default()
                .insert(*blake3::hash(b).as_bytes());
            n += 1;
        }
        n
    }

    pub fn assert_unique(&self) {
        let reused: Vec<_> = self.seen.iter().filter(|(_, v)| v.len() > 1).collect();
        assert!(
            reused.is_empty(),
            "{} nonce(s) sealed different regions under one key, e.g. {:?} at {:?}",
            reused.len(),
            reused[0].0,
            self.wherefrom.get(&reused[0].0.1)
        );
        // A write's bytes may be logged once per region-run; a run's first
        // nonce must never start two different writes.
        let rewritten: Vec<_> = self.written.iter().filter(|(_, v)| v.len() > 1).collect();
        assert!(
            rewritten.is_empty(),
            "{} nonce(s) began two different writes, e.g. {:?}",
            rewritten.len(),
            rewritten.first().map(|x| x.0)
        );
    }
}
