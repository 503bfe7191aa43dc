//! Hostile free-space indexes, written by someone who knows the key (with
//! `fuzz/src/forge.rs`, an independent writer of the format, as in
//! `tests/hostile.rs`): extents that overlap each other, a live region,
//! an extent of the pending redaction list, the header and slot area, or
//! lie past the end of the file. A writable handle must refuse them with
//! `Corrupt` before it allocates from them (its first change) or zeroes
//! them (a writable open after a crash while staging into free space), and
//! `verify()` must name the overlap. Where the engine cannot see the
//! overlap without walking the whole archive (a free extent over a frame,
//! which no commit record names), a commit may overwrite the frame: the
//! file must then read as `Corrupt`, never as other bytes.
//!
//! Each forged archive holds a framed file `keep` (one incompressible
//! frame no later commit touches), its TOC leaf, the free-space index leaf
//! and, in some cases, a redaction list, after 16 KiB of zeroed data area.
//! The control lists exactly that zeroed space as free and must verify,
//! take a commit and keep `keep`.

#[path = "../fuzz/src/forge.rs"]
mod forge;

use std::panic::{AssertUnwindSafe, catch_unwind};

use forge::{Content, Ptr, Record};
use lockbox::{Error, Key, Lockbox};

const RAW: [u8; 32] = [7u8; 32];
const DATA_START: u64 = forge::DATA_START;
/// Zeroed data area at `DATA_START` that a well-formed index lists as free.
const FILLER: u64 = 16384;
const KEEP_LEN: usize = 8000;
const REDACT_MARK: usize = 12288 + 2048;

fn key() -> Key {
    Key::raw(RAW)
}

fn keep_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..KEEP_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Where the live regions of a forged archive are, for choosing extents.
struct Layout {
    frame: Ptr,
    leaf: Ptr,
    /// Offset the free-space index leaf will be written at.
    free_node: u64,
}

/// An archive with `keep`, a free-space index holding `free(layout)` and,
/// when given, a redaction list with these `zero` extents.
fn forge_archive(free: impl Fn(&Layout) -> Vec<(u64, u64)>, list: &[(u64, u64)]) -> Vec<u8> {
    let lb = Lockbox::builder().create_in_memory(key()).unwrap();
    let mut img = lb.image().unwrap();
    drop(lb);
    let keys = forge::unwrap_raw(&img, &RAW).unwrap();
    let g = forge::newest_commit(&keys, &img).unwrap().seq + 1;
    img.resize(img.len() + FILLER as usize, 0);
    let keep = keep_bytes();
    let frame = forge::append_plain(&keys, &mut img, forge::kind::FRAME, g, &keep);
    let rec = Record::file(
        KEEP_LEN as u64,
        Content::Frames {
            frame_size: KEEP_LEN as u32,
            depth: 0,
            root: frame,
        },
    );
    let leaf_plain = forge::leaf(&[(b"keep".to_vec(), rec.encode())]);
    let leaf = forge::append_plain(&keys, &mut img, forge::kind::TOC_NODE, g, &leaf_plain);
    let refs = forge::leaf(&[forge::member_ref(frame.offset, b'T', b"keep")]);
    let packs = forge::append_plain(&keys, &mut img, forge::kind::PACK_NODE, g, &refs);
    let extents = free(&Layout {
        frame,
        leaf,
        free_node: img.len() as u64,
    });
    let e: Vec<(Vec<u8>, Vec<u8>)> = extents
        .iter()
        .map(|(o, l)| (o.to_be_bytes().to_vec(), l.to_le_bytes().to_vec()))
        .collect();
    let fp = forge::append_plain(&keys, &mut img, forge::kind::FREE_NODE, g, &forge::leaf(&e));
    let redact = (!list.is_empty()).then(|| {
        let mut plain = (list.len() as u32).to_le_bytes().to_vec();
        for (o, l) in list {
            plain.extend_from_slice(&o.to_le_bytes());
            plain.extend_from_slice(&l.to_le_bytes());
        }
        // Empty `plain` and `repack` parts.
        plain.extend_from_slice(&0u32.to_le_bytes());
        plain.extend_from_slice(&0u32.to_le_bytes());
        forge::append_plain(&keys, &mut img, forge::kind::REDACT_LIST, g, &plain)
    });
    forge::commit_both(
        &keys,
        &mut img,
        forge::CommitRecord {
            seq: g,
            toc: forge::Root::leaf(leaf, 1),
            packs: forge::Root::leaf(packs, 1),
            free: forge::Root::leaf(fp, extents.len() as u64),
            redact,
            time: 1_700_000_000,
            ..Default::default()
        },
    );
    img
}

/// What `keep` reads as: its bytes, or the error. Other bytes fail the test.
fn read_keep(lb: &Lockbox, case: &str) -> Result<(), String> {
    match lb.get("keep") {
        Ok(b) if b == keep_bytes() => Ok(()),
        Ok(_) => panic!("{case}: WRONG DATA: keep read as other bytes"),
        Err(e @ Error::Corrupt { .. }) => Err(e.to_string()),
        Err(e) => panic!("{case}: keep read failed with an untyped kind of error: {e:?}"),
    }
}

/// The outcome of writing to a forged archive.
#[derive(Debug)]
enum Outcome {
    /// The writable open, or the first change, was refused with `Corrupt`
    /// (the message, shown in the test output).
    #[allow(dead_code)]
    Refused(String),
    /// A commit succeeded; `keep` then read as (`Ok`) its bytes or a
    /// `Corrupt` error.
    Committed { keep: Result<(), String> },
}

/// Opens `img` for writing, sets a variable, commits, reopens and reads
/// `keep` and the variable. The TOC does not change, so its live root
/// stays live: a commit that put a region over it would leave an archive
/// that no longer opens (what the engine did before free extents were
/// checked against the regions the commit record names).
fn write_to(case: &str, img: Vec<u8>) -> Outcome {
    let new: Vec<u8> = (0..3000u32).map(|i| ((i * 31) ^ (i >> 3)) as u8).collect();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut lb = match Lockbox::builder().open_bytes(img, key()) {
            Ok(lb) => lb,
            Err(e @ Error::Corrupt { .. }) => return Outcome::Refused(format!("open: {e}")),
            Err(e) => panic!("{case}: open failed with {e:?}"),
        };
        let steps = (|| {
            lb.set_var("new", &new)?;
            lb.commit()
        })();
        match steps {
            Ok(_) => {}
            Err(e @ Error::Corrupt { .. }) => return Outcome::Refused(format!("write: {e}")),
            Err(e) => panic!("{case}: write failed with {e:?}"),
        }
        let img = lb.image().unwrap();
        drop(lb);
        let lb = Lockbox::builder()
            .read_only(true)
            .open_bytes(img, key())
            .unwrap_or_else(|e| panic!("{case}: reopen after the commit: {e:?}"));
        assert_eq!(
            lb.var("new")
                .unwrap_or_else(|e| panic!("{case}: var: {e:?}")),
            Some(new),
            "{case}: the new variable"
        );
        Outcome::Committed {
            keep: read_keep(&lb, case),
        }
    }));
    r.unwrap_or_else(|p| {
        let m = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{case}: PANIC: {m}")
    })
}

/// `verify()` of `img`, opened read-only (nothing written), as its error.
fn verify_error(img: &[u8]) -> Option<String> {
    let lb = Lockbox::builder()
        .read_only(true)
        .open_bytes(img.to_vec(), key())
        .unwrap();
    match lb.verify() {
        Ok(_) => None,
        Err(e @ Error::Corrupt { .. }) => Some(e.to_string()),
        Err(e) => panic!("verify failed with {e:?}, expected Corrupt"),
    }
}

/// Runs one hostile case: `verify` must name a free extent, a read-only
/// open must still read `keep`, and writing must give `want`.
fn hostile(case: &str, img: Vec<u8>, refused: bool) -> Outcome {
    let v = verify_error(&img).unwrap_or_else(|| panic!("{case}: verify passed"));
    assert!(
        v.contains("free extent"),
        "{case}: verify did not name the free extent: {v}"
    );
    let ro = Lockbox::builder()
        .read_only(true)
        .open_bytes(img.clone(), key())
        .unwrap();
    assert_eq!(read_keep(&ro, case), Ok(()), "{case}: read-only");
    drop(ro);
    let out = write_to(case, img);
    eprintln!("[hostile free space] {case}: verify: {v}; writing: {out:?}");
    match (&out, refused) {
        (Outcome::Refused(_), true) | (Outcome::Committed { .. }, false) => {}
        _ => panic!("{case}: expected refused = {refused}, got {out:?}"),
    }
    out
}

#[test]
fn control_well_formed_index_verifies_and_takes_a_commit() {
    let img = forge_archive(|_| vec![(DATA_START, FILLER)], &[]);
    assert_eq!(verify_error(&img), None);
    match write_to("control", img) {
        Outcome::Committed { keep: Ok(()) } => {}
        o => panic!("control: {o:?}"),
    }
    // with a pending redaction list beside the free extent
    let img = forge_archive(
        |_| vec![(DATA_START + 4096, FILLER - 4096)],
        &[(DATA_START, 4096)],
    );
    assert_eq!(verify_error(&img), None);
    match write_to("control with a redaction list", img) {
        Outcome::Committed { keep: Ok(()) } => {}
        o => panic!("control with a redaction list: {o:?}"),
    }
}

#[test]
fn two_free_extents_overlap() {
    let img = forge_archive(|_| vec![(DATA_START, 8192), (DATA_START + 4096, 8192)], &[]);
    hostile("two free extents overlap", img, true);
    // one extent inside another
    let img = forge_archive(|_| vec![(DATA_START, FILLER), (DATA_START + 100, 50)], &[]);
    hostile("a free extent inside another", img, true);
}

#[test]
fn free_extent_over_a_region_the_commit_record_names() {
    let img = forge_archive(
        |l| vec![(DATA_START, FILLER), (l.leaf.offset, l.leaf.len as u64)],
        &[],
    );
    hostile("free extent over the live TOC root", img, true);
    let img = forge_archive(|l| vec![(DATA_START, FILLER), (l.leaf.offset + 8, 64)], &[]);
    hostile("free extent inside the live TOC root", img, true);
    let img = forge_archive(|l| vec![(DATA_START, FILLER), (l.free_node, 41)], &[]);
    hostile("free extent over the free-space index node", img, true);
}

#[test]
fn free_extent_over_a_pending_redaction_extent() {
    let img = forge_archive(|_| vec![(DATA_START, FILLER)], &[(DATA_START + 4096, 4096)]);
    hostile("free extent over a redaction-list extent", img, true);
}

/// A frame is reached only through the TOC: the allocator cannot see this
/// overlap without walking the archive, so a commit may put its new frame
/// over `keep`'s. `keep` must then read as `Corrupt`, not as other bytes,
/// and `verify` names the overlap beforehand.
#[test]
fn free_extent_over_a_live_frame() {
    // The filler is free too, so the only anomaly is the overlap; best fit
    // puts the next small region into the smaller, hostile extent.
    let img = forge_archive(
        |l| vec![(DATA_START, FILLER), (l.frame.offset, l.frame.len as u64)],
        &[],
    );
    let out = hostile("free extent over the live frame", img, false);
    eprintln!("[hostile free space] over the live frame, keep afterwards: {out:?}");
}

#[test]
fn free_extent_over_the_header_or_slot_area() {
    for (case, e) in [
        ("the header", (0u64, 4096u64)),
        ("the key-slot tables", (4096, 8192)),
        ("the commit slots", (12288, 8192)),
        ("the last byte before the data area", (DATA_START - 1, 4096)),
    ] {
        let img = forge_archive(|_| vec![e], &[]);
        hostile(&format!("free extent over {case}"), img, true);
    }
}

#[test]
fn free_extent_past_the_end_of_the_file() {
    let img = forge_archive(
        |l| vec![(DATA_START, FILLER), (l.free_node + (1 << 20), 4096)],
        &[],
    );
    hostile("free extent past the end of the file", img, true);
    let img = forge_archive(
        |l| vec![(DATA_START, FILLER), (l.free_node + 500, 1 << 20)],
        &[],
    );
    hostile("free extent running past the end of the file", img, true);
    let img = forge_archive(|_| vec![(DATA_START, FILLER), (u64::MAX - 100, 1000)], &[]);
    hostile("free extent ending past 2^64", img, true);
}

/// With the redaction mark at 0 (a writer was staging into free space when
/// it stopped) a writable open zeroes every free extent: a hostile index
/// must make that open fail, not zero a live region. Read-only opens do
/// not redact and still read.
#[test]
fn dirty_mark_does_not_zero_live_regions() {
    for (case, refused, free) in [
        (
            "dirty mark, two overlapping free extents",
            true,
            (|_: &Layout| vec![(DATA_START, 8192), (DATA_START + 4096, 8192)])
                as fn(&Layout) -> Vec<(u64, u64)>,
        ),
        (
            "dirty mark, free extent over the live TOC root",
            true,
            |l: &Layout| vec![(DATA_START, FILLER), (l.leaf.offset, l.leaf.len as u64)],
        ),
        (
            "dirty mark, free extent over the live frame",
            false,
            |l: &Layout| vec![(DATA_START, FILLER), (l.frame.offset, l.frame.len as u64)],
        ),
    ] {
        let mut img = forge_archive(free, &[]);
        img[REDACT_MARK..REDACT_MARK + 8].copy_from_slice(&0u64.to_le_bytes());
        hostile(case, img, refused);
    }
}
