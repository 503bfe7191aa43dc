//! The disk images a crash can leave (durable, all pending, random subsets,
//! torn writes), and the check that one opens as an acceptable state.

use super::*;

/// The sector size torn writes are cut at.
pub const SECTOR: u64 = 512;

// ---------------------------------------------------------------------------
// Images of a crashed disk
// ---------------------------------------------------------------------------

pub struct Image {
    pub kind: &'static str,
    pub note: String,
    pub bytes: Vec<u8>,
}

pub fn images(durable: &[u8], pending: &[Pend], rng: &mut XorShift) -> Vec<Image> {
    let mut out = vec![Image {
        kind: "durable",
        note: String::new(),
        bytes: durable.to_vec(),
    }];
    if pending.is_empty() {
        return out;
    }
    let mut all = durable.to_vec();
    for p in pending {
        p.apply(&mut all);
    }
    out.push(Image {
        kind: "all-pending",
        note: format!("{} pending ops", pending.len()),
        bytes: all,
    });

    // random subsets in random order
    let subsets = if pending.len() == 1 { 0 } else { 3 };
    for _ in 0..subsets {
        let mut idx: Vec<usize> = (0..pending.len()).filter(|_| rng.chance(1, 2)).collect();
        for i in (1..idx.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            idx.swap(i, j);
        }
        let mut img = durable.to_vec();
        for &i in &idx {
            pending[i].apply(&mut img);
        }
        out.push(Image {
            kind: "subset",
            note: format!(
                "applied, in this order: {:?}",
                idx.iter().map(|&i| pending[i].brief()).collect::<Vec<_>>()
            ),
            bytes: img,
        });
    }

    // torn writes: earlier pending ops landed, then a sector prefix of one write
    let writes: Vec<usize> = pending
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p, Pend::Write(..)))
        .map(|(i, _)| i)
        .collect();
    let mut chosen: Vec<usize> = Vec::new();
    if let Some(&last) = writes.last() {
        chosen.push(last); // the interrupted write, or the last one issued
    }
    for _ in 0..2 {
        if writes.len() > chosen.len() {
            let w = *rng.pick(&writes);
            if !chosen.contains(&w) {
                chosen.push(w);
            }
        }
    }
    for w in chosen {
        let Pend::Write(off, data) = &pending[w] else {
            continue;
        };
        let (off, len) = (*off, data.len() as u64);
        let first = (off / SECTOR + 1) * SECTOR;
        let cuts: Vec<u64> = (first..off + len).step_by(SECTOR as usize).collect();
        let (kind, cut) = if cuts.is_empty() {
            if len < 2 {
                continue;
            }
            ("torn-byte", off + 1 + rng.below(len - 1))
        } else {
            ("torn", *rng.pick(&cuts))
        };
        let mut img = durable.to_vec();
        for p in &pending[..w] {
            p.apply(&mut img);
        }
        apply_bytes(&mut img, off, &data[..(cut - off) as usize]);
        out.push(Image {
            kind,
            note: format!(
                "{w} earlier pending ops landed, then {} torn after {} of {len} bytes",
                pending[w].brief(),
                cut - off
            ),
            bytes: img,
        });
    }
    out
}

// ---------------------------------------------------------------------------
// Checking images
// ---------------------------------------------------------------------------

/// A state an image may show: the sequences it may show under (a commit
/// and the relocation commits after it hold the same state), and the state.
pub type Cand<'a> = (RangeInclusive<u64>, &'a RefState);

/// What an image opened as.
pub struct Opened {
    /// Index of the candidate it matched.
    pub cand: usize,
    /// The extra keys that open it.
    pub keys: Keys,
    /// Its active sequence, read-only (before a writable open finishes
    /// relocation commits that were cut short).
    pub seq: u64,
    /// Frames its last commit left to repack (relocation cut short).
    pub repack_pending: usize,
}

/// Opens an image and checks it shows exactly one of `cands` and verifies:
/// read-only first (the keys, and, if relocation commits were cut short,
/// that the frames they left are read correctly), then writable (which
/// finishes the redaction and any relocation) for the full check.
pub fn check_image(bytes: Vec<u8>, cands: &[Cand], keysets: &[Keys]) -> Result<Opened, String> {
    let read_only = |k: lockbox::Key| {
        Lockbox::builder()
            .read_only(true)
            .open_bytes(bytes.clone(), k)
    };
    // which extra keys open it: exactly one of the acceptable sets, at the
    // same sequence as the base key (read-only: a writable open may run
    // relocation commits, and how many can differ from open to open)
    let mut opened = Keys::new();
    let mut seqs = BTreeSet::new();
    for k in EXTRA_KEYS {
        match read_only(extra_key(k)) {
            Ok(lb) => {
                opened.insert(k);
                seqs.insert(lb.sequence());
            }
            Err(Error::WrongKey) => {}
            Err(e) => return Err(format!("open_bytes with extra key {k} failed: {e:?}")),
        }
    }
    if !keysets.contains(&opened) {
        return Err(format!(
            "the extra keys that open the image are {opened:?}, expected one of {keysets:?}"
        ));
    }
    let ro = read_only(key()).map_err(|e| format!("read-only open_bytes failed: {e:?}"))?;
    let seq0 = ro.sequence();
    if seqs.iter().any(|&s| s != seq0) {
        return Err(format!(
            "extra keys open sequences {seqs:?}, the base key {seq0}"
        ));
    }
    let repack_pending = lockbox::testing::repack_pending(&ro)
        .map_err(|e| format!("reading the redaction list failed: {e:?}"))?;
    // Between a commit and the end of its relocation commits: the frames
    // still to repack are live, so the state reads and verifies as is.
    let seen_ro = if repack_pending > 0 {
        ro.verify().map_err(|e| {
            format!("read-only verify with {repack_pending} frames to repack failed: {e:?}")
        })?;
        Some(observe(&ro).map_err(|e| format!("reading the state read-only failed: {e}"))?)
    } else {
        None
    };
    drop(ro);
    let lb = Lockbox::builder()
        .open_bytes(bytes, key())
        .map_err(|e| format!("open_bytes failed: {e:?}"))?;
    let seen = observe(&lb).map_err(|e| format!("reading the state failed: {e}"))?;
    let seq = lb.sequence();
    if seq < seq0 || (seq != seq0 && repack_pending == 0) {
        return Err(format!(
            "read-only the image opens at sequence {seq0} ({repack_pending} frames to repack), \
             writable at {seq}"
        ));
    }
    if let Some(ro) = &seen_ro
        && *ro != seen
    {
        return Err(format!(
            "with relocation commits cut short, read-only reads differ from the state after \
             a writable open finished them: {}",
            seen.diff(ro)
        ));
    }
    let Some(i) = cands
        .iter()
        .position(|(s, st)| s.contains(&seq) && **st == seen)
    else {
        let mut msg = format!(
            "state is neither the old nor the new commit: opened sequence {seq}, got {}",
            seen.summary()
        );
        for (s, st) in cands {
            msg.push_str(&format!(
                "\n      vs sequences {s:?}: {}\n         diff: {}",
                st.summary(),
                st.diff(&seen)
            ));
        }
        return Err(msg);
    };
    let report = lb
        .verify()
        .map_err(|e| format!("verify failed on a state that matched sequence {seq}: {e:?}"))?;
    if report.repack_pending != 0 {
        return Err(format!(
            "a writable open left {} frames to repack",
            report.repack_pending
        ));
    }
    Ok(Opened {
        cand: i,
        keys: opened,
        seq: seq0,
        repack_pending,
    })
}

/// Opens a recovered image, changes it, commits, reopens the result and
/// checks the commit landed on top of the recovered state (`base`: the
/// image's sequence, before the open finishes any relocation commits).
pub fn continue_after_recovery(
    bytes: Vec<u8>,
    base: (u64, &RefState),
    keys: &Keys,
) -> Result<(), String> {
    let mut lb = Lockbox::builder()
        .open_bytes(bytes, key())
        .map_err(|e| format!("open_bytes failed: {e:?}"))?;
    let mut want = base.1.clone();
    let big = content(base.0 * 7 + 1, 70_000);
    let small = content(base.0 * 7 + 2, 900);
    let steps = (|| -> lockbox::Result<()> {
        lb.put("after/big", &big)?;
        lb.put("after/small", &small)?;
        lb.set_var("after", b"recovered")?;
        lb.commit()?;
        Ok(())
    })();
    steps.map_err(|e| format!("writing after recovery failed: {e:?}"))?;
    want.entries.insert("after/big".into(), RefNode::File(big));
    want.entries
        .insert("after/small".into(), RefNode::File(small));
    want.vars.insert("after".into(), b"recovered".to_vec());
    let img = lb.image().map_err(|e| format!("image(): {e:?}"))?;
    let seq = lb.sequence();
    drop(lb);
    if seq <= base.0 {
        return Err(format!(
            "a commit on the recovered image (sequence {}) gave sequence {seq}",
            base.0
        ));
    }
    match check_image(img, &[(seq..=seq, &want)], std::slice::from_ref(keys)) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("after a commit on the recovered image: {e}")),
    }
}
