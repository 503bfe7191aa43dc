//! Hostile file data: lengths, frame indexes, packs, and zstd streams.

use super::*;

// ---------------------------------------------------------------------------
// File data: lengths, frame indexes, packs
// ---------------------------------------------------------------------------

/// A file claiming 2^60 bytes over a one-frame layout: `get` must fail
/// fast without allocating the claimed length; `read_at` at a small
/// offset must answer (the first frame is real) and beyond it fail.
#[test]
fn file_claims_2_pow_60_bytes_with_one_frame() {
    let mut b = Build::new();
    let fr = b.frame(&drivers::content(1, 65536));
    let rec = framed(1 << 60, 65536, 0, fr);
    let l = b.leaf(&[(b"huge", rec.encode())]);
    let lb = Arc::new(open(b.image(Some((l, 1, 1)), None)).unwrap());
    let l2 = lb.clone();
    let (r, biggest, took) = timed(10, "get 2^60", move || {
        let t = Instant::now();
        let (r, big) = biggest_alloc(|| l2.get("huge").map(|v| v.len()));
        (r.map_err(|e| (name(&e), e.to_string())), big, t.elapsed())
    });
    eprintln!(
        "[hostile] get(2^60 one frame): {r:?} in {took:?}, largest allocation {biggest} bytes"
    );
    assert!(
        matches!(r, Err(("LimitExceeded" | "Corrupt", _))),
        "get: {r:?}"
    );
    assert!(
        biggest < 64 << 20,
        "get allocated {biggest} bytes for a file whose layout holds 64 KiB"
    );
    // `None`: either answer is fine (the first frame is real, so a read
    // inside it may answer, with its bytes, or refuse the whole record).
    let frame0 = drivers::content(1, 65536);
    let probes = [
        (Probe::ReadAt("huge", 0), None),
        (Probe::ReadAt("huge", 65536 - 4096), None),
        (Probe::ReadAt("huge", 65536 - 10), Some(false)), // spans into frame 1
        (Probe::ReadAt("huge", 65536), Some(false)),
        (Probe::ReadAt("huge", 1 << 59), Some(false)),
        (Probe::ReadAt("huge", (1 << 60) - 1), Some(false)),
        (Probe::ReadAt("huge", u64::MAX), Some(true)), // past the end: Ok(0)
        (Probe::CopyTo("huge"), Some(false)),
        (Probe::Verify, Some(false)),
    ];
    for (p, ok) in probes {
        let l = lb.clone();
        let pp = p.clone();
        let r = timed(10, &format!("{p:?}"), move || run_probe(&l, &pp));
        eprintln!("[hostile] 2^60: {p:?} -> {r:?}");
        if let Some(ok) = ok {
            assert_eq!(r.is_ok(), ok, "{p:?}: {r:?}");
        }
        match r {
            Err((n, _)) => assert!(n == "Corrupt" || n == "LimitExceeded", "{p:?}: {n}"),
            Ok(_) => {
                if let Probe::ReadAt(_, off) = p
                    && off < 65536
                {
                    let mut buf = vec![0u8; 4096];
                    let n = lb.read_at("huge", off, &mut buf).unwrap();
                    let o = off as usize;
                    assert_eq!(
                        &buf[..n],
                        &frame0[o..o + n],
                        "read_at({off}) returned WRONG DATA"
                    );
                }
            }
        }
    }
    let scratch = Scratch::new("hostile-huge");
    let r = lb.extract_to_directory(scratch.dest(), &ExtractOptions::default());
    assert!(
        matches!(r, Err(Error::LimitExceeded { .. } | Error::Corrupt { .. })),
        "extract: {r:?}"
    );
}

/// A length under the 256 MiB direct-read threshold over a layout that
/// can hold one 64 KiB frame: the claim is impossible on its face, so
/// nothing near the claimed size should be allocated before refusing.
#[test]
fn impossible_length_is_refused_before_allocating() {
    let mut b = Build::new();
    let fr = b.frame(&drivers::content(1, 65536));
    let rec = framed(200 << 20, 65536, 0, fr);
    let l = b.leaf(&[(b"f", rec.encode())]);
    let lb = open(b.image(Some((l, 1, 1)), None)).unwrap();
    let t = Instant::now();
    let (r, biggest) = biggest_alloc(|| lb.get("f").map(|v| v.len()));
    eprintln!(
        "[hostile] get(200 MiB claimed, one 64 KiB frame): {r:?} in {:?}, largest allocation {} MiB",
        t.elapsed(),
        biggest >> 20
    );
    assert!(
        matches!(r, Err(Error::Corrupt { .. } | Error::LimitExceeded { .. })),
        "{r:?}"
    );
    assert!(
        biggest <= 16 << 20,
        "get() allocated (and zero-filled) {} MiB for a file whose one-frame layout can hold 64 KiB",
        biggest >> 20
    );
}

/// `extract_all` (extraction to memory) of a file claiming 2^60 bytes
/// must return an error, not abort the process. Run in a subprocess.
#[test]
fn extract_all_with_huge_length_does_not_abort() {
    // The child's test name carries this module's path (`data::...`),
    // without the crate name.
    let child = format!(
        "{}::child_extract_all_huge",
        module_path!().split_once("::").expect("a submodule").1
    );
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child.as_str(), "--nocapture", "--test-threads=1"])
        .env("LOCKBOX_HOSTILE_CHILD", "extract_all")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD-DONE"),
        "extract_all on a file claiming 2^60 bytes killed the process ({:?}):\n{}\n{}",
        out.status,
        stdout
            .lines()
            .filter(|l| l.contains("CHILD"))
            .collect::<Vec<_>>()
            .join("\n"),
        stderr.lines().rev().take(6).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn child_extract_all_huge() {
    if std::env::var("LOCKBOX_HOSTILE_CHILD").as_deref() != Ok("extract_all") {
        return;
    }
    let mut b = Build::new();
    let fr = b.frame(&drivers::content(1, 65536));
    let rec = framed(1 << 60, 65536, 0, fr);
    let l = b.leaf(&[(b"huge", rec.encode())]);
    let lb = open(b.image(Some((l, 1, 1)), None)).unwrap();
    println!("CHILD-START");
    let r = lb.extract_all("", |_, _| Ok(()));
    println!("CHILD-DONE {:?}", r.map(|s| s.files));
}

#[test]
fn frame_index_depth_and_shape() {
    let data = drivers::content(1, 65536);
    // Depth 5 (over the limit of 4).
    let mut b = Build::new();
    let fr = b.frame(&data);
    let idx = b.seal(kind::FRAME_INDEX, &forge::index_page(&[fr]));
    let rec = framed(65536, 65536, 5, idx);
    let l = b.leaf(&[(b"f", rec.encode())]);
    refused(
        "index depth 5",
        b.image(Some((l, 1, 1)), None),
        &[Probe::Get("f"), Probe::ReadAt("f", 0)],
        CORRUPT,
    );
    // Depth 2 over a one-level index: frames read as index pages.
    let mut b = Build::new();
    let f1 = b.frame(&data);
    let f2 = b.frame(&data);
    let idx = b.seal(kind::FRAME_INDEX, &forge::index_page(&[f1, f2]));
    let rec = framed(2 * 65536, 65536, 2, idx);
    let l = b.leaf(&[(b"f", rec.encode())]);
    refused(
        "index depth 2 over 1 level",
        b.image(Some((l, 1, 1)), None),
        &[Probe::Get("f"), Probe::ReadAt("f", 70000)],
        CORRUPT,
    );
    // An index page with 2049 entries, and one with a count that lies.
    let mut b = Build::new();
    let f1 = b.frame(&data);
    let many = vec![f1; 2049];
    let idx = b.seal(kind::FRAME_INDEX, &forge::index_page(&many));
    let rec = framed(2049 * 65536, 65536, 1, idx);
    let l = b.leaf(&[(b"f", rec.encode())]);
    refused(
        "index of 2049",
        b.image(Some((l, 1, 1)), None),
        &[Probe::Get("f"), Probe::ReadAt("f", 0)],
        CORRUPT,
    );
    let mut b = Build::new();
    let f1 = b.frame(&data);
    let mut page = forge::index_page(&[f1]);
    page[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let idx = b.seal(kind::FRAME_INDEX, &page);
    let rec = framed(65536, 65536, 1, idx);
    let l = b.leaf(&[(b"f", rec.encode())]);
    refused(
        "index count 2^32-1",
        b.image(Some((l, 1, 1)), None),
        &[Probe::Get("f"), Probe::ReadAt("f", 0)],
        CORRUPT,
    );
    // Frame size 0, and frames whose length differs from the layout.
    let mut b = Build::new();
    let f1 = b.frame(&data);
    let rec = framed(65536, 0, 0, f1);
    let l = b.leaf(&[(b"f", rec.encode())]);
    refused(
        "frame size 0",
        b.image(Some((l, 1, 1)), None),
        &[Probe::Get("f"), Probe::ReadAt("f", 0)],
        CORRUPT,
    );
    let mut b = Build::new();
    let f1 = b.frame(&data[..1000]);
    let f2 = b.frame(&data[..1000]);
    let idx = b.seal(kind::FRAME_INDEX, &forge::index_page(&[f1, f2]));
    let rec = framed(2000, 1000, 1, idx);
    let l = b.leaf(&[
        (b"f", rec.encode()),
        (b"g", framed(1500, 1000, 1, idx).encode()),
    ]);
    let lb = open(b.image(Some((l, 1, 2)), None)).unwrap();
    assert_eq!(
        lb.get("f").unwrap(),
        [&data[..1000], &data[..1000]].concat(),
        "a legal 2-frame layout"
    );
    assert!(
        matches!(lb.get("g"), Err(Error::Corrupt { .. })),
        "last frame longer than the file"
    );
    // Index cycle: an index page whose entry points at its own offset.
    let mut b = Build::new();
    let f1 = b.frame(&data[..100]);
    let _ = f1;
    let own = Ptr {
        offset: f1.end(),
        len: (4 + 40 + forge::OVERHEAD) as u32,
        generation: b.generation(),
        raw_len: 44,
        tag: [1; 16],
    };
    let idx = b.seal(kind::FRAME_INDEX, &forge::index_page(&[own]));
    assert_eq!((idx.offset, idx.len), (own.offset, own.len));
    let rec = framed(100, 100, 2, idx);
    let l = b.leaf(&[(b"f", rec.encode())]);
    refused(
        "index entry = itself",
        b.image(Some((l, 1, 1)), None),
        &[Probe::Get("f"), Probe::ReadAt("f", 50)],
        CORRUPT,
    );
}

#[test]
fn pointers_out_of_bounds_or_lying() {
    let data = drivers::content(2, 3000);
    type Mutate = Box<dyn Fn(Ptr) -> Ptr>;
    let mut cases: Vec<(&str, Mutate)> = vec![
        (
            "offset into the key slot table",
            Box::new(|p: Ptr| Ptr { offset: 4096, ..p }),
        ),
        ("offset 0", Box::new(|p: Ptr| Ptr { offset: 0, ..p })),
        (
            "past the end",
            Box::new(|p: Ptr| Ptr {
                offset: p.offset + 1_000_000,
                ..p
            }),
        ),
        (
            "offset + len overflows",
            Box::new(|p: Ptr| Ptr {
                offset: u64::MAX - 10,
                ..p
            }),
        ),
        ("len 0", Box::new(|p: Ptr| Ptr { len: 0, ..p })),
        ("len 40", Box::new(|p: Ptr| Ptr { len: 40, ..p })),
        (
            "len u32::MAX",
            Box::new(|p: Ptr| Ptr { len: u32::MAX, ..p }),
        ),
        (
            "raw_len lies (smaller)",
            Box::new(|p: Ptr| Ptr {
                raw_len: p.raw_len - 1,
                ..p
            }),
        ),
        (
            "raw_len u32::MAX",
            Box::new(|p: Ptr| Ptr {
                raw_len: u32::MAX,
                ..p
            }),
        ),
        (
            "generation lies",
            Box::new(|p: Ptr| Ptr {
                generation: p.generation - 1,
                ..p
            }),
        ),
        (
            "generation newer than the leaf",
            Box::new(|p: Ptr| Ptr {
                generation: p.generation + 1,
                ..p
            }),
        ),
        (
            "tag lies",
            Box::new(|p: Ptr| Ptr {
                tag: [0xAA; 16],
                ..p
            }),
        ),
        (
            "shifted by one",
            Box::new(|p: Ptr| Ptr {
                offset: p.offset + 1,
                ..p
            }),
        ),
    ];
    for (case, f) in cases.drain(..) {
        let mut b = Build::new();
        let fr = b.frame(&data);
        let bad = f(fr);
        let rec = framed(3000, 65536, 0, bad);
        let l = b.leaf(&[(b"f", rec.encode())]);
        refused(
            &format!("frame ptr: {case}"),
            b.image(Some((l, 1, 1)), None),
            &[Probe::Get("f"), Probe::ReadAt("f", 0), Probe::CopyTo("f")],
            CORRUPT,
        );
    }
    // A TOC child pointer into the header.
    let mut b = Build::new();
    let good = b.leaf(&[(b"a", file(b"A"))]);
    let bad = Ptr { offset: 0, ..good };
    let root = b.internal(1, &[(b"", good), (b"m", bad)]);
    refused(
        "child ptr to the header",
        b.image(Some((root, 2, 2)), None),
        &[Probe::List],
        CORRUPT,
    );
}

#[test]
fn packed_content_beyond_its_frame() {
    let data = drivers::content(2, 1000);
    let mut failures = Vec::new();
    for (case, offset, len) in [
        ("end past the frame", 900u32, 200u64),
        ("offset past the frame", 5000, 10),
        ("offset u32::MAX", u32::MAX, 10),
        ("len u64::MAX", 10, u64::MAX),
        ("offset and len at the limits", u32::MAX, u64::MAX - 5),
    ] {
        // Built with the forge, so the pack-reference tree is right and
        // verify() gets as far as the packed entry.
        let (img, _) = forge_packed(&data, offset, len);
        let mut probes = vec![
            Probe::Get("p"),
            Probe::ReadAt("p", 0),
            Probe::ReadAt("p", len.saturating_sub(5)),
            Probe::CopyTo("p"),
            Probe::Var("v"),
        ];
        if len > u64::MAX - 20 {
            probes.push(Probe::ReadAt("p", u64::MAX - 20));
        }
        // Each probe on its own, so one failure does not hide the others.
        for p in probes.into_iter().map(Some).chain([None]) {
            let img = img.clone();
            let r = catch_unwind(AssertUnwindSafe(|| {
                refused(
                    &format!("packed: {case}"),
                    img,
                    p.as_slice(),
                    &["Corrupt", "LimitExceeded"],
                )
            }));
            if let Err(e) = r {
                failures.push(e.downcast_ref::<String>().cloned().unwrap_or_default());
            }
        }
    }
    failures.sort();
    failures.dedup();
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The control: the same construction, in range, reads and verifies.
    let (img, _) = forge_packed(&data, 100, 200);
    let lb = open(img).unwrap();
    assert_eq!(lb.get("p").unwrap(), &data[100..300]);
    assert_eq!(lb.var("v").unwrap().unwrap(), &data[100..300]);
    lb.verify().expect("forged packed control verifies");
}

/// One framed content shared by two entries, forged: well formed (reads
/// and verifies), with the entries disagreeing on its length, with one
/// entry's user reference missing, and with a content-index entry that no
/// user's reference carries. Reads give the bytes or `Corrupt`, never a
/// panic, and `verify` refuses each damaged form.
#[test]
fn shared_framed_content_forged() {
    let small = drivers::content(5, 5000);
    let build = |second_len: u64, users: &[&[u8]], stray_index: bool| {
        let mut b = Build::new();
        let f = b.frame(&small);
        let leaf = b.leaf(&[
            (b"a", framed(5000, 65536, 0, f).encode()),
            (b"b", framed(second_len, 65536, 0, f).encode()),
        ]);
        let mut refs: Vec<(Vec<u8>, Vec<u8>)> = users
            .iter()
            .map(|k| forge::member_ref(f.offset, b'T', k))
            .collect();
        if stray_index {
            // `0xFF ‖ hint` → `root u64 ‖ len u64 ‖ 0x01` (format.md §10).
            let mut key = vec![0xFF];
            key.extend_from_slice(&[7u8; 16]);
            let mut value = f.offset.to_le_bytes().to_vec();
            value.extend_from_slice(&5000u64.to_le_bytes());
            value.push(1);
            refs.push((key, value));
        }
        refs.sort();
        b.image_with_refs(Some((leaf, 1, 2)), None, &refs)
    };
    let lb = open(build(5000, &[b"a", b"b"], false)).unwrap();
    assert_eq!(lb.get("a").unwrap(), small);
    assert_eq!(lb.get("b").unwrap(), small);
    lb.verify()
        .expect("two entries sharing one framed content verify");

    let cases = [
        ("lengths disagree", build(4000, &[b"a", b"b"], false)),
        ("a user reference missing", build(5000, &[b"a"], false)),
        (
            "an index entry no user carries",
            build(5000, &[b"a", b"b"], true),
        ),
    ];
    for (case, img) in cases {
        let lb = open(img).unwrap_or_else(|e| panic!("{case}: open: {e:?}"));
        assert_eq!(lb.get("a").unwrap(), small, "{case}");
        match lb.get("b") {
            Ok(v) => assert_eq!(v, small, "{case}"),
            Err(e) => assert!(matches!(e, Error::Corrupt { .. }), "{case}: {e:?}"),
        }
        match lb.verify() {
            Err(Error::Corrupt { what, .. }) => eprintln!("[hostile] {case}: {what}"),
            r => panic!("{case}: verify gave {r:?}"),
        }
    }
}

/// An image holding one packed frame, a file `p` and a variable `v` that
/// both point into it at (`offset`, `len`), with a correct pack-reference
/// tree. Built from an empty lockbox with the forge.
pub(super) fn forge_packed(frame: &[u8], offset: u32, len: u64) -> (Vec<u8>, forge::Keys) {
    let lb = Lockbox::builder().create_in_memory(key()).unwrap();
    let mut img = lb.image().unwrap();
    drop(lb);
    let keys = forge::unwrap_raw(&img, &drivers::RAW).unwrap();
    let rec = forge::newest_commit(&keys, &img).unwrap();
    let g = rec.seq + 1;
    let fr = forge::append_plain(&keys, &mut img, forge::kind::FRAME, g, frame);
    let packed = Content::Packed { frame: fr, offset };
    let leaf = forge::leaf(&[(b"p".to_vec(), Record::file(len, packed.clone()).encode())]);
    let lp = forge::append_plain(&keys, &mut img, forge::kind::TOC_NODE, g, &leaf);
    let vleaf = forge::leaf(&[(b"v".to_vec(), forge::var_value(len, &packed))]);
    let vp = forge::append_plain(&keys, &mut img, forge::kind::VAR_NODE, g, &vleaf);
    let pleaf = forge::leaf(&[
        forge::member_ref(fr.offset, b'T', b"p"),
        forge::member_ref(fr.offset, b'V', b"v"),
    ]);
    let pp = forge::append_plain(&keys, &mut img, forge::kind::PACK_NODE, g, &pleaf);
    let root = |p: Ptr, count: u64| forge::Root {
        root: Some(p),
        height: 1,
        count,
    };
    forge::commit_both(
        &keys,
        &mut img,
        forge::CommitRecord {
            seq: g,
            toc: root(lp, 1),
            vars: root(vp, 1),
            packs: root(pp, 2),
            time: 1_700_000_000,
            ..Default::default()
        },
    );
    (img, keys)
}

// ---------------------------------------------------------------------------
// Decompression: hostile zstd streams (sealed with the forge: the hook
// compresses by itself and cannot carry a chosen codec byte)
// ---------------------------------------------------------------------------

/// An image with one framed file `f` whose only frame is `codec ‖ body`
/// sealed with the claimed `raw_len` (frame size = raw_len).
pub(super) fn forge_frame(codec: u8, body: &[u8], raw_len: u32) -> Vec<u8> {
    let lb = Lockbox::builder().create_in_memory(key()).unwrap();
    let mut img = lb.image().unwrap();
    drop(lb);
    let keys = forge::unwrap_raw(&img, &drivers::RAW).unwrap();
    let g = forge::newest_commit(&keys, &img).unwrap().seq + 1;
    let fr = forge::append(&keys, &mut img, forge::kind::FRAME, g, raw_len, codec, body);
    let rec = framed(raw_len as u64, raw_len.max(1), 0, fr);
    let leaf = forge::leaf(&[(b"f".to_vec(), rec.encode())]);
    let lp = forge::append_plain(&keys, &mut img, forge::kind::TOC_NODE, g, &leaf);
    let pleaf = forge::leaf(&[forge::member_ref(fr.offset, b'T', b"f")]);
    let pp = forge::append_plain(&keys, &mut img, forge::kind::PACK_NODE, g, &pleaf);
    forge::commit_both(
        &keys,
        &mut img,
        forge::CommitRecord {
            seq: g,
            toc: forge::Root::leaf(lp, 1),
            packs: forge::Root::leaf(pp, 1),
            time: 1_700_000_000,
            ..Default::default()
        },
    );
    img
}

#[test]
fn zstd_bombs_and_lying_codecs() {
    use std::io::Write;
    // Control: a real zstd frame with its true length reads and verifies.
    let data = drivers::content(2, 10_000);
    let z = zstd::bulk::compress(&data, 3).unwrap();
    let lb = open(forge_frame(1, &z, 10_000)).unwrap();
    assert_eq!(lb.get("f").unwrap(), data);
    lb.verify().expect("forged zstd control verifies");

    // 1. Header claims 1 GiB of content; raw_len says 1000.
    let zeros = vec![0u8; 64 << 20];
    let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
    eprintln!(
        "[hostile] zstd bomb: {} compressed bytes for {} MiB",
        bomb.len(),
        zeros.len() >> 20
    );
    drop(zeros);
    // 2. A frame without a content size and a 2 GiB window descriptor.
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_contentsize(false).unwrap();
    enc.window_log(31).unwrap();
    enc.long_distance_matching(true).unwrap();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..8 {
        enc.write_all(&chunk).unwrap();
    }
    let wide = enc.finish().unwrap();
    assert!(
        wide[4] & 0x20 == 0,
        "the crafted frame must not be single-segment"
    );
    // 3. Decodes to fewer bytes than raw_len; 4. concatenated frames past
    // raw_len; 5. garbage; 6. unknown codec; 7. stored with a lying length.
    let short = zstd::bulk::compress(&data[..500], 3).unwrap();
    let twice = [z.clone(), z.clone()].concat();
    for (case, codec, body, raw_len) in [
        (
            "content size 64 MiB, raw_len 1000",
            1u8,
            bomb.clone(),
            1000u32,
        ),
        (
            "content size 64 MiB, raw_len 32 MiB",
            1,
            bomb.clone(),
            32 << 20,
        ),
        (
            "window 2 GiB, no content size, raw_len 4096",
            1,
            wide.clone(),
            4096,
        ),
        ("decodes to 500, raw_len 1000", 1, short, 1000),
        ("two frames, raw_len of one", 1, twice, 10_000),
        ("garbage as zstd", 1, drivers::content(5, 300), 300),
        ("codec 2", 2, data[..300].to_vec(), 300),
        ("codec 255", 255, data[..300].to_vec(), 300),
        ("stored, raw_len + 1", 0, data[..300].to_vec(), 301),
        ("stored, raw_len - 1", 0, data[..300].to_vec(), 299),
        (
            "raw_len over 32 MiB",
            0,
            data[..300].to_vec(),
            (32 << 20) + 1,
        ),
    ] {
        let img = forge_frame(codec, &body, raw_len);
        let (_, biggest) = biggest_alloc(|| {
            refused(
                &format!("zstd: {case}"),
                img,
                &[Probe::Get("f"), Probe::ReadAt("f", 0), Probe::CopyTo("f")],
                CORRUPT,
            )
        });
        assert!(
            biggest <= (raw_len as usize).max(1 << 20) + (8 << 20),
            "zstd: {case}: largest allocation {biggest} bytes for raw_len {raw_len}"
        );
    }
}
