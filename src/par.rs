//! Data-parallel work, in order, on rayon's global pool: a fixed set of
//! worker threads (one per core) that lives as long as the process, so the
//! per-thread zstd contexts are built once, not once per batch.

use rayon::prelude::*;

/// Maps `f` over `items` on the worker threads; results in input order.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    if items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    items.par_iter().with_max_len(1).map(f).collect()
}

/// Like [`par_map`], taking the items by value.
pub fn par_map_owned<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    if items.len() <= 1 {
        return items.into_iter().map(f).collect();
    }
    items.into_par_iter().with_max_len(1).map(f).collect()
}

/// A second fixed set of threads (one per core) for work bound by system
/// calls, such as opening and reading the files of an import: it runs
/// beside the compression queued on the global pool instead of waiting
/// behind it, and the kernel shares the cores between the two. `None` if
/// the threads cannot be started (the caller then does the work itself).
pub fn io_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("lockbox-io-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// A value computed on the pool's threads (a frame compressing or
/// decoding) and awaited by the thread that asked for it.
pub struct Slot<T> {
    value: std::sync::Mutex<Option<T>>,
    ready: std::sync::Condvar,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            value: std::sync::Mutex::new(None),
            ready: std::sync::Condvar::new(),
        }
    }
}

impl<T> Slot<T> {
    /// Stores the value and wakes the waiter.
    pub fn fill(&self, v: T) {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
        self.ready.notify_all();
    }

    /// Waits until the value is there. On a worker thread (the caller
    /// itself runs inside the pool) it runs queued work instead of
    /// blocking, so the job it waits for cannot be stuck behind it.
    fn wait(&self) -> std::sync::MutexGuard<'_, Option<T>> {
        let mut g = self.value.lock().unwrap_or_else(|e| e.into_inner());
        while g.is_none() {
            if rayon::current_thread_index().is_some() {
                drop(g);
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::thread::yield_now();
                }
                g = self.value.lock().unwrap_or_else(|e| e.into_inner());
            } else {
                g = self.ready.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
        g
    }

    /// Waits for the value and takes it (`None` if it was taken before).
    pub fn take(&self) -> Option<T> {
        self.wait().take()
    }

    /// Waits for the value and hands it to `f` (`None` if it was taken).
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.wait().as_ref().map(f)
    }
}
