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
