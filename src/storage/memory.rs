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

/// Copies `buf.len()` bytes of `image` at `offset` into `buf`; a read past
/// the end fails with `UnexpectedEof`. What every in-memory backend reads
/// (this one, and the test crate's recording and faulting ones).
pub fn read_image(image: &[u8], offset: u64, buf: &mut [u8]) -> Result<()> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    match start
        .checked_add(buf.len())
        .and_then(|end| image.get(start..end))
    {
        Some(src) => {
            buf.copy_from_slice(src);
            Ok(())
        }
        None => Err(Error::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "read past the end",
        ))),
    }
}

/// Writes `data` into `image` at `offset`, growing it with zeros as needed.
pub fn write_image(image: &mut Vec<u8>, offset: u64, data: &[u8]) -> Result<()> {
    let too_large = || Error::Io(io::Error::other("offset too large"));
    let start = usize::try_from(offset).map_err(|_| too_large())?;
    let end = start.checked_add(data.len()).ok_or_else(too_large)?;
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
    Ok(())
}

impl Backend for MemoryBackend {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        read_image(&self.bytes.read().map_err(|_| poisoned())?, offset, buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        let mut b = self.bytes.write().map_err(|_| poisoned())?;
        write_image(&mut b, offset, data)
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
