//! The write path over hostile archives: a lying free-space index, lying
//! lists of frames to repack, a slot table at sequence `u64::MAX`, and
//! compaction.

use super::data::{forge_frame, forge_packed};
use super::*;

// ---------------------------------------------------------------------------
// The write path over a hostile free-space index
// ---------------------------------------------------------------------------

/// Bytes of unused data area at `DATA_START` in `forge_free` images.
const FILLER: usize = 16384;

/// An image whose commit has one file `a` (inline) and a free-space index
/// holding `extents` (key: offset big-endian; value: length little-endian).
fn forge_free(extents: &[(u64, u64)]) -> Vec<u8> {
    let lb = Lockbox::builder().create_in_memory(key()).unwrap();
    let mut img = lb.image().unwrap();
    drop(lb);
    let keys = forge::unwrap_raw(&img, &drivers::RAW).unwrap();
    let g = forge::newest_commit(&keys, &img).unwrap().seq + 1;
    // 16 KiB of unused (zero) data area first, so extents can lie inside
    // [DATA_START, data_end) and still be wrong.
    img.resize(img.len() + FILLER, 0);
    let leaf = forge::leaf(&[(b"a".to_vec(), Record::inline_file(b"alpha").encode())]);
    let lp = forge::append_plain(&keys, &mut img, forge::kind::TOC_NODE, g, &leaf);
    let e: Vec<(Vec<u8>, Vec<u8>)> = extents
        .iter()
        .map(|(o, l)| (o.to_be_bytes().to_vec(), l.to_le_bytes().to_vec()))
        .collect();
    let fp = forge::append_plain(&keys, &mut img, forge::kind::FREE_NODE, g, &forge::leaf(&e));
    forge::commit_both(
        &keys,
        &mut img,
        forge::CommitRecord {
            seq: g,
            toc: forge::Root::leaf(lp, 1),
            free: forge::Root::leaf(fp, extents.len() as u64),
            time: 1_700_000_000,
            ..Default::default()
        },
    );
    img
}

/// A free-space index that lists the key-slot tables, the commit slots,
/// live regions, or extents near 2^64 as free. Writing after opening such
/// an archive must refuse it (`Corrupt`) or write safely: never panic,
/// never put new pages over the header, slot tables, commit slots or live
/// regions (which would destroy the archive on the next open).
#[test]
fn free_space_index_lies() {
    let live_leaf = {
        let img = forge_free(&[]);
        let keys = forge::unwrap_raw(&img, &drivers::RAW).unwrap();
        let rec = forge::newest_commit(&keys, &img).unwrap();
        rec.toc.root.unwrap()
    };
    let mut failures = Vec::new();
    for (case, extents) in [
        (
            "slot tables and commit slots free",
            vec![(4096u64, 16384u64)],
        ),
        ("header free", vec![(0, 4096)]),
        (
            "the live TOC leaf free",
            vec![(live_leaf.offset, live_leaf.len as u64)],
        ),
        ("extent ending past 2^64", vec![(u64::MAX - 10, 100)]),
        ("extent at 2^64 - 1", vec![(u64::MAX - 1, 1 << 20)]),
        ("zero-length extent", vec![(30000, 0)]),
        ("overlapping extents", vec![(20480, 5000), (22480, 5000)]),
        (
            "extent over the live leaf and beyond",
            vec![(20480 + 8192, 10_000)],
        ),
        (
            "extent past the committed end",
            vec![(20480 + FILLER as u64 + 4096, 4096)],
        ),
    ] {
        let img = forge_free(&extents);
        let big = drivers::content(1, 12_000); // incompressible: a 12 KiB packed frame
        let r = catch_unwind(AssertUnwindSafe(|| -> Result<String, String> {
            let mut lb = open(img).map_err(|e| format!("open: {e}"))?;
            lb.put("new/small", b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-small")
                .map_err(|e| format!("put: {e}"))?;
            lb.put("new/big", &big).map_err(|e| format!("put: {e}"))?;
            lb.commit().map_err(|e| format!("commit: {e}"))?;
            let img = lb.image().unwrap();
            drop(lb);
            // The commit succeeded: the archive must still open and hold
            // what was just written.
            let lb = open(img).map_err(|e| format!("DESTROYED: reopen after commit: {e}"))?;
            let got = lb
                .get("new/big")
                .map_err(|e| format!("DESTROYED: get new/big after commit: {e}"))?;
            if got != big {
                return Err("WRONG DATA: new/big".into());
            }
            Ok(format!(
                "committed and reopened; verify {:?}",
                lb.verify().map(|_| ()).map_err(|e| name(&e))
            ))
        }));
        let msg = match r {
            Ok(Ok(m)) => m,
            Ok(Err(m)) if m.starts_with("DESTROYED") || m.starts_with("WRONG") => {
                failures.push(format!("{case}: {m}"));
                m
            }
            Ok(Err(m)) => {
                // A refusal: it must be a typed Corrupt.
                if !m.contains("damaged") {
                    failures.push(format!("{case}: refused with an unexpected error: {m}"));
                }
                m
            }
            Err(p) => {
                let m = p
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| format!("{:?}", p.downcast_ref::<&str>()));
                failures.push(format!("{case}: PANIC: {m}"));
                m
            }
        };
        eprintln!("[hostile] free index, {case}: {msg}");
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Hostile lists of frames to repack (the redaction list's third part)
// ---------------------------------------------------------------------------

/// Paths and contents.
type Files = Vec<(String, Vec<u8>)>;

/// Five packed files in one frame, committed; the image, the packed frame,
/// the TOC leaf and the files.
fn packed_base() -> (Vec<u8>, Ptr, Ptr, Files) {
    let mut lb = Lockbox::builder().create_in_memory(key()).unwrap();
    let files: Files = (0..5)
        .map(|i| (format!("p/f{i}"), drivers::content(40 + i, 1000)))
        .collect();
    for (p, d) in &files {
        lb.put(p, d).unwrap();
    }
    lb.commit().unwrap();
    let img = lb.image().unwrap();
    drop(lb);
    let keys = forge::unwrap_raw(&img, &drivers::RAW).unwrap();
    let rec = forge::newest_commit(&keys, &img).unwrap();
    let regions = forge::walk(&keys, &img, &rec).unwrap();
    let frames: Vec<Ptr> = regions
        .iter()
        .filter(|r| r.kind == forge::kind::FRAME)
        .map(|r| r.ptr)
        .collect();
    assert_eq!(frames.len(), 1, "the five files share one packed frame");
    (img, frames[0], rec.toc.root.unwrap(), files)
}

/// `base` with one more commit (same trees) whose redaction list is
/// `list` (its plaintext, written as is). `dirty`: the redaction mark says
/// a writer used free space, so a writable open redoes the redaction and
/// runs the relocation commits at once; else the first commit does.
fn with_redaction_list(base: &[u8], list: &[u8], dirty: bool) -> Vec<u8> {
    let mut img = base.to_vec();
    let keys = forge::unwrap_raw(&img, &drivers::RAW).unwrap();
    let mut rec = forge::newest_commit(&keys, &img).unwrap();
    rec.seq += 1;
    rec.redact = Some(forge::append_plain(
        &keys,
        &mut img,
        forge::kind::REDACT_LIST,
        rec.seq,
        list,
    ));
    forge::commit_both(&keys, &mut img, rec);
    if dirty {
        img[14336..14344].copy_from_slice(&0u64.to_le_bytes());
    }
    img
}

/// A redaction list: `zero` and `plain` empty, then these repack extents
/// (or, with `count`, that count in front of them).
fn repack_list(extents: &[(u64, u64)], count: Option<u32>) -> Vec<u8> {
    let mut o = Vec::new();
    o.extend_from_slice(&0u32.to_le_bytes());
    o.extend_from_slice(&0u32.to_le_bytes());
    o.extend_from_slice(&count.unwrap_or(extents.len() as u32).to_le_bytes());
    for (off, len) in extents {
        o.extend_from_slice(&off.to_le_bytes());
        o.extend_from_slice(&len.to_le_bytes());
    }
    o
}

/// Frames to repack that are not live packed frames, or not in the data
/// area, or named twice, or a count that lies. A writable open (which
/// relocates at once when the mark is dirty) and the first commit (which
/// relocates otherwise) refuse them with `Corrupt`, never a panic, a hang or
/// a large allocation, and never by damaging the archive; reads, which do
/// not look at the list, still return the right bytes; `verify()` fails.
/// The control (the live frame, named once) is relocated: afterwards the
/// files read back, nothing is left to repack and the archive verifies.
#[test]
fn repack_list_lies() {
    let (base, frame, leaf, files) = packed_base();
    let end = base.len() as u64;
    let fr = (frame.offset, frame.len as u64);
    let control = repack_list(&[fr], None);
    let mut failures = Vec::new();
    for dirty in [true, false] {
        // control
        let img = with_redaction_list(&base, &control, dirty);
        let r = timed(20, "repack control", move || -> Result<(), String> {
            let mut lb = open(img).map_err(|e| format!("open: {e}"))?;
            lb.put("p/new", &drivers::content(99, 700))
                .map_err(|e| format!("put: {e}"))?;
            lb.commit().map_err(|e| format!("commit: {e}"))?;
            let left = testing::repack_pending(&lb).map_err(|e| e.to_string())?;
            let report = lb.verify().map_err(|e| format!("verify: {e}"))?;
            if left != 0 || report.repack_pending != 0 {
                return Err(format!("{left} frames left to repack"));
            }
            Ok(())
        });
        if let Err(e) = r {
            failures.push(format!("control (dirty mark {dirty}): {e}"));
        }
        for (case, list) in [
            ("count u32::MAX", repack_list(&[], Some(u32::MAX))),
            ("count larger than the list", repack_list(&[fr], Some(2))),
            ("over the header", repack_list(&[(0, 4096)], None)),
            ("past the committed end", repack_list(&[(end, 4096)], None)),
            (
                "ending past 2^64",
                repack_list(&[(u64::MAX - 10, 100)], None),
            ),
            ("zero length", repack_list(&[(frame.offset, 0)], None)),
            ("named twice", repack_list(&[fr, fr], None)),
            (
                "the TOC leaf",
                repack_list(&[(leaf.offset, leaf.len as u64)], None),
            ),
            (
                "the frame with a wrong length",
                repack_list(&[(frame.offset, frame.len as u64 - 1)], None),
            ),
            (
                "inside the frame",
                repack_list(&[(frame.offset + 1, frame.len as u64 - 1)], None),
            ),
        ] {
            let img = with_redaction_list(&base, &list, dirty);
            let what = format!("{case} (dirty mark {dirty})");
            let files2 = files.clone();
            let w = what.clone();
            let (r, big) = biggest_alloc(|| {
                timed(20, &what, move || -> Result<String, String> {
                    // reads do not use the list
                    let ro = Lockbox::builder()
                        .read_only(true)
                        .open_bytes(img.clone(), key())
                        .map_err(|e| format!("read-only open: {e}"))?;
                    for (p, d) in &files2 {
                        if ro.get(p).map_err(|e| format!("read-only get: {e}"))? != *d {
                            return Err(format!("WRONG DATA: {p}"));
                        }
                    }
                    if ro.verify().is_ok() {
                        return Err("verify() ACCEPTED the list".into());
                    }
                    let mut lb = match open(img) {
                        Ok(lb) => lb,
                        Err(e) if name(&e) == "Corrupt" => return Ok(format!("open: {e}")),
                        Err(e) => return Err(format!("open: {} ({e})", name(&e))),
                    };
                    let r = lb
                        .put("p/new", &drivers::content(99, 700))
                        .and_then(|()| lb.commit().map(|_| ()));
                    match r {
                        Err(e) if e.to_string().contains("damaged") => {}
                        Err(e) => return Err(format!("commit: {} ({e})", name(&e))),
                        Ok(()) => return Err(format!("{w}: the commit ACCEPTED the list")),
                    }
                    // refused without damage: a read-only open still reads
                    let img = lb.image().map_err(|e| format!("image: {e}"))?;
                    drop(lb);
                    let ro = Lockbox::builder()
                        .read_only(true)
                        .open_bytes(img, key())
                        .map_err(|e| format!("DAMAGED: read-only open: {e}"))?;
                    for (p, d) in &files2 {
                        if ro.get(p).map_err(|e| format!("DAMAGED: get: {e}"))? != *d {
                            return Err(format!("DAMAGED: {p} reads wrong"));
                        }
                    }
                    Ok("first commit refused".into())
                })
            });
            match r {
                Ok(m) => {
                    eprintln!("[hostile] repack list, {what}: {m}; largest allocation {big} B")
                }
                Err(e) => failures.push(format!("{what}: {e}")),
            }
            if big > 64 << 20 {
                failures.push(format!("{what}: allocated {big} B at once"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.join("\n").lines().count(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Slot tables
// ---------------------------------------------------------------------------

/// The slot tables' checksum is not keyed: anyone can give one copy the
/// sequence number u64::MAX. A writable open then rewrites both tables
/// with "the next" sequence; that must not overflow (panic).
#[test]
fn slot_table_sequence_at_u64_max() {
    let mut lb = Lockbox::builder().create_in_memory(key()).unwrap();
    lb.put("a", b"A").unwrap();
    lb.commit().unwrap();
    let mut img = lb.image().unwrap();
    drop(lb);
    img[4096..4104].copy_from_slice(&u64::MAX.to_le_bytes());
    forge::fix_table_checksum(&mut img, 4096);
    for read_only in [true, false] {
        let i = img.clone();
        let r = timed(10, "open", move || {
            Lockbox::builder()
                .read_only(read_only)
                .open_bytes(i, key())
                .and_then(|lb| lb.get("a"))
        });
        eprintln!("[hostile] slot table seq u64::MAX, read_only {read_only}: {r:?}");
        assert!(
            matches!(&r, Ok(v) if v == b"A") || matches!(r, Err(Error::Corrupt { .. })),
            "{r:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Compaction of hostile archives
// ---------------------------------------------------------------------------

/// `compact` reads everything reachable and writes a fresh archive: over a
/// hostile archive it must fail with a typed error or produce an archive
/// that opens and verifies. Never a panic or a hang.
#[test]
fn compact_hostile_archives() {
    let mut images: Vec<(&str, Vec<u8>)> = Vec::new();
    {
        let mut b = Build::new();
        let l1 = b.leaf(&[(b"a", file(b"first")), (b"z", file(b"z1"))]);
        let l2 = b.leaf(&[(b"b", file(b"second")), (b"z", file(b"z2"))]);
        let root = b.internal(1, &[(b"", l1), (b"m", l2)]);
        images.push(("keys outside separators", b.image(Some((root, 2, 4)), None)));
    }
    images.push((
        "packed len u64::MAX",
        forge_packed(&drivers::content(2, 1000), 10, u64::MAX).0,
    ));
    images.push((
        "packed end past the frame",
        forge_packed(&drivers::content(2, 1000), 900, 200).0,
    ));
    {
        let mut b = Build::new();
        let fr = b.frame(&drivers::content(1, 65536));
        let rec = framed(1 << 60, 65536, 0, fr);
        let l = b.leaf(&[(b"huge", rec.encode())]);
        images.push(("2^60 bytes in one frame", b.image(Some((l, 1, 1)), None)));
    }
    {
        let mut b = Build::new();
        let l = b.leaf(&[(b"a\0b", file(b"one")), (b"a/b", file(b"two"))]);
        images.push(("literal slash", b.image(Some((l, 1, 2)), None)));
    }
    {
        let mut b = Build::new();
        let l = b.leaf(&[(b"\0abs", file(b"abs")), (b"a", file(b"a"))]);
        images.push(("absolute name", b.image(Some((l, 1, 2)), None)));
    }
    images.push((
        "free extent over the slot tables",
        forge_free(&[(4096, 16384)]),
    ));
    images.push(("zstd content size lies", {
        let z = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
        forge_frame(1, &z, 1000)
    }));
    let mut failures = Vec::new();
    for (case, img) in images {
        let r = timed(20, case, move || -> Result<String, String> {
            let mut lb = open(img).map_err(|e| format!("open: {}", name(&e)))?;
            let st = lb
                .compact()
                .map_err(|e| format!("compact: {} ({e})", name(&e)))?;
            let out = lb.image().unwrap();
            drop(lb);
            let lb = open(out).map_err(|e| format!("COMPACTED ARCHIVE DOES NOT OPEN: {e}"))?;
            lb.verify()
                .map_err(|e| format!("COMPACTED ARCHIVE DOES NOT VERIFY: {e}"))?;
            Ok(format!("compacted: {st:?}"))
        });
        eprintln!("[hostile] compact {case}: {r:?}");
        if let Err(m) = &r
            && (m.contains("COMPACTED")
                || !(m.contains("Corrupt") || m.contains("LimitExceeded") || m.starts_with("open")))
        {
            failures.push(format!("{case}: {m}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
