//! On-disk structures only: layout constants, the header, commit records,
//! pointers, TOC entries and B-tree nodes. Byte-level spec: `docs/format.md`.

pub mod bytes;
pub mod commit;
pub mod entry;
pub mod header;
pub mod node;
pub mod ptr;

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// First 8 bytes of every lockbox file.
pub const MAGIC: [u8; 8] = *b"LOCKBOX\x1a";
/// Size of the public header at offset 0.
pub const HEADER_LEN: u64 = 4096;
/// Offsets of the two key slot tables.
pub const SLOT_TABLES: [u64; 2] = [4096, 8192];
/// Offsets of the two commit slots.
pub const COMMIT_SLOTS: [u64; 2] = [12288, 16384];
/// Space reserved for each commit slot.
pub const COMMIT_SLOT_LEN: u64 = 4096;
/// Where the last commit whose redaction finished is noted (u64, plain).
/// Only a hint: a missing or wrong value makes the next writer redo the
/// redaction, which is idempotent.
pub const REDACT_MARK: u64 = COMMIT_SLOTS[0] + 2048;
/// Value of the mark while free space may hold bytes written after the
/// last commit (a writer took free space and has not committed or rolled
/// back): an open then zeroes all free space again.
pub const REDACT_DIRTY: u64 = 0;
/// Where sealed regions (pages and frames) begin.
pub const DATA_START: u64 = 20480;
/// Default logical capacity of a B-tree node (encoded bytes before compression).
pub const DEFAULT_NODE_CAPACITY: u32 = 32 * 1024;
/// Smallest node capacity accepted (a test knob goes this low).
pub const MIN_NODE_CAPACITY: u32 = 1024;
/// Largest node capacity accepted.
pub const MAX_NODE_CAPACITY: u32 = 1024 * 1024;
/// Default uncompressed size of a file-data frame.
pub const DEFAULT_FRAME_SIZE: u32 = 64 * 1024;
/// Frame pointers per frame-index page.
pub const INDEX_FANOUT: u64 = 2048;
/// Largest B-tree depth accepted when reading (a depth bomb is refused).
pub const MAX_TREE_HEIGHT: u32 = 32;
