//! A harness that tracks key slots.

use super::*;

// ---------------------------------------------------------------------------
// A harness that tracks key slots
// ---------------------------------------------------------------------------

/// Raw key ids the generator uses; the lockbox is created with `INITIAL_KEY`.
pub const KEY_IDS: [u8; 5] = [5, 6, 7, 8, 9];
pub const INITIAL_KEY: u8 = 7;
pub const MAX_SLOTS: usize = 16;

pub fn raw(id: u8) -> Key {
    Key::raw([id; 32])
}

/// Like `common::Harness`, but reopens with a key that still has a slot.
pub struct KHarness {
    pub backend: Backend,
    /// The options every open uses (some sequences defer repacks to
    /// relocation commits).
    pub builder: lockbox::Builder,
    pub _dir: Option<tempfile::TempDir>,
    pub path: PathBuf,
    pub lb: Option<Lockbox>,
    /// Key slots by raw key id (a key added twice has two slots).
    pub slots: BTreeMap<u8, usize>,
    /// Ids that had a slot once and have none now.
    pub removed: BTreeSet<u8>,
}

impl KHarness {
    pub fn create(backend: Backend, builder: lockbox::Builder) -> Self {
        let (dir, path, lb) = match backend {
            Backend::File => {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("test.lbox");
                let lb = builder
                    .clone()
                    .create(&path, raw(INITIAL_KEY))
                    .expect("Lockbox::create");
                (Some(dir), path, lb)
            }
            Backend::Memory => {
                let lb = builder
                    .clone()
                    .create_in_memory(raw(INITIAL_KEY))
                    .expect("create_in_memory");
                (None, PathBuf::new(), lb)
            }
        };
        KHarness {
            backend,
            builder,
            _dir: dir,
            path,
            lb: Some(lb),
            slots: BTreeMap::from([(INITIAL_KEY, 1)]),
            removed: BTreeSet::new(),
        }
    }

    pub fn lb(&self) -> &Lockbox {
        self.lb.as_ref().expect("lockbox handle")
    }

    pub fn lb_mut(&mut self) -> &mut Lockbox {
        self.lb.as_mut().expect("lockbox handle")
    }

    pub fn slot_count(&self) -> usize {
        self.slots.values().sum()
    }

    /// Drops the handle and opens the durable state again with a key that
    /// has a slot (`pick` chooses which); a removed key is refused first.
    pub fn reopen(&mut self, pick: u64) -> Result<(), String> {
        let lb = self.lb.take().expect("lockbox handle");
        let live: Vec<u8> = self.slots.keys().copied().collect();
        let k = live[pick as usize % live.len()];
        let dead = self.removed.iter().next().copied();
        let open = |img: Option<Vec<u8>>, id: u8| -> lockbox::Result<Lockbox> {
            match img {
                None => self.builder.clone().open(&self.path, raw(id)),
                Some(img) => self.builder.clone().open_bytes(img, raw(id)),
            }
        };
        let img = match self.backend {
            Backend::File => None,
            Backend::Memory => Some(lb.image().map_err(|e| format!("image(): {e:?}"))?),
        };
        drop(lb);
        if let Some(d) = dead {
            match open(img.clone(), d) {
                Err(Error::WrongKey) => {}
                Err(e) => {
                    return Err(format!(
                        "open with removed key #{d}: {e:?}, expected WrongKey"
                    ));
                }
                Ok(_) => return Err(format!("open with removed key #{d} succeeded")),
            }
        }
        let lb = open(img, k).map_err(|e| format!("reopen with key #{k}: {e:?}"))?;
        if lb.key_count() != self.slot_count() {
            return Err(format!(
                "key_count() {} after reopen, reference {} ({:?})",
                lb.key_count(),
                self.slot_count(),
                self.slots
            ));
        }
        self.lb = Some(lb);
        Ok(())
    }
}
