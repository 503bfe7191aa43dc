//! A recording memory backend that can crash from its N-th mutating
//! operation (write, sync or set_len) on: that operation and every later
//! one, reads included, fail (the machine is gone). The test keeps a handle
//! on it after lockbox owns a clone.
//!
//! It logs every mutating operation, and keeps the bytes that syncs made
//! permanent (`durable`) apart from the writes issued since the last sync
//! (`pending`, with their data) and the operation a crash interrupted
//! (`in_flight`), so a crash test can build the disk images a real machine
//! could be left with.
//!
//! Part of `tests/support`; `tests/crash` includes this file alone (with
//! `#[path]`), next to `tests/common`.
#![allow(dead_code)]

use lockbox::Error;
use lockbox::testing::{Backend, read_image, write_image};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// One mutating backend operation, as the recording backend saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpRec {
    Write { off: u64, len: u64 },
    Sync,
    SetLen(u64),
}

impl OpRec {
    /// `"write"`, `"sync"` or `"set_len"`.
    pub fn name(&self) -> &'static str {
        match self {
            OpRec::Write { .. } => "write",
            OpRec::Sync => "sync",
            OpRec::SetLen(_) => "set_len",
        }
    }
}

/// A write or length change not made durable by a sync (yet).
#[derive(Clone, Debug)]
pub enum Pend {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

impl Pend {
    pub fn brief(&self) -> String {
        match self {
            Pend::Write(off, d) => format!("write@{off}+{}", d.len()),
            Pend::SetLen(l) => format!("set_len({l})"),
        }
    }

    /// Lands this operation on `img`.
    pub fn apply(&self, img: &mut Vec<u8>) {
        match self {
            Pend::Write(off, d) => apply_bytes(img, *off, d),
            Pend::SetLen(l) => img.resize(*l as usize, 0),
        }
    }
}

/// Writes `d` into `img` at `off`, growing `img` as needed.
pub fn apply_bytes(img: &mut Vec<u8>, off: u64, d: &[u8]) {
    write_image(img, off, d).expect("a test image offset fits in memory");
}

#[derive(Default)]
pub struct Disk {
    /// What the syncs so far made permanent.
    pub durable: Vec<u8>,
    /// What reads see (every write issued, synced or not): `durable` with
    /// `pending` applied.
    pub current: Vec<u8>,
    /// Writes and length changes since the last sync, in issue order.
    pub pending: Vec<Pend>,
    /// Mutating operations started (write, sync, set_len).
    pub ops: u64,
    /// Every mutating operation, in order (the failed ones too).
    pub log: Vec<OpRec>,
    /// From this mutating operation on (0-based), everything fails, reads
    /// included: the machine is gone.
    pub fail_from: Option<u64>,
    pub failed: bool,
    /// The operation the crash interrupted, if it was a write or set_len:
    /// it may have landed, wholly or in part.
    pub in_flight: Option<Pend>,
}

impl Disk {
    /// What the operation the crash interrupted was (`"write"`, `"sync"`
    /// or `"set_len"`); `""` before a crash.
    pub fn crash_op(&self) -> &'static str {
        match self.log.last() {
            Some(op) if self.failed => op.name(),
            _ => "",
        }
    }
}

fn gone() -> Error {
    Error::Io(io::Error::other("simulated crash: the machine is gone"))
}

/// A memory backend the test keeps a handle on after lockbox owns a clone.
#[derive(Clone, Default)]
pub struct RecBackend(pub Arc<Mutex<Disk>>);

impl RecBackend {
    pub fn new() -> RecBackend {
        RecBackend::default()
    }

    /// A backend whose durable and current bytes are `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> RecBackend {
        let b = RecBackend::default();
        {
            let mut d = b.disk();
            d.current = bytes.clone();
            d.durable = bytes;
        }
        b
    }

    pub fn disk(&self) -> MutexGuard<'_, Disk> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn ops(&self) -> u64 {
        self.disk().ops
    }

    pub fn fail_from(&self, n: Option<u64>) {
        self.disk().fail_from = n;
    }

    /// Whether an operation failed (the machine is gone).
    pub fn failed(&self) -> bool {
        self.disk().failed
    }

    pub fn durable(&self) -> Vec<u8> {
        self.disk().durable.clone()
    }

    pub fn current(&self) -> Vec<u8> {
        self.disk().current.clone()
    }

    pub fn log_from(&self, start: u64) -> Vec<OpRec> {
        self.disk().log[start as usize..].to_vec()
    }

    /// Starts a mutating operation (`pend`: its change, for a write or
    /// set_len); fails from `fail_from` on.
    fn begin(d: &mut Disk, op: OpRec, pend: Option<&Pend>) -> lockbox::Result<()> {
        if d.failed {
            return Err(gone());
        }
        let n = d.ops;
        d.ops += 1;
        d.log.push(op);
        if d.fail_from.is_some_and(|f| n >= f) {
            d.failed = true;
            d.in_flight = pend.cloned();
            return Err(gone());
        }
        Ok(())
    }

    /// A write or set_len: recorded, then landed on `current` and kept in
    /// `pending` until the next sync.
    fn change(&self, op: OpRec, p: Pend) -> lockbox::Result<()> {
        let mut d = self.disk();
        RecBackend::begin(&mut d, op, Some(&p))?;
        p.apply(&mut d.current);
        d.pending.push(p);
        Ok(())
    }
}

impl Backend for RecBackend {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> lockbox::Result<()> {
        let d = self.disk();
        if d.failed {
            return Err(gone());
        }
        read_image(&d.current, offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> lockbox::Result<()> {
        let op = OpRec::Write {
            off: offset,
            len: data.len() as u64,
        };
        self.change(op, Pend::Write(offset, data.to_vec()))
    }

    fn sync(&self) -> lockbox::Result<()> {
        let mut d = self.disk();
        RecBackend::begin(&mut d, OpRec::Sync, None)?;
        d.durable = d.current.clone();
        d.pending.clear();
        Ok(())
    }

    fn len(&self) -> lockbox::Result<u64> {
        let d = self.disk();
        if d.failed {
            return Err(gone());
        }
        Ok(d.current.len() as u64)
    }

    fn set_len(&self, len: u64) -> lockbox::Result<()> {
        self.change(OpRec::SetLen(len), Pend::SetLen(len))
    }
}
