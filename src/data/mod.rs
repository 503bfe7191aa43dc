//! File data: large files cut into frames reached through a frame-index
//! tree, small files packed many to a frame, and range reads that decode
//! only the frames they overlap.

pub mod bufs;
pub mod dedup;
pub mod frames;
pub mod index;
pub mod pack;
pub mod packs;
pub mod read;
pub mod unchanged;
