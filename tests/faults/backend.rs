//! The fault backend: fails the N-th operation of one kind, once or from
//! then on.

use super::*;
use lockbox::testing::{read_image, write_image};

// ---------------------------------------------------------------------------
// The fault backend
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    Read,
    Write,
    Sync,
    SetLen,
}

#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub kind: OpKind,
    /// 1-based: the N-th operation of `kind` fails.
    pub nth: u64,
    /// Every later operation of `kind` fails too.
    pub permanent: bool,
}

#[derive(Default)]
pub struct Disk {
    /// What successful syncs made permanent.
    pub durable: Vec<u8>,
    /// Every successful write applied.
    pub current: Vec<u8>,
    pub counts: [u64; 4],
    /// Syncs that succeeded.
    pub ok_syncs: u64,
    pub fault: Option<Fault>,
    /// Operations failed so far.
    pub fired: u64,
    /// The workload step during which the fault first fired.
    pub first_fired_in: Option<String>,
    /// The current workload step (for messages).
    pub step: String,
}

// Not the RecBackend of tests/support: it fails one op kind (reads too), and later ops still run.
#[derive(Clone)]
pub struct FaultBackend(Arc<Mutex<Disk>>);

impl FaultBackend {
    pub fn new(fault: Option<Fault>) -> Self {
        FaultBackend(Arc::new(Mutex::new(Disk {
            fault,
            ..Default::default()
        })))
    }

    /// A backend holding `bytes` (all durable).
    pub fn with_bytes(bytes: Vec<u8>, fault: Option<Fault>) -> Self {
        FaultBackend(Arc::new(Mutex::new(Disk {
            durable: bytes.clone(),
            current: bytes,
            fault,
            ..Default::default()
        })))
    }

    pub fn disk(&self) -> MutexGuard<'_, Disk> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn fired(&self) -> u64 {
        self.disk().fired
    }

    /// Counts an operation; fails it if the fault says so.
    fn hit(&self, d: &mut Disk, kind: OpKind) -> lockbox::Result<()> {
        let i = kind as usize;
        d.counts[i] += 1;
        let n = d.counts[i];
        if let Some(f) = d.fault
            && f.kind == kind
            && (n == f.nth || (f.permanent && n > f.nth))
        {
            d.fired += 1;
            if d.first_fired_in.is_none() {
                d.first_fired_in = Some(d.step.clone());
            }
            return Err(Error::Io(io::Error::other(format!(
                "injected fault: {kind:?} #{n}"
            ))));
        }
        Ok(())
    }
}

impl Backend for FaultBackend {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> lockbox::Result<()> {
        let mut d = self.disk();
        self.hit(&mut d, OpKind::Read)?;
        read_image(&d.current, offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> lockbox::Result<()> {
        let mut d = self.disk();
        self.hit(&mut d, OpKind::Write)?;
        write_image(&mut d.current, offset, data)
    }

    fn sync(&self) -> lockbox::Result<()> {
        let mut d = self.disk();
        self.hit(&mut d, OpKind::Sync)?;
        d.durable = d.current.clone();
        d.ok_syncs += 1;
        Ok(())
    }

    fn len(&self) -> lockbox::Result<u64> {
        Ok(self.disk().current.len() as u64)
    }

    fn set_len(&self, len: u64) -> lockbox::Result<()> {
        let mut d = self.disk();
        self.hit(&mut d, OpKind::SetLen)?;
        d.current.resize(len as usize, 0);
        Ok(())
    }
}
