//! `read_at`: seeded random ranges, frame boundaries (frames are 64 KiB), past
//! the end, zero-length buffers; packed small files and multi-frame files;
//! staged and committed; both backends.

mod common;

use common::*;
use lockbox::{Error, Lockbox, Profile};

const FRAME: u64 = 65536;

struct Fixture {
    files: Vec<(String, Vec<u8>)>,
}

fn fixture() -> Fixture {
    let mut files = Vec::new();
    let mut rng = XorShift::new(99);
    // packed small files
    for i in 0..150u64 {
        let len = rng.below(4000) as usize;
        files.push((format!("small/s{i:03}"), content(i, len)));
    }
    // multi-frame files, each style (random / text / runs)
    let sizes = [
        3 * FRAME,
        3 * FRAME + 1,
        4 * FRAME - 1,
        300_001,
        (1 << 20) + 123,
    ];
    for (k, &s) in sizes.iter().enumerate() {
        files.push((format!("large/l{k}"), content(1000 + k as u64, s as usize)));
    }
    Fixture { files }
}

fn expected_slice(data: &[u8], off: u64, len: usize) -> &[u8] {
    if off >= data.len() as u64 {
        return &[];
    }
    let start = off as usize;
    let end = (start + len).min(data.len());
    &data[start..end]
}

fn check_read(
    lb: &Lockbox,
    path: &str,
    data: &[u8],
    off: u64,
    len: usize,
    buf: &mut Vec<u8>,
    when: &str,
) {
    buf.clear();
    buf.resize(len, 0xAA);
    let n = lb
        .read_at(path, off, &mut buf[..])
        .unwrap_or_else(|e| panic!("{when}: read_at({path}, {off}, len {len}) failed: {e:?}"));
    let want = expected_slice(data, off, len);
    assert_eq!(
        n,
        want.len(),
        "{when}: read_at({path}, off {off}, len {len}) on a {}-byte file returned {n} bytes, expected {}",
        data.len(),
        want.len()
    );
    if &buf[..n] != want {
        let k = buf[..n].iter().zip(want).position(|(a, b)| a != b).unwrap();
        panic!("{when}: read_at({path}, off {off}, len {len}) wrong byte at result index {k}");
    }
}

fn exercise(lb: &Lockbox, fx: &Fixture, seed: u64, when: &str) {
    let mut rng = XorShift::new(seed);
    let mut buf = Vec::new();
    for (path, data) in &fx.files {
        let flen = data.len() as u64;
        let large = flen > FRAME;
        // random ranges
        let count = if large { 120 } else { 12 };
        for _ in 0..count {
            let off = rng.below(flen + 200);
            let len = match rng.below(10) {
                0..=5 => rng.below(5000) as usize,
                6..=7 => rng.below(FRAME + 10) as usize,
                _ => rng.below(3 * FRAME) as usize,
            };
            check_read(lb, path, data, off, len, &mut buf, when);
        }
        // frame boundaries
        if large {
            let mut b = FRAME;
            while b <= flen + 1 {
                for off in [b - 1, b, b + 1] {
                    for len in [1usize, 2, 100, FRAME as usize, FRAME as usize + 1] {
                        check_read(lb, path, data, off, len, &mut buf, when);
                    }
                }
                // a read that ends exactly at the boundary, and one that spans two
                check_read(lb, path, data, b - 10, 10, &mut buf, when);
                check_read(
                    lb,
                    path,
                    data,
                    b - FRAME,
                    2 * FRAME as usize,
                    &mut buf,
                    when,
                );
                b += FRAME;
            }
        }
        // whole file, start, tail, past the end
        check_read(lb, path, data, 0, data.len(), &mut buf, when);
        check_read(lb, path, data, 0, data.len() + 17, &mut buf, when);
        if flen >= 3 {
            check_read(lb, path, data, flen - 3, 10, &mut buf, when);
        }
        for off in [
            flen,
            flen + 1,
            flen + 1000,
            u64::MAX / 2,
            u64::MAX - 1,
            u64::MAX,
        ] {
            check_read(lb, path, data, off, 10, &mut buf, when);
        }
        // zero-length buffer anywhere
        for off in [0, flen / 2, flen, flen + 5, u64::MAX] {
            let n = lb
                .read_at(path, off, &mut [])
                .unwrap_or_else(|e| panic!("{when}: zero-length read_at({path}, {off}): {e:?}"));
            assert_eq!(n, 0, "{when}: zero-length read_at({path}, {off})");
        }
    }
}

fn run(backend: Backend, seed: u64) {
    let fx = fixture();
    let mut h = Harness::create(backend);
    for (p, d) in &fx.files {
        h.lb_mut()
            .put(p, d)
            .unwrap_or_else(|e| panic!("put {p}: {e:?}"));
    }
    exercise(h.lb(), &fx, seed, "staged");
    h.lb_mut().commit().expect("commit");
    exercise(h.lb(), &fx, seed + 1, "committed");
    h.reopen();
    exercise(h.lb(), &fx, seed + 2, "reopened");
}

#[test]
fn read_at_file_backend() {
    run(Backend::File, 1);
}

/// Under a profile that keeps decoded frames, whole frames are copied
/// from the cache rather than decoded into the caller's buffer: the same
/// bytes, the first pass filling the cache and the second reading from it.
#[test]
fn read_at_with_frames_cached() {
    let fx = fixture();
    let mut h = Harness::create(Backend::Memory);
    h.lb_mut().set_profile(Profile::ReadMostly);
    for (p, d) in &fx.files {
        h.lb_mut().put(p, d).unwrap();
    }
    h.lb_mut().commit().expect("commit");
    exercise(h.lb(), &fx, 7, "cached, first pass");
    assert!(h.lb().cache_stats().misses > 0);
    let hits = h.lb().cache_stats().hits;
    exercise(h.lb(), &fx, 8, "cached, second pass");
    assert!(h.lb().cache_stats().hits > hits);
}

#[test]
fn read_at_memory_backend() {
    run(Backend::Memory, 101);
}

#[test]
fn read_at_put_reader_staged_and_committed() {
    // a large file streamed in through put_reader, read before and after commit
    for backend in [Backend::File, Backend::Memory] {
        let mut h = Harness::create(backend);
        let len = 5 * FRAME + 333;
        let n = h
            .lb_mut()
            .put_reader("stream", GenReader::new(5, len).with_max_chunk(7777))
            .unwrap();
        assert_eq!(n, len);
        let mut data = vec![0u8; len as usize];
        ByteStream::new(5).fill(&mut data);
        let fx = Fixture {
            files: vec![("stream".to_string(), data)],
        };
        exercise(h.lb(), &fx, 7, &format!("{backend:?} staged put_reader"));
        h.lb_mut().commit().unwrap();
        h.reopen();
        exercise(h.lb(), &fx, 8, &format!("{backend:?} committed put_reader"));
    }
}

#[test]
fn read_at_sees_staged_replacement_and_rollback() {
    for backend in [Backend::File, Backend::Memory] {
        let mut h = Harness::create(backend);
        let old = content(1, 200_000);
        let new = content(2, 70_000);
        h.lb_mut().put("f", &old).unwrap();
        h.lb_mut().put("s", b"small old").unwrap();
        h.lb_mut().commit().unwrap();
        h.lb_mut().put("f", &new).unwrap();
        h.lb_mut().put("s", b"new").unwrap();
        let mut buf = Vec::new();
        for off in [0u64, 1000, 65535, 65536, 69_990, 70_000, 150_000] {
            check_read(
                h.lb(),
                "f",
                &new,
                off,
                20_000,
                &mut buf,
                "staged replacement",
            );
        }
        check_read(
            h.lb(),
            "s",
            b"new",
            0,
            100,
            &mut buf,
            "staged replacement small",
        );
        h.lb_mut().rollback();
        for off in [0u64, 1000, 65535, 65536, 69_990, 70_000, 150_000, 199_999] {
            check_read(h.lb(), "f", &old, off, 20_000, &mut buf, "after rollback");
        }
        check_read(
            h.lb(),
            "s",
            b"small old",
            2,
            100,
            &mut buf,
            "after rollback small",
        );
    }
}

#[test]
fn read_at_errors() {
    let mut h = Harness::create(Backend::Memory);
    h.lb_mut().put("dir/file", b"abc").unwrap();
    h.lb_mut().symlink("link", "dir/file").unwrap();
    h.lb_mut().mkdir("empty").unwrap();
    for staged_or_committed in 0..2 {
        let lb = h.lb();
        let mut buf = [0u8; 8];
        let e = expect_err(lb.read_at("missing", 0, &mut buf), "read_at missing");
        assert!(
            matches!(e, Error::NotFound(_)),
            "read_at(missing): got {e:?}"
        );
        let e = expect_err(lb.read_at("dir", 0, &mut buf), "read_at implicit dir");
        assert!(matches!(e, Error::NotAFile(_)), "read_at(dir): got {e:?}");
        let e = expect_err(lb.read_at("empty", 0, &mut buf), "read_at explicit dir");
        assert!(matches!(e, Error::NotAFile(_)), "read_at(empty): got {e:?}");
        let e = expect_err(lb.read_at("link", 0, &mut buf), "read_at symlink");
        assert!(matches!(e, Error::NotAFile(_)), "read_at(link): got {e:?}");
        let e = expect_err(lb.read_at("dir/../dir/file", 0, &mut buf), "read_at ..");
        assert!(
            matches!(e, Error::InvalidPath { .. }),
            "read_at(..): got {e:?}"
        );
        assert_eq!(lb.read_at("/dir/file", 1, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"bc");
        if staged_or_committed == 0 {
            h.lb_mut().commit().unwrap();
        }
    }
}
