//! Counting large allocations (the global allocator of this test binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

// ---------------------------------------------------------------------------
// Counting large allocations (Argon2 allocates its whole memory at once)
// ---------------------------------------------------------------------------

pub struct Counting;

/// While set, allocations of at least `BIG` bytes are counted.
pub static COUNTING: AtomicBool = AtomicBool::new(false);
pub static BIG_ALLOCS: AtomicUsize = AtomicUsize::new(0);
pub static LARGEST: AtomicUsize = AtomicUsize::new(0);
pub const BIG: usize = 16 << 20;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        unsafe { System.realloc(p, l, new) }
    }
}

pub fn note(size: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
        if size >= BIG {
            BIG_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[global_allocator]
pub static GLOBAL: Counting = Counting;

/// Only one test at a time may count (the counters are global).
pub static COUNT_LOCK: Mutex<()> = Mutex::new(());

/// Runs `f` and returns (result, allocations of 16 MiB or more, largest
/// allocation requested), counted on every thread.
pub fn count_big<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    BIG_ALLOCS.store(0, Ordering::SeqCst);
    LARGEST.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let r = f();
    COUNTING.store(false, Ordering::SeqCst);
    (
        r,
        BIG_ALLOCS.load(Ordering::SeqCst),
        LARGEST.load(Ordering::SeqCst),
    )
}
