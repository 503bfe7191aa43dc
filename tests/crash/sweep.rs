//! The sweep: a sequence replayed with a crash at every backend operation,
//! every image of every crash checked, and the tally of what was seen.

use super::*;

// ---------------------------------------------------------------------------
// The tally
// ---------------------------------------------------------------------------

#[derive(Default)]
pub struct Tally {
    pub sequences: u64,
    pub crash_points: u64,
    pub crash_points_after_recovery: u64,
    /// Crash points inside `add_key`/`remove_key`.
    pub crash_points_in_key_ops: u64,
    /// Crash points inside a writable open of a recovered image.
    pub crash_points_in_open: u64,
    /// Crash points a replay did not reach (op counts vary between runs).
    pub unreached: u64,
    /// Crash points that landed in another op than in the first run.
    pub moved: u64,
    /// Crashes after a commit point (commit returned RedactionPending).
    pub past_commit_point: u64,
    pub crash_points_in_commit: u64,
    pub crash_points_at_sync: u64,
    pub images: BTreeMap<&'static str, u64>,
    pub matched_old: u64,
    pub matched_new: u64,
    /// Images left between a commit and the end of its relocation commits
    /// (frames still to repack).
    pub images_mid_relocation: u64,
    /// Relocation commits run by the sequences' commits without a crash.
    pub relocations: u64,
    pub recovered_commits: u64,
    /// Sealings checked for a repeated (subkey, nonce) pair, and the
    /// recording they come from (set by `run_part`).
    pub nonce_pairs: u64,
    pub nonces: Option<lockbox::testing::Recording>,
    pub failures: Vec<String>,
}

impl Tally {
    /// Checks the sealings of a run started by `Start::Create` (its own
    /// archive) and of every image reopened and written from it, nested
    /// sweeps included: recovered images continue with the same keys, so a
    /// nonce derived from the state or replayed would repeat here.
    fn check_nonces(&mut self, label: &str, archive: Option<[u8; 16]>) {
        let (Some(rec), Some(id)) = (&self.nonces, archive) else {
            return;
        };
        match take_nonce_pairs(rec, &id) {
            Ok(n) => self.nonce_pairs += n as u64,
            Err(e) => self.failures.push(format!("{label}: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------
// The sweep
// ---------------------------------------------------------------------------

pub fn run_seed(seed: u64, n_ops: usize, t: &mut Tally) {
    let ops = gen_ops(
        seed,
        n_ops,
        &RefState::default(),
        &Keys::new(),
        relocating(seed),
    );
    sweep(&format!("seed {seed}"), seed, &Start::Create, &ops, t, 0);
}

/// Plays `ops` from `start` once without a crash, then once with a crash at
/// every backend operation it issued, and checks every image of every
/// crash. At `depth` 0, some recovered images of crashes inside commits get
/// a second sweep of their own (a crash during the first commit after a
/// crash recovery, over the garbage the first crash left past `data_end`).
pub fn sweep(label: &str, seed: u64, start: &Start, ops: &[Op], t: &mut Tally, depth: u32) {
    let full = match catch_unwind(AssertUnwindSafe(|| play(seed, start, ops, None))) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            t.failures
                .push(format!("{label}: run without crash: {e}\n  ops: {ops:?}"));
            return;
        }
        Err(p) => {
            t.failures.push(format!(
                "{label}: run without crash panicked: {}\n  ops: {ops:?}",
                panic_message(&*p)
            ));
            return;
        }
    };
    t.sequences += 1;
    // Nested sweeps (depth > 0) start from an image of their parent's
    // archive: the parent checks their sealings with its own.
    let own_archive = matches!(start, Start::Create);
    if own_archive {
        t.check_nonces(&format!("{label}: run without crash"), full.archive);
    }
    t.relocations += full.relocations;
    let total = full.be.ops();
    let mut rng = XorShift::new(seed ^ 0xC4A5_4C4A_5400 ^ (total << 32) ^ depth as u64);
    // crashes in create are `crash_during_create`'s; an open's writes count
    let first = match start {
        Start::Create => full.create_ops,
        Start::Image(..) => 0,
    };
    for n in first..total {
        let op_idx = full
            .spans
            .iter()
            .position(|&(a, b)| n >= a && n < b)
            .unwrap_or(IN_OPEN);
        // Op counts can differ between runs (see the module docs): retry a
        // crash point the replay did not reach, and take the op the crash
        // landed in from the replay.
        let mut tries = 0;
        let played = loop {
            tries += 1;
            let at = format!(
                "{label}, crash at backend op {n} ({} in the first run)",
                op_name(ops, op_idx)
            );
            match catch_unwind(AssertUnwindSafe(|| play(seed, start, ops, Some(n)))) {
                Ok(Ok(p)) if p.crashed_in.is_none() && tries < 5 => {
                    if own_archive {
                        t.check_nonces(&at, p.archive);
                    }
                    continue;
                }
                Ok(Ok(p)) => break Some(p),
                Ok(Err(e)) => t.failures.push(format!("{at}: {e}")),
                Err(p) => t
                    .failures
                    .push(format!("{at}: panic: {}", panic_message(&*p))),
            }
            break None;
        };
        let Some(played) = played else { continue };
        let Some(op_idx) = played.crashed_in else {
            t.unreached += 1;
            if own_archive {
                t.check_nonces(label, played.archive);
            }
            continue;
        };
        if op_idx
            != full
                .spans
                .iter()
                .position(|&(a, b)| n >= a && n < b)
                .unwrap_or(usize::MAX)
        {
            t.moved += 1;
        }
        if depth == 0 {
            t.crash_points += 1;
        } else {
            t.crash_points_after_recovery += 1;
        }
        let (durable, pending, crash_op) = {
            let d = played.be.disk();
            let mut pending = d.pending.clone();
            if let Some(p) = &d.in_flight {
                pending.push(p.clone());
            }
            (d.durable.clone(), pending, d.crash_op())
        };
        let in_commit = op_idx != IN_OPEN && matches!(ops[op_idx], Op::Commit);
        let in_key_op =
            op_idx != IN_OPEN && matches!(ops[op_idx], Op::AddKey(_) | Op::RemoveKey(_));
        if in_key_op {
            t.crash_points_in_key_ops += 1;
        }
        if op_idx == IN_OPEN {
            t.crash_points_in_open += 1;
        }
        if in_commit {
            t.crash_points_in_commit += 1;
        }
        if crash_op == "sync" {
            t.crash_points_at_sync += 1;
        }
        let old_seqs = if played.old_may_relocate {
            played.old.0..=u64::MAX
        } else {
            played.old.0..=played.old.0
        };
        let mut cands: Vec<Cand> = vec![(old_seqs, &played.old.1)];
        if let Some((s, st)) = &played.new {
            if played.past_commit_point {
                cands.clear();
                t.past_commit_point += 1;
            }
            // the commit, or any relocation commit after it
            cands.push((*s..=u64::MAX, st));
        }
        let mut recovered = 0;
        for img in images(&durable, &pending, &mut rng) {
            *t.images.entry(img.kind).or_default() += 1;
            let ctx = || {
                format!(
                    "{label}, crash at backend op {n} ({crash_op}) in {}, \
                     image {} {}",
                    op_name(ops, op_idx),
                    img.kind,
                    img.note
                )
            };
            let keep = recovered < 2 && matches!(img.kind, "all-pending" | "torn");
            let nested = depth == 0
                && (in_commit || in_key_op)
                && img.kind == "all-pending"
                && rng.chance(1, NESTED_ONE_IN);
            match catch_unwind(AssertUnwindSafe(|| {
                check_image(img.bytes.clone(), &cands, &played.keys)
            })) {
                Ok(Ok(Opened {
                    cand: i,
                    keys,
                    seq,
                    repack_pending,
                })) => {
                    if *cands[i].1 == played.old.1 && cands[i].0.contains(&played.old.0) {
                        t.matched_old += 1;
                    } else {
                        t.matched_new += 1;
                    }
                    if repack_pending > 0 {
                        t.images_mid_relocation += 1;
                    }
                    if keep {
                        recovered += 1;
                        t.recovered_commits += 1;
                        match catch_unwind(AssertUnwindSafe(|| {
                            continue_after_recovery(img.bytes.clone(), (seq, cands[i].1), &keys)
                        })) {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => t.failures.push(format!("{}: {e}", ctx())),
                            Err(p) => t.failures.push(format!(
                                "{}: panic after recovery: {}",
                                ctx(),
                                panic_message(&*p)
                            )),
                        }
                    }
                    if nested {
                        let st = cands[i].1;
                        let more = gen_ops(
                            seed.wrapping_mul(1000) + n,
                            NESTED_OPS,
                            st,
                            &keys,
                            relocating(seed),
                        );
                        let start = Start::Image(Arc::new(img.bytes), seq, st.clone(), keys);
                        sweep(
                            &format!("{} then", ctx()),
                            seed,
                            &start,
                            &more,
                            t,
                            depth + 1,
                        );
                    }
                }
                Ok(Err(e)) => t.failures.push(format!("{}: {e}", ctx())),
                Err(p) => t
                    .failures
                    .push(format!("{}: panic: {}", ctx(), panic_message(&*p))),
            }
        }
        if own_archive {
            t.check_nonces(&format!("{label}, crash at backend op {n}"), played.archive);
        }
    }
}

pub const SEEDS: u64 = 40;
pub const OPS_PER_SEED: usize = 24;
/// One in this many crash images of a crash inside a commit gets a sweep of
/// its own after recovery, of this many ops (plus a final commit).
pub const NESTED_ONE_IN: u64 = 8;
pub const NESTED_OPS: usize = 5;

pub fn run_part(part: u64, parts: u64) {
    let started = Instant::now();
    let mut t = Tally {
        nonces: Some(lockbox::testing::start_recording()),
        ..Tally::default()
    };
    for seed in (0..SEEDS).filter(|s| s % parts == part) {
        run_seed(seed, OPS_PER_SEED, &mut t);
    }
    let images: u64 = t.images.values().sum();
    println!(
        "[crash] part {part}/{parts}: {} sequences, {} crash points + {} in sequences after a \
         recovery ({} of them inside the reopen; {} inside commits, {} inside add_key/remove_key, \
         {} at a sync), {images} images {:?}; matched old {} / new {}; {} images between a \
         commit and the end of its relocation commits ({} relocation commits in the runs \
         without a crash); {} commits after recovery; \
         {} crash points after a commit point (RedactionPending: new state only); {} replays \
         crashed in another op than the first run, {} crash points not reached; {} sealings \
         checked for a repeated (subkey, nonce) pair; {} failures; {:.1?}",
        t.sequences,
        t.crash_points,
        t.crash_points_after_recovery,
        t.crash_points_in_open,
        t.crash_points_in_commit,
        t.crash_points_in_key_ops,
        t.crash_points_at_sync,
        t.images,
        t.matched_old,
        t.matched_new,
        t.images_mid_relocation,
        t.relocations,
        t.recovered_commits,
        t.past_commit_point,
        t.moved,
        t.unreached,
        t.nonce_pairs,
        t.failures.len(),
        started.elapsed()
    );
    if !t.failures.is_empty() {
        let shown: Vec<&String> = t.failures.iter().take(40).collect();
        panic!(
            "{} crash-consistency failures (first {} shown):\n{}",
            t.failures.len(),
            shown.len(),
            shown
                .iter()
                .map(|s| format!("  - {s}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    assert!(
        t.images_mid_relocation > 0,
        "no crash image fell between a commit and the end of its relocation commits"
    );
}
