//! Fuzz targets for lockbox. The target logic lives in [`drivers`] (and the
//! independent format reader/writer in [`forge`]) so that the root crate's
//! `tests/fuzz_corpus.rs` can replay the saved corpus through the same code
//! with `#[path]` includes.

pub mod drivers;
pub mod forge;
