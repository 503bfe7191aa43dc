//! Writes the hand-made seed inputs into `corpus/<target>/seed-*`:
//! `cargo run --example seeds` (from `fuzz/`). Each seed is also replayed
//! once here, so a seed that crashes a driver is noticed at once.

use lockbox::Lockbox;
use lockbox_fuzz::{drivers, forge};
use std::path::Path;

fn put(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

fn small_image() -> Vec<u8> {
    let mut lb = Lockbox::builder().create_in_memory(drivers::key()).unwrap();
    lb.put("a.txt", b"alpha").unwrap();
    lb.put("d/p", &drivers::content(2, 600)).unwrap();
    lb.symlink("l", "a.txt").unwrap();
    lb.set_var("v", b"value").unwrap();
    lb.commit().unwrap();
    lb.image().unwrap()
}

fn main() {
    // open_untrusted: flags + image.
    let img = small_image();
    for (name, flags) in [("plain", 0u8), ("fixsums", 3), ("ro", 4)] {
        let mut d = vec![flags];
        d.extend_from_slice(&img);
        put("open_untrusted", name, &d);
    }
    let mut trunc = vec![0u8];
    trunc.extend_from_slice(&img[..20480]);
    put("open_untrusted", "header-only", &trunc);

    // page_plaintext.
    let t = drivers::template();
    let keys = forge::unwrap_raw(t, &drivers::RAW).unwrap();
    let rec = forge::newest_commit(&keys, t).unwrap();
    let regions = forge::walk(&keys, t, &rec).unwrap();
    let plain = |k: u8| -> Vec<Vec<u8>> {
        regions
            .iter()
            .filter(|r| r.kind == k)
            .map(|r| forge::open(&keys, t, k, &r.ptr).unwrap().1)
            .collect()
    };
    let tocs = plain(forge::kind::TOC_NODE);
    let leaf = tocs.iter().find(|p| p[0] == 0).unwrap().clone();
    let internal = tocs.iter().find(|p| p[0] == 1).cloned();
    let mut d = vec![0u8, 1];
    d.extend_from_slice(&7u32.to_le_bytes());
    d.extend_from_slice(&leaf);
    put("page_plaintext", "toc-leaf", &d);
    if let Some(i) = internal {
        let mut d = vec![0u8, 2];
        d.extend_from_slice(&(rec.toc.count as u32).to_le_bytes());
        d.extend_from_slice(&i);
        put("page_plaintext", "toc-internal", &d);
    }
    let var = plain(forge::kind::VAR_NODE).remove(0);
    let mut d = vec![1u8, 1];
    d.extend_from_slice(&2u32.to_le_bytes());
    d.extend_from_slice(&var);
    put("page_plaintext", "var-leaf", &d);
    let index = plain(forge::kind::FRAME_INDEX).remove(0);
    let mut d = vec![2u8];
    d.extend_from_slice(&65536u32.to_le_bytes());
    d.push(1);
    d.extend_from_slice(&140_000u64.to_le_bytes());
    d.extend_from_slice(&index);
    put("page_plaintext", "index", &d);
    let mut d = vec![3u8];
    d.extend_from_slice(&4096u32.to_le_bytes());
    d.extend_from_slice(&300u64.to_le_bytes());
    d.extend_from_slice(&10u32.to_le_bytes());
    d.extend_from_slice(&50u16.to_le_bytes());
    d.extend_from_slice(&drivers::content(4, 300));
    put("page_plaintext", "frame", &d);
    let mut d = vec![4u8, 1, b'm'];
    d.extend_from_slice(&leaf);
    put("page_plaintext", "shared-leaf", &d);
    for (name, codec, flags) in [("zstd", 1u8, 1u8), ("stored", 0, 0), ("zstd-raw", 1, 0)] {
        let body = drivers::content(6, 500);
        let mut d = vec![5u8, codec];
        d.extend_from_slice(&500u32.to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes());
        d.push(flags);
        if name == "zstd-raw" {
            d.extend_from_slice(&zstd::bulk::compress(&body, 3).unwrap());
        } else {
            d.extend_from_slice(&body);
        }
        put("page_plaintext", name, &d);
    }

    // Mode 6: a free-space index leaf with one extent in the data area,
    // past the template's end (harmless), and one over the slot tables.
    let leaf = |ext: &[(u64, u64)]| {
        let e: Vec<(Vec<u8>, Vec<u8>)> = ext
            .iter()
            .map(|(o, l)| (o.to_be_bytes().to_vec(), l.to_le_bytes().to_vec()))
            .collect();
        forge::leaf(&e)
    };
    let mut d = vec![6u8];
    d.extend_from_slice(&1u32.to_le_bytes());
    d.extend_from_slice(&leaf(&[(t.len() as u64 + 4096, 4096)]));
    put("page_plaintext", "free-index", &d);

    // ops_model: a few hand-written sequences.
    put(
        "ops_model",
        "puts-commit",
        &[0, 0, 4, 1, 0, 2, 5, 2, 8, 0, 12, 2],
    );
    put(
        "ops_model",
        "framed",
        &[
            0, 3, 8, 3, 1, 4, 7, 5, 8, 0, 3, 3, 6, 8, 0, 11, 0, 2, 5, 0, 8, 0,
        ],
    );
    put(
        "ops_model",
        "dirs",
        &[
            5, 0, 0, 2, 5, 3, 0, 4, 4, 6, 1, 3, 2, 7, 8, 0, 10, 0, 3, 5, 1, 9, 0,
        ],
    );
    put(
        "ops_model",
        "vars",
        &[
            6, 0, 0, 5, 1, 6, 1, 1, 8, 3, 7, 0, 0, 8, 0, 6, 0, 2, 7, 9, 0, 11, 0,
        ],
    );

    // extract_paths.
    let e = |tag: u8, name: &str, payload: &[u8]| -> Vec<u8> {
        let mut v = vec![tag, name.len() as u8];
        v.extend_from_slice(name.as_bytes());
        v.push(payload.len() as u8);
        v.extend_from_slice(payload);
        v
    };
    let mut d = vec![0u8];
    d.extend(e(0, "a", b"hello"));
    d.extend(e(1, "d", b""));
    d.extend(e(0, "d/f", b"x"));
    d.extend(e(2, "l", b"a"));
    put("extract_paths", "plain", &d);
    let mut d = vec![1u8];
    d.extend(e(0, "pre/x", b"through the link"));
    d.extend(e(2, "s", b"@/y"));
    d.extend(e(0, "s/z", b"z"));
    put("extract_paths", "links", &d);
    let mut d = vec![3u8];
    d.extend(e(2, "a", b"@"));
    d.extend(e(0, "a/b", b"b"));
    put("extract_paths", "link-then-file", &d);
    let mut d = vec![0u8];
    d.extend(e(0, "/a", b"abs"));
    d.extend(e(0, "a", b"rel"));
    put("extract_paths", "collide", &d);
    let mut d = vec![0u8];
    d.extend(e(0, "@/pwned", b"abs"));
    put("extract_paths", "absolute", &d);

    // Replay every seed.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (t, f) in [
        ("open_untrusted", drivers::open_untrusted as fn(&[u8])),
        ("page_plaintext", drivers::page_plaintext),
        ("ops_model", drivers::ops_model),
        ("extract_paths", drivers::extract_paths),
    ] {
        for e in std::fs::read_dir(root.join(t)).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("seed-") {
                continue;
            }
            let data = std::fs::read(e.path()).unwrap();
            let r = std::panic::catch_unwind(|| f(&data));
            println!("{t}/{name}: {}", if r.is_ok() { "ok" } else { "PANIC" });
        }
    }
}
