//! Hostile TOC trees: node contents (order, duplicates, counts, lengths),
//! keys that are not valid paths, and tree shape (cycles, levels, depth
//! bombs).

use super::*;

// ---------------------------------------------------------------------------
// TOC nodes: order, duplicates, counts, lengths
// ---------------------------------------------------------------------------

#[test]
fn leaf_keys_out_of_order() {
    let bad = leaf_plain(&[(b"x", file(b"1")), (b"q", file(b"2"))]);
    // As the root: open refuses (the root is read at open).
    let mut b = Build::new();
    let p = b.seal(kind::TOC_NODE, &bad);
    refused(
        "out of order (root)",
        b.image(Some((p, 1, 2)), None),
        &[Probe::List],
        CORRUPT,
    );
    // Below a good root.
    refused(
        "out of order (second leaf)",
        under_good_root(&bad),
        &[Probe::List, Probe::Get("x"), Probe::Stat("q")],
        CORRUPT,
    );
}

#[test]
fn leaf_duplicate_keys() {
    let bad = leaf_plain(&[(b"x", file(b"1")), (b"x", file(b"22"))]);
    refused(
        "duplicate keys",
        under_good_root(&bad),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
}

#[test]
fn internal_separators_duplicate_or_unordered() {
    let mut b = Build::new();
    let l1 = b.leaf(&[(b"a", file(b"A"))]);
    let l2 = b.leaf(&[(b"c", file(b"C"))]);
    let root = b.internal(1, &[(b"", l1), (b"c", l2), (b"b", l1)]);
    refused(
        "unordered separators",
        b.image(Some((root, 2, 3)), None),
        &[Probe::List],
        CORRUPT,
    );
}

/// A leaf whose keys lie outside the range its parent's separators give
/// it. Reads must not return entries out of path order, nor answer
/// `list` and `stat`/`get` differently for one path.
#[test]
fn leaf_keys_outside_parent_separators() {
    let mut b = Build::new();
    let l1 = b.leaf(&[(b"a", file(b"first")), (b"z", file(b"in the first leaf"))]);
    let l2 = b.leaf(&[(b"b", file(b"second")), (b"z", file(b"in the second leaf"))]);
    let root = b.internal(1, &[(b"", l1), (b"m", l2)]);
    let img = b.image(Some((root, 2, 4)), None);
    separators_checked("keys outside their separators", img);
    // One subtree shared under two separators: every entry appears twice.
    let mut b = Build::new();
    let leaf = b.leaf(&[(b"a", file(b"A")), (b"c", file(b"C"))]);
    let mid = b.internal(1, &[(b"", leaf)]);
    let root = b.internal(2, &[(b"", mid), (b"b", mid)]);
    separators_checked(
        "shared subtree under two separators",
        b.image(Some((root, 3, 4)), None),
    );
}

fn separators_checked(case: &str, img: Vec<u8>) {
    let lb = open(img).expect("the root is well formed");
    assert!(
        lb.verify().is_err(),
        "verify() must refuse keys outside their separators"
    );
    let mut listed = Vec::new();
    let mut list_err = None;
    for item in lb.list("").unwrap() {
        match item {
            Ok(e) => listed.push(e.path),
            Err(e) => {
                list_err = Some(name(&e));
                break;
            }
        }
    }
    eprintln!("[hostile] {case}: list {listed:?}, error {list_err:?}");
    let keys: Vec<Vec<u8>> = listed.iter().map(|p| forge::key_of(p)).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "{case}: list(\"\") returned {listed:?} without an error: not in strictly ascending \
         path order (keys are not checked against their parent's separators)"
    );
    for p in &listed {
        let s = lb.stat(p);
        assert!(
            matches!(s, Ok(Some(_)) | Err(Error::Corrupt { .. })),
            "{case}: list(\"\") shows {p:?} but stat() says {s:?}"
        );
    }
}

#[test]
fn node_claims_four_billion_entries() {
    let mut bad = leaf_plain(&[(b"x", file(b"1"))]);
    bad[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut b = Build::new();
    let p = b.seal(kind::TOC_NODE, &bad);
    let (_, biggest) = biggest_alloc(|| {
        refused(
            "count 2^32-1 (root)",
            b.image(Some((p, 1, 1)), None),
            &[],
            CORRUPT,
        )
    });
    assert!(
        biggest < 64 << 20,
        "a node claiming 4 billion entries allocated {biggest} bytes"
    );
    refused(
        "count 2^32-1 (second leaf)",
        under_good_root(&bad),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
    // Count one more than present, and one fewer (trailing bytes).
    let two = leaf_plain(&[(b"x", file(b"1")), (b"y", file(b"2"))]);
    let mut more = two.clone();
    more[1..5].copy_from_slice(&3u32.to_le_bytes());
    refused(
        "count too high",
        under_good_root(&more),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
    let mut fewer = two;
    fewer[1..5].copy_from_slice(&1u32.to_le_bytes());
    refused(
        "count too low",
        under_good_root(&fewer),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
}

/// The commit record's entry count lies: reads are unaffected (they never
/// use it), `verify` refuses.
#[test]
fn commit_record_count_lies() {
    let mut b = Build::new();
    let l = b.leaf(&[(b"a", file(b"A"))]);
    let lb = open(b.image(Some((l, 1, u32::MAX as u64 + 7)), None)).unwrap();
    assert_eq!(lb.get("a").unwrap(), b"A");
    assert!(matches!(lb.verify(), Err(Error::Corrupt { .. })));
}

#[test]
fn value_length_lies() {
    // value_len far beyond the node.
    let mut huge = leaf_plain(&[(b"x", file(b"1"))]);
    // level(1) count(4) shared(2) suffix_len(2) key(1) -> value_len at 10.
    huge[10..14].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    refused(
        "value_len 2^32-16",
        under_good_root(&huge),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
    let mut over = leaf_plain(&[(b"x", file(b"1"))]);
    let vl = u32::from_le_bytes(over[10..14].try_into().unwrap());
    over[10..14].copy_from_slice(&(vl + 3).to_le_bytes());
    refused(
        "value_len +3",
        under_good_root(&over),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
    // Record lengths that lie about inline content.
    let mut r = Record::inline_file(b"hello");
    r.len = 9;
    refused(
        "inline len > bytes",
        under_good_root(&leaf_plain(&[(b"x", r.encode())])),
        &[Probe::Get("x"), Probe::List],
        CORRUPT,
    );
    let mut r = Record::inline_file(b"hello");
    r.len = 2;
    refused(
        "inline len < bytes",
        under_good_root(&leaf_plain(&[(b"x", r.encode())])),
        &[Probe::Get("x"), Probe::List],
        CORRUPT,
    );
    // Unknown kinds: no device files or other kinds.
    let mut r = Record::inline_file(b"hello");
    r.kind = 4;
    refused(
        "entry kind 4",
        under_good_root(&leaf_plain(&[(b"x", r.encode())])),
        &[Probe::Get("x"), Probe::List],
        CORRUPT,
    );
    // A variable whose value lies.
    let mut v = forge::var_value(5, &Content::Inline(b"hello".to_vec()));
    v[0] = 50;
    let mut b = Build::new();
    let vl = b.var_leaf(&[(b"v", v)]);
    refused(
        "variable len lies",
        b.image(None, Some((vl, 1, 1))),
        &[Probe::Var("v"), Probe::Vars],
        CORRUPT,
    );
}

// ---------------------------------------------------------------------------
// Keys that are not valid paths
// ---------------------------------------------------------------------------

/// Stored keys use 0x00 for '/'. Each of these is a name `put` refuses.
const BAD_KEYS: &[(&str, &[u8])] = &[
    ("dotdot", b"a\0..\0b"),
    ("leading dotdot", b"..\0escape"),
    ("dot", b"a\0.\0b"),
    ("empty component", b"a\0\0b"),
    ("trailing slash", b"a\0"),
    ("absolute", b"\0abs"),
    ("double absolute", b"\0\0abs"),
    ("empty key", b""),
    ("backslash", b"a\\b"),
    ("not UTF-8", b"a\xff\xfe"),
    // A literal '/' (0x2F) is not how a key spells a separator: `li/k`
    // would list as the path "li/k", whose key is `li\0k`.
    ("literal slash", b"li/k"),
];

#[test]
fn keys_that_are_not_valid_paths() {
    let long = [b'x'; 256];
    let mut cases: Vec<(&str, Vec<u8>)> = BAD_KEYS.iter().map(|(n, k)| (*n, k.to_vec())).collect();
    cases.push(("component of 256 bytes", long.to_vec()));
    let mut failures = Vec::new();
    for (case, k) in cases {
        let mut b = Build::new();
        // Sorted, so only the key itself is wrong.
        let mut e: Vec<(&[u8], Vec<u8>)> = vec![(b"a0", file(b"A")), (&k, file(b"hostile"))];
        e.sort_by(|x, y| x.0.cmp(y.0));
        let l = b.leaf(&e);
        let img = b.image(Some((l, 1, 2)), None);
        let r = catch_unwind(AssertUnwindSafe(|| {
            refused(&format!("key {case} {k:?}"), img, &[Probe::List], PATHISH)
        }));
        if let Err(p) = r {
            let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
            failures.push(msg);
        }
    }
    assert!(
        failures.is_empty(),
        "{} key(s) accepted:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Tree shape: cycles, levels, depth bombs
// ---------------------------------------------------------------------------

#[test]
fn child_pointer_back_to_itself() {
    // The root is sealed right after the leaf, at the leaf's end; a root of
    // one child is under 64 bytes, so it is stored uncompressed and its
    // sealed length is known. The tag cannot be known before sealing.
    let mut b = Build::new();
    let leaf = b.leaf(&[(b"a", file(b"A"))]);
    let own = Ptr {
        offset: leaf.end(),
        len: (5 + 4 + 40 + forge::OVERHEAD) as u32,
        generation: b.generation(),
        raw_len: (5 + 4 + 40) as u32,
        tag: [0; 16],
    };
    let root = b.internal(1, &[(b"", own)]);
    assert_eq!(
        (root.offset, root.len),
        (own.offset, own.len),
        "prediction of the root's place"
    );
    refused(
        "child = itself",
        b.image(Some((root, 2, 1)), None),
        &[Probe::List, Probe::Get("a")],
        CORRUPT,
    );
}

#[test]
fn levels_must_decrease() {
    // A level-1 node whose child is also a level-1 node (an ancestor-like
    // back edge: the only loop the tags allow).
    let mut b = Build::new();
    let leaf = b.leaf(&[(b"a", file(b"A"))]);
    let mid = b.internal(1, &[(b"", leaf)]);
    let root = b.internal(1, &[(b"", mid)]);
    refused(
        "level 1 under level 1",
        b.image(Some((root, 2, 1)), None),
        &[Probe::List, Probe::Get("a")],
        CORRUPT,
    );
    // A leaf claiming a higher level.
    let mut bad = leaf_plain(&[(b"x", file(b"1"))]);
    bad[0] = 3;
    refused(
        "leaf with level 3",
        under_good_root(&bad),
        &[Probe::List, Probe::Get("x")],
        CORRUPT,
    );
    // Height claimed larger than the real tree.
    let mut b = Build::new();
    let leaf = b.leaf(&[(b"a", file(b"A"))]);
    refused(
        "height 5 over a leaf",
        b.image(Some((leaf, 5, 1)), None),
        &[Probe::List],
        CORRUPT,
    );
    // Height 0 with a root.
    let mut b = Build::new();
    let leaf = b.leaf(&[(b"a", file(b"A"))]);
    refused(
        "height 0",
        b.image(Some((leaf, 0, 1)), None),
        &[Probe::List],
        CORRUPT,
    );
}

#[test]
fn depth_bombs() {
    for h in [33u32, 255, 256, 1000, u32::MAX] {
        let mut b = Build::new();
        let leaf = b.leaf(&[(b"a", file(b"A"))]);
        refused(
            &format!("claimed height {h}"),
            b.image(Some((leaf, h, 1)), None),
            &[Probe::List],
            CORRUPT,
        );
    }
    // A real chain of single-child internal nodes, 33 levels: over the limit.
    let mut b = Build::new();
    let mut p = b.leaf(&[(b"a", file(b"A"))]);
    for level in 1..=32u8 {
        p = b.internal(level, &[(b"", p)]);
    }
    refused(
        "real chain of 33 levels",
        b.image(Some((p, 33, 1)), None),
        &[Probe::List],
        CORRUPT,
    );
    // 32 levels is within the limit: silly but well formed.
    let mut b = Build::new();
    let mut p = b.leaf(&[(b"a", file(b"A"))]);
    for level in 1..=31u8 {
        p = b.internal(level, &[(b"", p)]);
    }
    let lb = open(b.image(Some((p, 32, 1)), None)).expect("32 levels");
    assert_eq!(lb.get("a").unwrap(), b"A");
    lb.verify().expect("a 32-level chain is well formed");
}

// ---------------------------------------------------------------------------
// A literal '/' in a key
// ---------------------------------------------------------------------------

/// `a\0b` and `a/b` (a literal 0x2F) are different keys that both read
/// as the path "a/b": list must not show it twice, stat must agree.
#[test]
fn literal_slash_key_collides_with_separator_key() {
    let mut b = Build::new();
    let l = b.leaf(&[(b"a\0b", file(b"one")), (b"a/b", file(b"two"))]);
    let lb = open(b.image(Some((l, 1, 2)), None)).unwrap();
    let listed: Vec<_> = lb.list("").unwrap().collect();
    eprintln!("[hostile] a\\0b and a/b: list {listed:?}");
    let paths: Vec<String> = listed
        .iter()
        .filter_map(|e| e.as_ref().ok())
        .map(|e| e.path.clone())
        .collect();
    let mut dedup = paths.clone();
    dedup.dedup();
    assert_eq!(paths, dedup, "list(\"\") shows one path twice: {paths:?}");
    for p in &paths {
        let st = lb.stat(p);
        assert!(
            matches!(st, Ok(Some(_)) | Err(_)),
            "list shows {p:?}, stat says {st:?}"
        );
    }
    assert!(
        lb.verify().is_err(),
        "verify() passed a key with a literal '/'"
    );
}
