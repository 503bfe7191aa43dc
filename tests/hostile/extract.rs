//! Hostile symlink targets, and extraction of hostile trees.

use super::*;

// ---------------------------------------------------------------------------
// Symlinks
// ---------------------------------------------------------------------------

/// A symlink target that is not UTF-8 (the API cannot create one). Reads
/// must not silently change it (a lossy `String`), extraction must refuse
/// it, and verify must report it.
#[test]
fn symlink_target_not_utf8() {
    let mut b = Build::new();
    let l = b.leaf(&[
        (b"a", file(b"A")),
        (b"l", Record::symlink(b"ta\xffrget").encode()),
    ]);
    let lb = open(b.image(Some((l, 1, 2)), None)).unwrap();
    let scratch = Scratch::new("hostile-utf8");
    let r = lb.extract_to_directory(scratch.dest(), &ExtractOptions::default());
    assert!(
        matches!(r, Err(Error::InvalidPath { .. } | Error::Corrupt { .. })),
        "extract: {r:?}"
    );
    let st = lb.stat("l");
    eprintln!(
        "[hostile] non-UTF-8 target: stat {st:?}, verify {:?}",
        lb.verify()
    );
    assert!(
        !matches!(&st, Ok(Some(e)) if e.target.as_deref().is_some_and(|t| t.as_bytes() != b"ta\xffrget")),
        "stat(\"l\") returned target {:?}: the stored bytes were silently replaced (lossy UTF-8)",
        st.as_ref()
            .ok()
            .and_then(|o| o.as_ref())
            .and_then(|e| e.target.clone())
    );
    assert!(
        lb.verify().is_err(),
        "verify() passed an archive with a non-UTF-8 symlink target"
    );
}

#[test]
fn symlink_target_empty_nul_or_huge() {
    for (case, t) in [
        ("empty", Vec::new()),
        ("NUL", b"a\0b".to_vec()),
        ("4097 bytes", vec![b'x'; 4097]),
    ] {
        let mut b = Build::new();
        let l = b.leaf(&[(b"l", Record::symlink(&t).encode())]);
        let img = b.image(Some((l, 1, 1)), None);
        let lb = match open(img) {
            Ok(lb) => lb,
            Err(e) => {
                assert!(matches!(e, Error::Corrupt { .. }), "{case}: {e}");
                continue;
            }
        };
        let scratch = Scratch::new("hostile-target");
        let r = timed(10, case, {
            let d = scratch.dest();
            move || {
                lb.extract_to_directory(d, &ExtractOptions::default().allow_escaping_symlinks(true))
                    .map(|s| s.symlinks)
            }
        });
        eprintln!("[hostile] symlink target {case}: extract {r:?}");
        assert!(
            r.is_err(),
            "{case}: a symlink with this target was extracted"
        );
        assert!(drivers::tree(&scratch.outside()).is_empty());
    }
}

// ---------------------------------------------------------------------------
// Extraction of hostile trees
// ---------------------------------------------------------------------------

fn k(path: &str) -> Vec<u8> {
    forge::key_of(path)
}

/// Extracts `entries` (one TOC leaf, in this order) with the checks of
/// `drivers::extract_checked` (nothing outside dest, no leftovers, no
/// special bits, escaping links only when allowed, exact bytes).
fn extract_case(
    case: &str,
    mut entries: Vec<Hostile>,
    opts: &ExtractOptions,
    dest_exists: bool,
) -> drivers::Extracted {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let scratch = Scratch::new("hostile-extract");
    let image = drivers::hostile_image(&entries).expect("build");
    let r = catch_unwind(AssertUnwindSafe(|| {
        drivers::extract_checked(image, &entries, &scratch, opts, dest_exists, case)
    }));
    match r {
        Ok(Some(x)) => {
            eprintln!(
                "[hostile] extract {case}: {:?}",
                x.result.as_ref().map(|s| (s.files, s.dirs, s.symlinks))
            );
            x
        }
        Ok(None) => panic!("{case}: archive did not open"),
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn refused_extract(
    case: &str,
    entries: Vec<Hostile>,
    opts: &ExtractOptions,
    dest_exists: bool,
    want: &[&str],
) {
    let x = extract_case(case, entries, opts, dest_exists);
    match &x.result {
        Ok(s) => panic!("{case}: extraction succeeded ({s:?}), expected one of {want:?}"),
        Err(e) => assert!(
            want.contains(&name(e)),
            "{case}: {e} ({}), expected {want:?}",
            name(e)
        ),
    }
}

#[test]
fn extract_dotdot_names() {
    for name in ["../escape", "a/../../escape", "a/../b", ".."] {
        let entries = vec![
            (b"a0".to_vec(), Record::inline_file(b"ok")),
            (k(name), Record::inline_file(b"escaped")),
        ];
        refused_extract(
            &format!("name {name:?}"),
            entries.clone(),
            &ExtractOptions::default(),
            false,
            PATHISH,
        );
        let mut sorted = entries;
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let lb = open(drivers::hostile_image(&sorted).unwrap()).unwrap();
        assert!(
            lb.verify().is_err(),
            "verify() passed an archive holding {name:?}"
        );
    }
}

/// An absolute name: in key form a leading 0x00. It names a path inside
/// the sentinel directory beside `dest`.
#[test]
fn extract_absolute_name_lands_nowhere() {
    for opts in [
        ExtractOptions::default(),
        ExtractOptions::default().overwrite(true),
    ] {
        let scratch = Scratch::new("hostile-abs");
        let abs = format!("{}/pwned", scratch.outside().display());
        let entries = vec![
            (k("a"), Record::inline_file(b"fine")),
            (k(&abs), Record::inline_file(b"PWNED")),
        ];
        let mut sorted = entries.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let image = drivers::hostile_image(&sorted).unwrap();
        let lb = open(image).unwrap();
        let listed: Vec<_> = lb.list("").unwrap().collect();
        let r = lb.extract_to_directory(scratch.dest(), &opts);
        let outside = drivers::tree(&scratch.outside());
        eprintln!(
            "[hostile] absolute name {abs:?}: list {listed:?}, extract {r:?}, outside {outside:?}"
        );
        assert!(
            outside.is_empty(),
            "extracting an archive with the absolute name {abs:?} WROTE OUTSIDE dest: {outside:?} (result {r:?})"
        );
        assert!(
            matches!(r, Err(Error::InvalidPath { .. } | Error::Corrupt { .. })),
            "extract: {r:?}"
        );
        assert!(
            lb.verify().is_err(),
            "verify() passed an archive with an absolute name"
        );
        assert!(
            listed
                .iter()
                .all(|e| e.is_err() || !e.as_ref().unwrap().path.starts_with('/')),
            "list() returned an absolute path"
        );
    }
}

/// Two stored names that are the same path after normalisation (`a` and
/// `/a`). `list` must not show the path twice; extraction must refuse.
/// The extraction is only attempted once `list` refuses the archive: with
/// the absolute-name bug it would write `/a` on the real filesystem.
#[test]
fn extract_names_colliding_after_normalisation() {
    let entries = vec![
        (k("/a"), Record::inline_file(b"second")),
        (k("a"), Record::inline_file(b"first")),
    ];
    let image = drivers::hostile_image(&entries).unwrap();
    let lb = open(image).unwrap();
    let listed: Vec<String> = lb
        .list("")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path)
        .collect();
    let normalised: Vec<&str> = listed.iter().map(|p| p.trim_start_matches('/')).collect();
    let mut dedup = normalised.clone();
    dedup.dedup();
    eprintln!("[hostile] collide: list {listed:?}");
    assert_eq!(
        normalised, dedup,
        "list(\"\") shows one path twice ({listed:?}): `a` and `/a` are stored as different keys but are the same path"
    );
    assert!(
        lb.verify().is_err(),
        "verify() passed an archive holding `a` and `/a`"
    );
    refused_extract(
        "collide a and /a",
        entries,
        &ExtractOptions::default(),
        false,
        PATHISH,
    );
}

#[test]
fn extract_symlink_then_file_through_it() {
    let scratch = Scratch::new("hostile-link-probe");
    let sentinel = scratch.outside().display().to_string();
    drop(scratch);
    // The sentinel path differs per Scratch; extract_case makes its own,
    // so use a relative escape that lands in its sentinel (dest/../outside)
    // and an absolute one (any sentinel-like place outside dest).
    for (case, target) in [
        ("relative ../outside", "../outside".to_string()),
        ("absolute /tmp/x", format!("{sentinel}/x")),
        ("dot", ".".to_string()),
    ] {
        for allow in [false, true] {
            let entries = vec![
                (k("a"), Record::symlink(target.as_bytes())),
                (k("a/b"), Record::inline_file(b"through the link")),
            ];
            let opts = ExtractOptions::default().allow_escaping_symlinks(allow);
            let x = extract_case(
                &format!("link a -> {case}, file a/b, allow {allow}"),
                entries,
                &opts,
                false,
            );
            if let Ok(s) = &x.result {
                // Only acceptable if `a` became a real directory and the link was not created.
                panic!(
                    "{case}: symlink + file through it extracted without error: {s:?}, tree {:?}",
                    x.dest_tree
                );
            }
        }
    }
    // A symlink already in dest, and archive entries below it.
    for overwrite in [false, true] {
        refused_extract(
            &format!("pre-existing link, overwrite {overwrite}"),
            vec![(k("pre/x"), Record::inline_file(b"through"))],
            &ExtractOptions::default().overwrite(overwrite),
            true,
            PATHISH,
        );
    }
    // An archive directory over the pre-existing link.
    refused_extract(
        "dir over pre-existing link",
        vec![
            (k("pre"), Record::dir()),
            (k("pre/y"), Record::inline_file(b"y")),
        ],
        &ExtractOptions::default(),
        true,
        PATHISH,
    );
}

#[test]
fn extract_escaping_symlinks_refused_unless_allowed() {
    for target in ["../outside", "/etc", "a/../../x", "..", "sub/../../../y"] {
        refused_extract(
            &format!("escaping link -> {target}"),
            vec![(k("l"), Record::symlink(target.as_bytes()))],
            &ExtractOptions::default(),
            false,
            &["InvalidPath"],
        );
    }
    // Inside: allowed.
    let x = extract_case(
        "inside links",
        vec![
            (k("d"), Record::dir()),
            (k("d/l"), Record::symlink(b"../f")),
            (k("f"), Record::inline_file(b"F")),
            (k("l2"), Record::symlink(b"d/./l")),
        ],
        &ExtractOptions::default(),
        false,
    );
    assert!(x.result.is_ok(), "{:?}", x.result);
}

#[test]
fn extract_strips_special_mode_bits() {
    let mut f = Record::inline_file(b"suid");
    f.mode = 0o4755;
    let mut g = Record::inline_file(b"sgid");
    g.mode = 0o2777;
    let mut d = Record::dir();
    d.mode = 0o3777;
    let x = extract_case(
        "setuid/setgid/sticky",
        vec![(k("d"), d), (k("d/f"), f), (k("g"), g)],
        &ExtractOptions::default(),
        false,
    );
    assert!(x.result.is_ok(), "{:?}", x.result);
    // extract_checked asserted no 0o7000 bit on anything created.
    assert_eq!(x.dest_tree.get("d/f").map(|e| e.0), Some('f'));
}

#[test]
fn extract_limits_checked_before_writing() {
    let entries: Vec<Hostile> = (0..20)
        .map(|i| (k(&format!("f{i:02}")), Record::inline_file(b"0123456789")))
        .collect();
    let x = extract_case(
        "max_files",
        entries.clone(),
        &ExtractOptions::default().limits(10, 1 << 20, 1 << 30),
        false,
    );
    assert!(
        matches!(x.result, Err(Error::LimitExceeded { .. })),
        "{:?}",
        x.result
    );
    assert!(
        x.dest_tree.is_empty(),
        "files were written before the limit was checked"
    );
    let x = extract_case(
        "max_total_bytes",
        entries,
        &ExtractOptions::default().limits(100, 1 << 20, 150),
        false,
    );
    assert!(
        matches!(x.result, Err(Error::LimitExceeded { .. })),
        "{:?}",
        x.result
    );
}

// ---------------------------------------------------------------------------
// More extraction: symlink chains, times
// ---------------------------------------------------------------------------

/// Each symlink stays inside `dest` when judged on its own, but `x`
/// resolves through `d/l` (-> `..`, the root) and then `..` again: to
/// `dest/..`, outside. An extraction without `allow_escaping_symlinks`
/// must not leave a link that resolves outside `dest`.
#[test]
fn extract_symlink_chain_escapes() {
    let entries = vec![
        (k("d"), Record::dir()),
        (k("d/l"), Record::symlink(b"..")),
        (k("x"), Record::symlink(b"d/l/../outside")),
    ];
    let scratch = Scratch::new("hostile-chain");
    let image = drivers::hostile_image(&entries).unwrap();
    let lb = open(image).unwrap();
    let r = lb.extract_to_directory(scratch.dest(), &ExtractOptions::default());
    let dest = std::fs::canonicalize(scratch.dest()).ok();
    let resolved = std::fs::canonicalize(scratch.dest().join("x")).ok();
    eprintln!("[hostile] symlink chain: extract {r:?}, dest/x resolves to {resolved:?}");
    if r.is_ok()
        && let (Some(d), Some(x)) = (&dest, &resolved)
    {
        assert!(
            x.starts_with(d),
            "extraction (escaping symlinks not allowed) left dest/x resolving OUTSIDE dest, to {x:?}: \
             links `d/l -> ..` and `x -> d/l/../outside` each pass the lexical check"
        );
    }
}

#[test]
fn extract_extreme_mtimes() {
    for (secs, nanos) in [
        (i64::MIN, 999_999_999u32),
        (i64::MAX, 999_999_999),
        (-1, 1),
        (0, 0),
    ] {
        let mut f = Record::inline_file(b"t");
        f.mtime = secs;
        f.nanos = nanos;
        let mut d = Record::dir();
        d.mtime = secs;
        d.nanos = nanos;
        let x = extract_case(
            &format!("mtime {secs}.{nanos}"),
            vec![(k("d"), d), (k("d/f"), f)],
            &ExtractOptions::default().restore_mtimes(true),
            false,
        );
        // Any typed result; extract_case caught panics would have failed.
        eprintln!(
            "[hostile] mtime {secs}.{nanos}: {:?}",
            x.result.as_ref().map(|s| s.files)
        );
    }
}
