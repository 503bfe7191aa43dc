//! The allocator: free extents by offset (to merge neighbours) and by size
//! (best fit), loaded lazily from the persisted free-space index on a
//! handle's first write, so opening stays O(1).
//!
//! Every extent it hands out is zeroed and unreachable from any durable
//! commit slot: the free-space index only ever holds extents whose
//! redaction finished (see `space.rs`).

use std::collections::{BTreeMap, BTreeSet};

use crate::btree::apply::Change;

#[derive(Default)]
pub struct Allocator {
    free: BTreeMap<u64, u64>,
    by_size: BTreeSet<(u64, u64)>,
    /// The persisted index as of the last commit.
    base: BTreeMap<u64, u64>,
    /// The free set as of the last commit (base plus extents added when
    /// loaded), for rollback.
    snapshot: BTreeMap<u64, u64>,
    /// Extents handed out from free space since the last commit.
    pub session: Vec<(u64, u64)>,
}

impl Allocator {
    /// An allocator over the persisted index `base` plus `extra` extents
    /// that are free and zeroed but not yet in the index.
    pub fn new(base: BTreeMap<u64, u64>, extra: &[(u64, u64)]) -> Allocator {
        let mut a = Allocator {
            base: base.clone(),
            ..Default::default()
        };
        for (&off, &len) in &base {
            a.insert_raw(off, len);
        }
        for &(off, len) in extra {
            a.release(off, len);
        }
        a.snapshot = a.free.clone();
        a
    }

    fn insert_raw(&mut self, off: u64, len: u64) {
        self.free.insert(off, len);
        self.by_size.insert((len, off));
    }

    fn remove_raw(&mut self, off: u64) -> Option<u64> {
        let len = self.free.remove(&off)?;
        self.by_size.remove(&(len, off));
        Some(len)
    }

    /// Bytes that regions of `unit` bytes each could use: what is left in
    /// an extent after the last whole unit is counted out (it may still
    /// take smaller regions, but not another of these).
    pub fn usable_bytes(&self, unit: u64) -> u64 {
        let unit = unit.max(1);
        self.by_size
            .range((unit, 0)..)
            .map(|&(len, _)| len - len % unit)
            .sum()
    }

    /// Whether any free extent exists.
    pub fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Best fit: the smallest extent of at least `len` bytes.
    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        if len == 0 {
            return None;
        }
        let &(elen, off) = self.by_size.range((len, 0)..).next()?;
        self.remove_raw(off);
        if elen > len {
            self.insert_raw(off + len, elen - len);
        }
        self.session.push((off, len));
        Some(off)
    }

    /// Adds a free extent, merging it with its neighbours.
    pub fn release(&mut self, mut off: u64, mut len: u64) {
        if len == 0 {
            return;
        }
        if let Some((&poff, &plen)) = self.free.range(..off).next_back()
            && poff + plen == off
        {
            self.remove_raw(poff);
            off = poff;
            len += plen;
        }
        if let Some(&nlen) = self.free.get(&(off + len)) {
            self.remove_raw(off + len);
            len += nlen;
        }
        self.insert_raw(off, len);
    }

    /// If a free extent ends exactly at `tail`, removes it and returns
    /// its start: the file can end there.
    pub fn trim_tail(&mut self, tail: u64) -> Option<u64> {
        let (&off, &len) = self.free.range(..tail).next_back()?;
        if off + len != tail {
            return None;
        }
        self.remove_raw(off);
        Some(off)
    }

    /// Changes that turn the persisted index into the current free set.
    pub fn changes(&self) -> Vec<Change> {
        let mut out = Vec::new();
        let mut a = self.base.iter().peekable();
        let mut b = self.free.iter().peekable();
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(&(&ao, _)), None) => {
                    out.push((ao.to_be_bytes().to_vec(), None));
                    a.next();
                }
                (None, Some(&(&bo, &bl))) => {
                    out.push((bo.to_be_bytes().to_vec(), Some(bl.to_le_bytes().to_vec())));
                    b.next();
                }
                (Some(&(&ao, &al)), Some(&(&bo, &bl))) => {
                    if ao < bo {
                        out.push((ao.to_be_bytes().to_vec(), None));
                        a.next();
                    } else if bo < ao {
                        out.push((bo.to_be_bytes().to_vec(), Some(bl.to_le_bytes().to_vec())));
                        b.next();
                    } else {
                        if al != bl {
                            out.push((bo.to_be_bytes().to_vec(), Some(bl.to_le_bytes().to_vec())));
                        }
                        a.next();
                        b.next();
                    }
                }
            }
        }
        out
    }

    /// The free set is now persisted.
    pub fn committed(&mut self) {
        self.base = self.free.clone();
        self.snapshot = self.free.clone();
        self.session.clear();
    }

    /// Extents released after `committed` belong to the free set a
    /// rollback returns to.
    pub fn committed_extra(&mut self) {
        self.snapshot = self.free.clone();
    }

    /// Forgets this session's allocations and releases.
    pub fn rollback(&mut self) {
        self.free.clear();
        self.by_size.clear();
        let snap = std::mem::take(&mut self.snapshot);
        for (&off, &len) in &snap {
            self.insert_raw(off, len);
        }
        self.snapshot = snap;
        self.session.clear();
    }

    #[cfg(test)]
    pub fn extents(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.free.iter().map(|(&o, &l)| (o, l))
    }
}

/// Decodes a free-space index entry.
pub fn decode_extent(key: &[u8], value: &[u8]) -> Option<(u64, u64)> {
    let off = u64::from_be_bytes(key.try_into().ok()?);
    let len = u64::from_le_bytes(value.try_into().ok()?);
    (len > 0).then_some((off, len))
}

/// Whether `[off, off + len)` overlaps any extent of `sorted`, which is
/// sorted by offset with no two extents overlapping.
pub fn overlaps(sorted: &[(u64, u64)], off: u64, len: u64) -> bool {
    let end = off.saturating_add(len);
    // The last extent starting before `end` is the only one that can
    // reach into the span: the ones before it end where it starts.
    let i = sorted.partition_point(|&(o, _)| o < end);
    i > 0 && {
        let (o, l) = sorted[i - 1];
        len > 0 && o.saturating_add(l) > off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_with_sorted_extents() {
        let s = [(100, 50), (200, 10)];
        assert!(!overlaps(&s, 0, 100));
        assert!(overlaps(&s, 0, 101));
        assert!(overlaps(&s, 149, 1));
        assert!(!overlaps(&s, 150, 50));
        assert!(overlaps(&s, 150, 51));
        assert!(overlaps(&s, 120, 5));
        assert!(overlaps(&s, 50, 1000));
        assert!(!overlaps(&s, 210, u64::MAX));
        assert!(!overlaps(&s, 120, 0));
        assert!(!overlaps(&[], 0, 10));
    }

    #[test]
    fn best_fit_merge_and_diff() {
        let mut a = Allocator::new(BTreeMap::from([(100, 50), (200, 10)]), &[(150, 20)]);
        assert_eq!(a.extents().collect::<Vec<_>>(), [(100, 70), (200, 10)]);
        assert_eq!(a.alloc(10), Some(200));
        assert_eq!(a.alloc(30), Some(100));
        assert_eq!(a.alloc(100), None);
        a.release(200, 10);
        assert_eq!(a.trim_tail(210), Some(200));
        let ch = a.changes();
        assert_eq!(ch.len(), 3);
        a.rollback();
        assert_eq!(a.extents().collect::<Vec<_>>(), [(100, 70), (200, 10)]);
        // pieces of 30: two in the 70-byte extent, none in the 10-byte one
        assert_eq!(a.usable_bytes(30), 60);
        assert_eq!(a.usable_bytes(1), 80);
        assert_eq!(a.usable_bytes(0), 80);
    }
}
