//! A bounded cache of decoded objects (B-tree nodes, frame indexes, and
//! decoded frames for the read-mostly profiles), keyed by region offset and
//! tag so a key names exactly one sealing. Eviction is CLOCK (second
//! chance): O(1) per access, no per-hit reordering.

use std::collections::VecDeque;
use std::sync::Arc;

use ahash::AHashMap;

use crate::format::node::Node;
use crate::format::ptr::Ptr;

/// A decoded object.
#[derive(Clone)]
pub enum Cached {
    Node(Arc<Node>),
    Index(Arc<Vec<Ptr>>),
    Frame(Arc<Vec<u8>>),
}

type CacheKey = (u64, [u8; 16]);

struct Slot {
    value: Cached,
    size: usize,
    referenced: bool,
}

/// Hits, misses and bytes held by the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to read and decode.
    pub misses: u64,
    /// Approximate bytes held.
    pub bytes: u64,
    /// Objects held.
    pub entries: u64,
}

pub struct Cache {
    map: AHashMap<CacheKey, Slot>,
    ring: VecDeque<CacheKey>,
    bytes: usize,
    capacity: usize,
    hits: u64,
    misses: u64,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            map: AHashMap::new(),
            ring: VecDeque::new(),
            bytes: 0,
            capacity,
            hits: 0,
            misses: 0,
        }
    }

    pub fn get(&mut self, ptr: &Ptr) -> Option<Cached> {
        match self.map.get_mut(&ptr.cache_key()) {
            Some(slot) => {
                slot.referenced = true;
                self.hits += 1;
                Some(slot.value.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    pub fn insert(&mut self, ptr: &Ptr, value: Cached, size: usize) {
        if size > self.capacity / 2 {
            return;
        }
        let key = ptr.cache_key();
        if let Some(old) = self.map.insert(
            key,
            Slot {
                value,
                size,
                referenced: false,
            },
        ) {
            self.bytes -= old.size;
        } else {
            self.ring.push_back(key);
        }
        self.bytes += size;
        self.evict();
    }

    fn evict(&mut self) {
        let mut spins = self.ring.len() * 2 + 1;
        while self.bytes > self.capacity && spins > 0 {
            spins -= 1;
            let Some(key) = self.ring.pop_front() else {
                break;
            };
            match self.map.get_mut(&key) {
                Some(slot) if slot.referenced => {
                    slot.referenced = false;
                    self.ring.push_back(key);
                }
                Some(_) => {
                    if let Some(slot) = self.map.remove(&key) {
                        self.bytes -= slot.size;
                    }
                }
                None => {}
            }
        }
    }

    /// Drops the entry of `ptr`, if any: a node a commit superseded.
    pub fn remove(&mut self, ptr: &Ptr) {
        if let Some(slot) = self.map.remove(&ptr.cache_key()) {
            self.bytes -= slot.size;
        }
        // The ring keeps removed keys until eviction passes them; rebuild
        // it when they dominate, so it stays proportional to the map.
        if self.ring.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.ring.retain(|k| map.contains_key(k));
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.ring.clear();
        self.bytes = 0;
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            bytes: self.bytes as u64,
            entries: self.map.len() as u64,
        }
    }
}
