//! Scenario `append-delete`: an archive that lives through updates.
//!
//! `LOCKBOX_PERF_INITIAL_FILES` small files (default 10,000, of
//! `LOCKBOX_PERF_FILE_BYTES`) are committed; then `LOCKBOX_PERF_ROUNDS`
//! rounds (default 10) each `put` `LOCKBOX_PERF_APPEND_FILES` new files
//! (default 1,000), delete as many existing ones (drawn at random among the
//! live files, so deletions land in packed frames that still hold live
//! files: the repack + redaction path) and commit. Per round: the time to
//! stage the changes and to commit them, the bytes the commit wrote
//! (`CommitStats`) and the bytes the backend saw in the whole round
//! (`io_stats`, which includes data written before the commit), and the
//! archive's size after it. At the end: every live file is read back and
//! compared, and the final size is set against a fresh `compact()`.
//!
//! Peers (`LOCKBOX_PERF_PEERS=1`): tar and zip cannot update in place, so
//! the cost of the same update for them is rewriting the whole archive of
//! the new state. That is measured by packing the final live set from
//! memory (already generated, no source directory to read, and no old
//! archive to read either): a lower bound on what a real update costs them.

use std::time::Duration;

use lockbox::EntryKind;

use super::small::small_path;
use crate::BoxResult;
use crate::ctx::Ctx;
use crate::datagen::{CHURN_SEED, Rng};
use crate::fsutil::{remove_if_exists, settle};
use crate::peers::{PEERS, peer_pack_files};
use crate::report::Section;
use crate::rss::clock;
use crate::units::{fmt_bytes, fmt_dur};

/// The bytes of file `i` (deterministic, generated outside the clock).
fn data(ctx: &Ctx, i: usize) -> Vec<u8> {
    let mut v = vec![0u8; ctx.cfg.file_bytes];
    ctx.cfg
        .pattern
        .fill(CHURN_SEED ^ (i as u64).wrapping_mul(0x9E37_79B9), &mut v);
    v
}

pub fn run(ctx: &Ctx, sec: &mut Section) -> BoxResult<()> {
    let cfg = &ctx.cfg;
    let (initial, per, rounds, fb) = (
        cfg.initial_files,
        cfg.append_files,
        cfg.rounds,
        cfg.file_bytes as u64,
    );
    sec.fact_u("initial_files", initial as u64, format!("{initial}"));
    sec.fact_u(
        "append_files",
        per as u64,
        format!("{per} appended and up to {per} deleted per round"),
    );
    sec.fact_u("rounds", rounds as u64, format!("{rounds}"));
    sec.fact_u("file_bytes", fb, fmt_bytes(fb));
    settle(&ctx.dir);

    // Initial state.
    let name = "append-delete";
    let init: Vec<Vec<u8>> = (0..initial).map(|i| data(ctx, i)).collect();
    let mut lb = ctx.create(name)?;
    let t = clock();
    for (i, d) in init.iter().enumerate() {
        lb.put(&small_path(i), d)?;
    }
    let cs = lb.commit()?;
    let build = t.elapsed();
    drop(init);
    let size0 = ctx.stored_bytes(&lb, name)?;
    sec.timed(
        "initial add+commit",
        build,
        Some(initial as u64 * fb),
        Some(initial as u64),
        format!(
            "{initial} x put({fb} B) + commit: {} written, file {}",
            fmt_bytes(cs.bytes_written),
            fmt_bytes(size0)
        ),
    );
    sec.json_u("initial_lockbox_bytes", size0);

    // Rounds.
    let mut live: Vec<usize> = (0..initial).collect();
    let mut next = initial;
    let mut rng = Rng::new(CHURN_SEED);
    let (mut total_round, mut total_commit) = (Duration::ZERO, Duration::ZERO);
    let (mut total_commit_bytes, mut total_io_bytes) = (0u64, 0u64);
    let mut size = size0;
    for r in 1..=rounds {
        // Inputs outside the clock: the new files' bytes, the victims.
        let new: Vec<(usize, Vec<u8>)> = (next..next + per).map(|i| (i, data(ctx, i))).collect();
        next += per;
        let k = per.min(live.len());
        let victims: Vec<usize> = (0..k)
            .map(|_| live.swap_remove(rng.below(live.len() as u64) as usize))
            .collect();
        let io0 = lb.io_stats().bytes_written;

        let t = clock();
        for (i, d) in &new {
            lb.put(&small_path(*i), d)?;
        }
        for &i in &victims {
            lb.delete(&small_path(i))?;
        }
        let staged = t.elapsed();
        let t = clock();
        let cs = lb.commit()?;
        let commit = t.elapsed();

        let io = lb.io_stats().bytes_written - io0;
        live.extend(new.iter().map(|(i, _)| *i));
        size = ctx.stored_bytes(&lb, name)?;
        sec.timed(
            &format!("round {r} commit"),
            commit,
            None,
            None,
            format!(
                "+{per} put, -{k} delete staged in {}; commit wrote {} ({} pages), round wrote {}; file {}",
                fmt_dur(staged),
                fmt_bytes(cs.bytes_written),
                cs.pages_written,
                fmt_bytes(io),
                fmt_bytes(size)
            ),
        );
        sec.json_f(&format!("round_{r}_staged_s"), staged.as_secs_f64());
        sec.json_u(&format!("round_{r}_commit_bytes_written"), cs.bytes_written);
        sec.json_u(&format!("round_{r}_bytes_written"), io);
        sec.json_u(&format!("round_{r}_lockbox_bytes"), size);
        total_round += staged + commit;
        total_commit += commit;
        total_commit_bytes += cs.bytes_written;
        total_io_bytes += io;
    }
    let n = rounds as u32;
    let mean_round = total_round / n;
    let mean_io = total_io_bytes / rounds as u64;
    sec.derived(
        "update round (mean)",
        mean_round,
        Some(per as u64 * fb),
        Some(per as u64),
        format!(
            "put + delete + commit; commit alone {}; commit wrote {} and the round {} on average",
            fmt_dur(total_commit / n),
            fmt_bytes(total_commit_bytes / rounds as u64),
            fmt_bytes(mean_io)
        ),
    );
    sec.json_u("round_bytes_written_mean", mean_io);

    // Check (untimed): exactly the live files, with their bytes.
    let mut listed = 0usize;
    for e in lb.list("")? {
        if matches!(e?.kind, EntryKind::File) {
            listed += 1;
        }
    }
    if listed != live.len() {
        return Err(format!("list found {listed} files, expected {}", live.len()).into());
    }
    live.sort_unstable();
    let datas: Vec<Vec<u8>> = live.iter().map(|&i| data(ctx, i)).collect();
    for (&i, d) in live.iter().zip(&datas) {
        if lb.get(&small_path(i))? != *d {
            return Err(format!("read-back mismatch for {}", small_path(i)).into());
        }
    }
    let logical = live.len() as u64 * fb;

    // The final size against a fresh compact() of the same content.
    sec.size(size, logical);
    let t = clock();
    let cst = lb.compact()?;
    let compact = t.elapsed();
    let compacted = ctx.stored_bytes(&lb, name)?;
    sec.timed(
        "compact",
        compact,
        Some(logical),
        None,
        format!(
            "{} -> {}",
            fmt_bytes(cst.bytes_before),
            fmt_bytes(compacted)
        ),
    );
    sec.json_u("compacted_lockbox_bytes", compacted);
    sec.json_f("final_vs_compacted", size as f64 / compacted.max(1) as f64);
    sec.row(
        "final size vs compact",
        None,
        None,
        None,
        format!(
            "{:.3} ({} after {rounds} rounds, {} compacted; {} before the first round)",
            size as f64 / compacted.max(1) as f64,
            fmt_bytes(size),
            fmt_bytes(compacted),
            fmt_bytes(size0)
        ),
    );
    let (i, d) = (live[live.len() / 2], &datas[live.len() / 2]);
    if lb.get(&small_path(i))? != *d {
        return Err("read-back mismatch after compact".into());
    }
    drop(lb);
    sec.peak_rss();

    if cfg.peers {
        // The new state, in path order, from memory.
        let paths: Vec<String> = live.iter().map(|&i| small_path(i)).collect();
        let files: Vec<(&str, &[u8])> = paths
            .iter()
            .zip(&datas)
            .map(|(p, d)| (p.as_str(), d.as_slice()))
            .collect();
        let mut rewrites = Vec::new();
        for peer in PEERS {
            let out = ctx.dir.join(peer.file_name(name));
            remove_if_exists(&out)?;
            settle(&ctx.dir);
            let t = clock();
            peer_pack_files(peer, &out, &files).map_err(|e| format!("{}: {e}", peer.name()))?;
            let d = t.elapsed();
            let bytes = std::fs::metadata(&out)?.len();
            remove_if_exists(&out)?;
            sec.timed(
                &format!("{} rewrite", peer.name()),
                d,
                Some(logical),
                Some(live.len() as u64),
                format!(
                    "the whole archive of the new state ({} files) from memory: {}",
                    live.len(),
                    fmt_bytes(bytes)
                ),
            );
            sec.json_u(&format!("{}_bytes", peer.key()), bytes);
            rewrites.push((peer, d, bytes));
        }
        let times = |f: fn(&(crate::peers::Peer, Duration, u64)) -> f64| {
            rewrites.iter().map(|r| (r.0, f(r))).collect::<Vec<_>>()
        };
        sec.compare(
            "update round (lockbox: put+delete+commit; peers: rewrite)",
            false,
            mean_round.as_secs_f64(),
            times(|r| r.1.as_secs_f64()),
        );
        sec.compare(
            "bytes written per update",
            true,
            mean_io as f64,
            times(|r| r.2 as f64),
        );
        sec.compare("archive bytes", true, size as f64, times(|r| r.2 as f64));
        sec.compare(
            "archive bytes (compacted)",
            true,
            compacted as f64,
            times(|r| r.2 as f64),
        );
    }
    Ok(())
}
