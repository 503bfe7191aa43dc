//! Storage: the backend trait and its file and memory implementations, the
//! cache of decoded objects, and the store that seals, writes, reads and
//! opens regions through them.

pub mod alloc;
pub mod backend;
pub mod cache;
pub mod file;
pub mod memory;
pub mod store;
