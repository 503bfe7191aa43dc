//! Cache profiles: decoded frames are cached only where the profile says.

use lockbox::{Key, Lockbox, Profile};

mod common;

fn lockbox_with_large_file() -> (Lockbox, Vec<u8>) {
    let mut lb = Lockbox::builder()
        .create_in_memory(Key::raw([3; 32]))
        .unwrap();
    let data: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    lb.put("big", &data).unwrap();
    for i in 0..200 {
        lb.put(&format!("small/{i:03}"), &vec![i as u8; 700])
            .unwrap();
    }
    lb.commit().unwrap();
    (lb, data)
}

fn read_pattern(lb: &Lockbox, data: &[u8]) {
    let mut buf = [0u8; 4096];
    for round in 0..3 {
        for k in 0..50u64 {
            let off = (k * 7919 + round) % (data.len() as u64 - 4096);
            assert_eq!(lb.read_at("big", off, &mut buf).unwrap(), 4096);
            assert_eq!(&buf[..], &data[off as usize..off as usize + 4096]);
        }
    }
}

#[test]
fn read_mostly_caches_decoded_frames_and_interactive_does_not() {
    let (mut lb, data) = lockbox_with_large_file();
    lb.set_profile(Profile::Interactive);
    let before = lb.cache_stats();
    read_pattern(&lb, &data);
    let inter = lb.cache_stats();
    // Interactive: metadata only; frames are not cached, so repeated reads
    // of the same frames add no cached bytes beyond the index pages.
    assert!(
        inter.bytes - before.bytes < 64 * 1024,
        "{before:?} -> {inter:?}"
    );

    lb.set_profile(Profile::ReadMostly);
    let a = lb.cache_stats();
    read_pattern(&lb, &data);
    let b = lb.cache_stats();
    // 150 reads over at most 16 distinct 64 KiB frames: most are hits.
    let hits = b.hits - a.hits;
    let misses = b.misses - a.misses;
    assert!(hits >= 100, "hits {hits}, misses {misses}");
    assert!(b.bytes > inter.bytes, "decoded frames held: {b:?}");
}

#[test]
fn extract_many_caches_and_bulk_import_groups_more() {
    let (mut lb, _) = lockbox_with_large_file();
    lb.set_profile(Profile::ExtractMany);
    let a = lb.cache_stats();
    for _ in 0..2 {
        for i in 0..200 {
            assert_eq!(
                lb.get(&format!("small/{i:03}")).unwrap(),
                vec![i as u8; 700]
            );
        }
    }
    let b = lb.cache_stats();
    assert!(b.hits - a.hits >= 200, "{a:?} -> {b:?}");

    // BulkImport packs small files into fewer, larger frames.
    let count_frames = |profile: Profile| {
        let mut lb = Lockbox::builder()
            .profile(profile)
            .create_in_memory(Key::raw([4; 32]))
            .unwrap();
        for i in 0..400 {
            let text = format!("line {i} of a small text file\n").repeat(40);
            lb.put(&format!("t/{i:04}"), text.as_bytes()).unwrap();
        }
        lb.commit().unwrap();
        lb.verify().unwrap().regions
    };
    let normal = count_frames(Profile::Interactive);
    let bulk = count_frames(Profile::BulkImport);
    assert!(
        bulk < normal,
        "BulkImport regions {bulk}, Interactive {normal}"
    );
}

/// `BulkImport` compresses new data at zstd level 2 unless the builder sets
/// a level; other profiles use level 3. Seen through sizes: the same data
/// under the same level makes the same file, give or take the few bytes of
/// the records' timestamps.
#[test]
fn bulk_import_level_is_2_unless_the_builder_sets_one() {
    // Text-like content (`common::content` with a seed of style 1).
    let text = common::content(1, 3_000_000);
    let size = |profile: Profile, level: Option<i32>| {
        let mut b = Lockbox::builder().profile(profile);
        if let Some(l) = level {
            b = b.compression_level(l);
        }
        let mut lb = b.create_in_memory(Key::raw([4; 32])).unwrap();
        for i in 0..30 {
            lb.put(&format!("f{i:02}"), &text[i * 100_000..(i + 1) * 100_000])
                .unwrap();
        }
        lb.commit().unwrap();
        lb.image().unwrap().len() as i64
    };
    let same = |a: i64, b: i64| (a - b).abs() < 256;
    let (i_default, i3) = (
        size(Profile::Interactive, None),
        size(Profile::Interactive, Some(3)),
    );
    assert!(
        same(i_default, i3),
        "Interactive: {i_default} vs level 3 {i3}"
    );
    let (b_default, b2, b3) = (
        size(Profile::BulkImport, None),
        size(Profile::BulkImport, Some(2)),
        size(Profile::BulkImport, Some(3)),
    );
    assert!(
        same(b_default, b2),
        "BulkImport: {b_default} vs level 2 {b2}"
    );
    assert!(
        b_default > b3 + 1000,
        "BulkImport: {b_default} at its default level vs {b3} at level 3"
    );
}
