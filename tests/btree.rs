//! B-tree structure under small node capacities: entries larger than a
//! quarter of a node, splits, merges, height up and down.

use std::sync::mpsc;
use std::time::Duration;

use lockbox::{Key, Lockbox};

fn long_path(tag: char) -> String {
    let comp = format!("{tag}{}", "y".repeat(239));
    format!("{comp}/{comp}/{comp}/{comp}/z")
}

/// A small node left over after a merge with one large entry used to make
/// the underflow fix loop forever. Run it on a thread with a deadline.
#[test]
fn large_entries_in_small_nodes_commit() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let run = || -> lockbox::Result<()> {
            let mut lb = Lockbox::builder()
                .node_capacity(1024)
                .create_in_memory(Key::raw([1; 32]))?;
            lb.put("a", b"1")?;
            lb.put(&long_path('b'), b"2")?;
            lb.put("c", b"3")?;
            lb.commit()?;
            lb.put("d", b"4")?;
            lb.commit()?;
            for i in 0..40 {
                lb.put(&long_path(char::from(b'e' + (i % 20) as u8)), &[i as u8])?;
                lb.put(&format!("k{i:03}"), &[i as u8])?;
                if i % 7 == 0 {
                    lb.commit()?;
                    lb.verify()?;
                }
            }
            lb.commit()?;
            lb.verify()?;
            assert_eq!(lb.get(&long_path('b'))?, b"2");
            lb.delete("")?;
            lb.commit()?;
            assert_eq!(lb.verify()?.toc_height, 0);
            Ok(())
        };
        let _ = tx.send(run());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("commit did not finish within 60 s (B-tree rebalancing loop)"),
    }
}

/// Random inserts and deletes at a small capacity keep every entry
/// reachable and the tree valid; the height grows and shrinks.
#[test]
fn height_grows_and_shrinks() -> lockbox::Result<()> {
    let mut lb = Lockbox::builder()
        .node_capacity(1024)
        .create_in_memory(Key::raw([2; 32]))?;
    let mut max_height = 0;
    for round in 0..8u32 {
        for i in 0..500u32 {
            let n = round * 500 + i;
            lb.put(&format!("dir{:02}/file{:05}", n % 37, n), &n.to_le_bytes())?;
        }
        lb.commit()?;
        max_height = max_height.max(lb.verify()?.toc_height);
    }
    assert!(max_height >= 3, "height only reached {max_height}");
    for d in 0..37 {
        if d != 5 {
            lb.delete(&format!("dir{d:02}"))?;
        }
        if d % 6 == 0 {
            lb.commit()?;
            lb.verify()?;
        }
    }
    lb.commit()?;
    let report = lb.verify()?;
    assert!(
        report.toc_height < max_height,
        "height stayed {}",
        report.toc_height
    );
    let left: Vec<_> = lb.list("")?.collect::<lockbox::Result<_>>()?;
    assert_eq!(left.len(), 4000 / 37 + usize::from(4000 % 37 > 5));
    for e in &left {
        let n: u32 = e.path[e.path.len() - 5..].parse().unwrap();
        assert_eq!(lb.get(&e.path)?, n.to_le_bytes());
    }
    Ok(())
}
