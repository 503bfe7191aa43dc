//! TOC scale: 200,000 entries with a small node capacity so the B-tree gets
//! several levels. Opening must stay O(1) in the entry count, a one-file commit
//! must write little, and deleting most entries must bring the height down.

mod common;

use common::*;
use lockbox::{Builder, EntryKind, Lockbox};
use std::path::Path;

const TOTAL: u64 = 200_000;
const BATCH: u64 = 20_000;
const DIRS: u64 = 500;
const NODE: usize = 4096;

fn path_of(i: u64) -> String {
    format!("d{:03}/f{:06}", i % DIRS, i)
}

fn data_of(i: u64) -> [u8; 8] {
    (i ^ 0x5555_AAAA_0000_FFFF).to_le_bytes()
}

fn builder() -> Builder {
    Lockbox::builder().node_capacity(NODE)
}

fn open(path: &Path) -> Lockbox {
    builder().open(path, key()).expect("open")
}

fn check_sample(lb: &Lockbox, present: impl Fn(u64) -> bool, seed: u64, when: &str) {
    let mut rng = XorShift::new(seed);
    for _ in 0..300 {
        let i = rng.below(TOTAL);
        let p = path_of(i);
        let st = lb
            .stat(&p)
            .unwrap_or_else(|e| panic!("{when}: stat({p}): {e:?}"));
        if present(i) {
            let st = st.unwrap_or_else(|| panic!("{when}: stat({p}) is None"));
            assert_eq!(st.kind, EntryKind::File, "{when}: {p}");
            assert_eq!(st.len, 8, "{when}: {p}");
            assert_eq!(lb.get(&p).unwrap(), data_of(i), "{when}: content of {p}");
        } else {
            assert!(st.is_none(), "{when}: stat({p}) should be None");
        }
    }
}

fn check_full_list(lb: &Lockbox, present: impl Fn(u64) -> bool, when: &str) -> u64 {
    let mut it = lb.list("").expect("list");
    let mut n = 0u64;
    for d in 0..DIRS {
        let mut i = d;
        while i < TOTAL {
            if present(i) {
                let e = it
                    .next()
                    .unwrap_or_else(|| panic!("{when}: list ended early after {n} entries"))
                    .unwrap_or_else(|err| panic!("{when}: list item #{n}: {err:?}"));
                assert_eq!(e.path, path_of(i), "{when}: list entry #{n}");
                assert_eq!(e.len, 8, "{when}: list entry #{n} len");
                n += 1;
            }
            i += DIRS;
        }
    }
    if let Some(extra) = it.next() {
        panic!(
            "{when}: list has extra entries after {n}: {:?}",
            extra.map(|e| e.path)
        );
    }
    n
}

#[test]
fn toc_200k_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scale.lbox");
    let mut lb = builder().create(&path, key()).expect("create");
    let mut open_reads = Vec::new();
    for batch in 0..TOTAL / BATCH {
        for i in batch * BATCH..(batch + 1) * BATCH {
            lb.put(&path_of(i), &data_of(i))
                .unwrap_or_else(|e| panic!("put #{i}: {e:?}"));
        }
        let cs = lb.commit().expect("commit");
        drop(lb);
        lb = open(&path);
        let reads = lb.io_stats().reads;
        let file_len = std::fs::metadata(&path).unwrap().len();
        eprintln!(
            "[toc] batch {batch}: {} entries, commit wrote {} bytes in {} pages, reads right after open {reads}, file {file_len} bytes",
            (batch + 1) * BATCH,
            cs.bytes_written,
            cs.pages_written
        );
        open_reads.push(reads);
        // a cold point lookup reads O(height) pages
        let before = lb.io_stats().reads;
        let probe = path_of(batch * BATCH + 7);
        assert!(
            lb.stat(&probe).unwrap().is_some(),
            "stat({probe}) after reopen"
        );
        let lookup_reads = lb.io_stats().reads - before;
        eprintln!("[toc] batch {batch}: cold stat() took {lookup_reads} reads");
        assert!(
            lookup_reads <= 12,
            "a cold stat() of one path took {lookup_reads} reads with {} entries: the TOC is not read lazily",
            (batch + 1) * BATCH
        );
        let n = (batch + 1) * BATCH;
        check_sample(&lb, |i| i < n, batch, &format!("after batch {batch}"));
    }
    eprintln!("[toc] reads right after open per batch: {open_reads:?}");
    let first = open_reads[0];
    let max = *open_reads.iter().max().unwrap();
    assert!(
        max <= first + 2,
        "reads right after open grew with the entry count: {open_reads:?}"
    );
    assert!(max <= 10, "opening takes too many reads: {open_reads:?}");

    let report = lb.verify().expect("verify at 200k");
    let height_full = report.toc_height;
    eprintln!("[toc] TOC height with {TOTAL} entries (node capacity {NODE}): {height_full}");
    assert!(
        height_full >= 2,
        "a 200k-entry TOC with {NODE}-byte nodes must have several levels, height {height_full}"
    );

    let n = check_full_list(&lb, |_| true, "200k");
    assert_eq!(n, TOTAL);

    // One-file commits into the big lockbox. The first commit after a
    // large batch also moves that batch's freed pages into the free-space
    // index (deferred until the batch was durable and zeroed), so it is
    // bounded by the batch, not by the file; the next is the steady state.
    let mut sizes = Vec::new();
    for (i, name) in ["zz-one/new.txt", "zz-one/second.txt"]
        .into_iter()
        .enumerate()
    {
        lb.put(name, b"a single new file").unwrap();
        let cs = lb.commit().expect("one-file commit");
        let file_len = std::fs::metadata(&path).unwrap().len();
        eprintln!(
            "[toc] one-file commit #{}: {} bytes written in {} pages; file length {} bytes ({:.4} %)",
            i + 1,
            cs.bytes_written,
            cs.pages_written,
            file_len,
            cs.bytes_written as f64 * 100.0 / file_len as f64
        );
        assert!(
            cs.bytes_written > 0,
            "one-file commit reports 0 bytes written"
        );
        sizes.push((cs.bytes_written, file_len, cs.pages_written));
    }
    let (first, len1, _) = sizes[0];
    let (steady, _, steady_pages) = sizes[1];
    assert!(
        first * 20 < len1,
        "first one-file commit wrote {first} bytes, not < 5 % of {len1}"
    );
    // Steady state: O(tree height) pages. Each of the TOC and free-space
    // trees changes one root-to-leaf path (height 4 here), plus the
    // redaction list; every page written is also zeroed once freed, and a
    // page is at most its 4 KiB capacity plus the envelope.
    let height = lb.verify().unwrap().toc_height as u64;
    let page_bound = 3 * (height + 1) + 2;
    assert!(
        steady_pages <= page_bound,
        "steady one-file commit wrote {steady_pages} pages (bound {page_bound})"
    );
    let byte_bound = 2 * page_bound * (4096 + 64) + 4096;
    assert!(
        steady <= byte_bound,
        "steady one-file commit wrote {steady} bytes (bound {byte_bound})"
    );
    lb.delete("zz-one").unwrap();
    lb.commit().unwrap();

    // delete 195,000 entries: 487 whole directories plus 200 files of d487
    for d in 0..487u64 {
        let p = format!("d{d:03}");
        let removed = lb
            .delete(&p)
            .unwrap_or_else(|e| panic!("delete {p}: {e:?}"));
        assert_eq!(removed, TOTAL / DIRS, "delete({p}) count");
    }
    let mut singles = 0;
    for i in (487..TOTAL).step_by(DIRS as usize).take(200) {
        assert_eq!(lb.delete(&path_of(i)).unwrap(), 1);
        singles += 1;
    }
    assert_eq!(singles, 200);
    let present = |i: u64| {
        let d = i % DIRS;
        d > 487 || (d == 487 && (i - 487) / DIRS >= 200)
    };
    lb.commit().expect("commit after delete");
    drop(lb);
    let lb = open(&path);
    let report = lb.verify().expect("verify after delete");
    eprintln!(
        "[toc] TOC height after deleting 195,000 entries: {} (was {height_full})",
        report.toc_height
    );
    assert!(
        report.toc_height < height_full,
        "TOC height did not come down: {} -> {}",
        height_full,
        report.toc_height
    );
    let n = check_full_list(&lb, present, "after delete");
    assert_eq!(n, TOTAL - 195_000);
    check_sample(&lb, present, 77, "after delete");
    for i in (0..TOTAL).filter(|&i| present(i)) {
        assert_eq!(
            lb.get(&path_of(i)).unwrap(),
            data_of(i),
            "content of {}",
            path_of(i)
        );
    }
    assert!(
        lb.stat("d000").unwrap().is_none(),
        "deleted directory still visible"
    );
}
