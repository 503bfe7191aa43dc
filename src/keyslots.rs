//! Key management: adding and removing key slots. The master key never
//! changes, so no data is re-encrypted; a removed slot is overwritten in
//! both copies of the slot table.

use crate::crypto::keys::Key;
use crate::crypto::slots::{MAX_SLOTS, Slot, SlotTable};
use crate::error::{Error, Result};
use crate::format::SLOT_TABLES;
use crate::lockbox::Lockbox;

impl Lockbox {
    /// Writes `table` (with the next sequence number) over both slot-table
    /// copies in turn, syncing after each: first the copy that is not the
    /// newest, then the other. A crash in between leaves one valid copy of
    /// either the old or the new table as the newest, never neither; the
    /// next writable open copies the newest over the other.
    pub(crate) fn write_slot_tables(&mut self, mut table: SlotTable) -> Result<()> {
        table.seq = self
            .slots
            .seq
            .max(table.seq)
            .checked_add(1)
            .ok_or_else(|| {
                Error::corrupt("key slot table sequence at its maximum", SLOT_TABLES[0])
            })?;
        let bytes = table.encode();
        let first = 1 - self.newest_table;
        let be = self.store.backend();
        be.write_at(SLOT_TABLES[first], &bytes)?;
        be.sync()?;
        self.newest_table = first;
        self.slots = table;
        let be = self.store.backend();
        be.write_at(SLOT_TABLES[1 - first], &bytes)?;
        be.sync()?;
        Ok(())
    }

    /// Adds a key that opens this lockbox (a passphrase slot uses the
    /// builder's KDF parameters). Takes effect at once, independent of
    /// `commit`. Up to 16 slots.
    pub fn add_key(&mut self, key: Key) -> Result<()> {
        self.guarded(|lb| {
            if lb.slots.slots.len() >= MAX_SLOTS {
                return Err(Error::LimitExceeded {
                    what: "key slots".into(),
                    limit: MAX_SLOTS as u64,
                });
            }
            let slot = Slot::new(&key, lb.kdf, &lb.master, &lb.header.archive_id)?;
            let mut table = lb.slots.clone();
            table.slots.push(slot);
            lb.write_slot_tables(table)
        })
    }

    /// Removes the slot that `key` opens. The last slot cannot be removed
    /// (the lockbox would be unopenable). Changing a passphrase is
    /// `add_key(new)` then `remove_key(&old)`. The slot's bytes are
    /// overwritten in both copies of the slot table.
    pub fn remove_key(&mut self, key: &Key) -> Result<()> {
        self.guarded(|lb| {
            let mut found = None;
            for (i, slot) in lb.slots.slots.iter().enumerate() {
                if slot.unwrap(key, &lb.header.archive_id)?.is_some() {
                    found = Some(i);
                    break;
                }
            }
            let i = found.ok_or(Error::WrongKey)?;
            if lb.slots.slots.len() == 1 {
                return Err(Error::LastKey);
            }
            let mut table = lb.slots.clone();
            table.slots.remove(i);
            lb.write_slot_tables(table)
        })
    }

    /// Number of key slots.
    pub fn key_count(&self) -> usize {
        self.slots.slots.len()
    }
}
