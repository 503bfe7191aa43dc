//! An in-memory backend: a growable byte vector.

use std::io;
use std::sync::RwLock;

use super::backend::Backend;
use crate::error::{Error, Result};

#[derive(Default)]
pub struct MemoryBackend {
    bytes: RwLock<Vec<u8>>,
}

fn poisoned() -> Error {
    Error::Io(io::Error::other("memory backend lock poisoned"))
}

impl MemoryBackend {
    pub fn new(bytes: Vec<u8>) -> MemoryBackend {
        MemoryBackend {
            bytes: RwLock::new(bytes),
        }
    }
}

impl Backend for MemoryBackend {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let b = self.bytes.read().map_err(|_| poisoned())?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.checked_add(buf.len()).filter(|&e| e <= b.len());
        match end {
            Some(end) => {
                buf.copy_from_slice(&b[start..end]);
                Ok(())
            }
            None => Err(Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end",
            ))),
        }
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let mut b = self.bytes.write().map_err(|_| poisoned())?;
        let start =
            usize::try_from(offset).map_err(|_| Error::Io(io::Error::other("offset too large")))?;
        let end = start + data.len();
        if b.len() < end {
            b.resize(end, 0);
        }
        b[start..end].copy_from_slice(data);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn len(&self) -> Result<u64> {
        Ok(self.bytes.read().map_err(|_| poisoned())?.len() as u64)
    }

    fn set_len(&self, len: u64) -> Result<()> {
        let len =
            usize::try_from(len).map_err(|_| Error::Io(io::Error::other("length too large")))?;
        self.bytes.write().map_err(|_| poisoned())?.resize(len, 0);
        Ok(())
    }
}
