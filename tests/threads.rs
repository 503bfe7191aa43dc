//! Lockbox used from inside a rayon pool: the import, stream and
//! extraction pipelines wait for work they queued on the pool, so a
//! caller that is itself one of the pool's threads (here, of a pool of one
//! thread and of two) must neither deadlock nor lose data. Each case runs
//! under a deadline, so a hang fails the test instead of stalling it.

use std::sync::mpsc;
use std::time::Duration;

use lockbox::{ExtractOptions, Key, Lockbox, Profile};

mod common;
use common::content as bytes;

/// Imports a tree (small files, one file over 2 MiB, duplicates), streams a
/// 12 MiB file, commits, and reads everything back three ways.
fn workload() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mut want = Vec::new();
    for d in 0..6 {
        std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for f in 0..60 {
            let len = [300, 5_000, 70_000][f % 3];
            let data = bytes((d * 100 + f % 20) as u64, len);
            let rel = format!("d{d}/f{f:02}");
            std::fs::write(src.join(&rel), &data).unwrap();
            want.push((format!("in/{rel}"), data));
        }
    }
    let big = bytes(999, 3 << 20);
    std::fs::write(src.join("big"), &big).unwrap();
    want.push(("in/big".to_string(), big));

    let mut lb = Lockbox::builder()
        .profile(Profile::BulkImport)
        .create_in_memory(Key::raw([8; 32]))
        .unwrap();
    let st = lb.add_path(&src, "in").unwrap();
    assert_eq!(st.files, want.len() as u64);
    let stream = bytes(7, 12 << 20);
    lb.put_reader("stream", &stream[..]).unwrap();
    want.push(("stream".to_string(), stream));
    lb.commit().unwrap();
    lb.verify().unwrap();

    for (p, data) in &want {
        assert!(&lb.get(p).unwrap() == data, "get {p}");
    }
    let mut seen = 0;
    lb.extract_all("", |e, b| {
        if let Some((_, data)) = want.iter().find(|(p, _)| *p == e.path) {
            assert!(b == &data[..], "extract_all {}", e.path);
            seen += 1;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, want.len());
    let out = dir.path().join("out");
    lb.extract_to_directory(&out, &ExtractOptions::default())
        .unwrap();
    for (p, data) in &want {
        assert!(&std::fs::read(out.join(p)).unwrap() == data, "file {p}");
    }
}

/// Runs `workload` on a thread of a pool of `threads` threads, failing if
/// it does not finish within two minutes.
fn in_pool(threads: usize) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(workload);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the workload inside a rayon pool did not finish (deadlock?) or panicked");
}

#[test]
fn works_inside_a_one_thread_pool() {
    in_pool(1);
}

#[test]
fn works_inside_a_two_thread_pool() {
    in_pool(2);
}

#[test]
fn works_on_a_thread_of_the_global_pool() {
    let (tx, rx) = mpsc::channel();
    rayon::spawn(move || {
        workload();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the workload on a global-pool thread did not finish (deadlock?) or panicked");
}
