//! Scenario `metadata`: open, stat, list, one-file commit and delete at
//! 10k / 100k entries (`LOCKBOX_PERF_METADATA_SIZES`; 1M is opt-in). Each
//! archive is built with a commit every 50,000 entries, reopened (the open's
//! backend reads are counted), then probed with 10,000 random warm `stat`s.

use std::time::{Duration, Instant};

use super::small::small_path;
use crate::BoxResult;
use crate::ctx::Ctx;
use crate::datagen::SMALL_SEED;
use crate::report::{Section, json_key};
use crate::rss::{clock, peak_rss_bytes, reset_peak_rss};
use crate::units::{fmt_bytes, fmt_commit, fmt_dur, percentile};

pub fn run(ctx: &Ctx, sec: &mut Section) -> BoxResult<()> {
    const BATCH: usize = 50_000;
    const FILE: usize = 200;
    for &n in &ctx.cfg.metadata_sizes {
        let name = format!("metadata-{n}");
        let tag = |s: &str| format!("{s} @{n}");
        reset_peak_rss();
        let mut lb = ctx.create(&name)?;
        let mut data = vec![0u8; FILE];
        let t = clock();
        for i in 0..n {
            ctx.cfg.pattern.fill(SMALL_SEED ^ i as u64, &mut data);
            lb.put(&small_path(i), &data)?;
            if (i + 1) % BATCH == 0 {
                lb.commit()?;
            }
        }
        lb.commit()?;
        sec.timed(
            &tag("build"),
            t.elapsed(),
            Some((n * FILE) as u64),
            Some(n as u64),
            format!("{n} x put({FILE} B), commit every {BATCH}"),
        );
        let (lb2, open) = ctx.reopen(lb, &name)?;
        let mut lb = lb2;
        let reads = lb.io_stats().reads;
        sec.timed(
            &tag("open"),
            open,
            None,
            None,
            format!("{reads} backend reads"),
        );
        sec.json_u(&format!("open_reads_{n}"), reads);

        // stat: warm (second pass over the same random paths).
        let mut rng = n as u64 | 1;
        let probes: Vec<String> = (0..10_000)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                small_path((rng % n as u64) as usize)
            })
            .collect();
        for p in &probes {
            lb.stat(p)?.ok_or("stat missed")?;
        }
        let mut times: Vec<Duration> = probes
            .iter()
            .map(|p| {
                let t = Instant::now();
                let r = lb.stat(p);
                let d = t.elapsed();
                r.map(|_| d)
            })
            .collect::<Result<_, _>>()?;
        times.sort();
        let p50 = percentile(&times, 0.5);
        let p99 = percentile(&times, 0.99);
        sec.row(
            &tag("stat warm"),
            Some(p50),
            None,
            None,
            format!(
                "10000 random paths: p50 {} p99 {}",
                fmt_dur(p50),
                fmt_dur(p99)
            ),
        );
        sec.json_f(&format!("stat_p50_s_{n}"), p50.as_secs_f64());
        sec.json_f(&format!("stat_p99_s_{n}"), p99.as_secs_f64());

        let t = clock();
        let listed = lb.list("")?.count();
        sec.timed(
            &tag("list"),
            t.elapsed(),
            None,
            Some(listed as u64),
            format!("{listed} entries"),
        );

        // Two one-file commits: the first after the build also files the
        // build's freed pages into the free-space index.
        for (i, label) in ["one-file commit (first)", "one-file commit"]
            .into_iter()
            .enumerate()
        {
            lb.put(&format!("extra/new{i}.txt"), &data)?;
            let t = clock();
            let cs = lb.commit()?;
            sec.timed(&tag(label), t.elapsed(), None, None, fmt_commit(&cs));
            sec.json_u(&format!("{}_bytes_{n}", json_key(label)), cs.bytes_written);
        }
        lb.delete(&small_path(n / 2))?;
        let t = clock();
        let cs = lb.commit()?;
        sec.timed(
            &tag("one-file delete"),
            t.elapsed(),
            None,
            None,
            format!(
                "{} written, {} pages (repack + redaction)",
                fmt_bytes(cs.bytes_written),
                cs.pages_written
            ),
        );
        sec.json_u(&format!("one_file_delete_bytes_{n}"), cs.bytes_written);
        let stored = ctx.stored_bytes(&lb, &name)?;
        sec.fact_u(&format!("lockbox_bytes_{n}"), stored, fmt_bytes(stored));
        if let Some(b) = peak_rss_bytes() {
            sec.fact_u(&format!("peak_rss_{n}"), b, fmt_bytes(b));
        }
    }
    Ok(())
}
