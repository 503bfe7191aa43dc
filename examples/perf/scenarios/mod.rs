//! The scenarios, one file each: add new ones to `SCENARIOS` (and to
//! `DEFAULT_SCENARIOS` if they belong in the default run, which must stay
//! under a minute on 2 cores).

use std::time::Duration;

use crate::BoxResult;
use crate::ctx::Ctx;
use lockbox::Profile;

use crate::fsutil::settle;
use crate::peers::{Packed, Peer, pack_peers, peer_pack_dir};
use crate::report::Section;
use crate::rss::clock;
use crate::units::{fmt_dur, percentile};

pub mod append_delete;
pub mod large;
pub mod metadata;
pub mod small;
pub mod tree;

pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&Ctx, &mut Section) -> BoxResult<()>,
}

/// Every scenario, in the order `all` runs them.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "small",
        about: "many small files: add, commit, open, list, read back, one-file commit",
        run: small::run,
    },
    Scenario {
        name: "large",
        about: "one large streamed file: put_reader, commit, open, copy_to, random read_at",
        run: large::run,
    },
    Scenario {
        name: "metadata",
        about: "open, stat, list, one-file commit and delete at 10k / 100k entries (LOCKBOX_PERF_METADATA_SIZES)",
        run: metadata::run,
    },
    Scenario {
        name: "tree",
        about: "a directory tree (LOCKBOX_PERF_SOURCE, or a generated source-like one): add_path, extract to disk, tmpfs and memory",
        run: tree::run,
    },
    Scenario {
        name: "append-delete",
        about: "rounds of appending and deleting small files in a committed archive, then compact",
        run: append_delete::run,
    },
];

/// What runs when `LOCKBOX_PERF_SCENARIO` is not set.
pub const DEFAULT_SCENARIOS: &[&str] = &["small", "large"];

/// `LOCKBOX_PERF_EXTRACT_REPEAT`: the first run of an extraction has its own
/// row (as with no repeat); with `repeat` > 1, `again(k)` runs it `repeat - 1`
/// more times on the same handle (k = 1..repeat, a new destination each
/// time) and one more row gives the median of all runs, so a warm cache or
/// the `ExtractMany` profile shows, and noise can be seen. Returns the time
/// to compare with the bounds and the peers (whose extractions
/// `peers::extract_peers` repeats as often): the median, or `first` when
/// not repeated.
pub fn repeat_extraction(
    sec: &mut Section,
    step: &str,
    first: Duration,
    repeat: usize,
    bytes: u64,
    files: Option<u64>,
    mut again: impl FnMut(usize) -> BoxResult<Duration>,
) -> BoxResult<Duration> {
    if repeat <= 1 {
        return Ok(first);
    }
    let mut times = vec![first];
    for k in 1..repeat {
        times.push(again(k)?);
    }
    let median = median_of_runs(sec, step, &times, bytes, files, "runs");
    sec.json_u("extract_repeat", repeat as u64);
    Ok(median)
}

/// Lockbox's import of `src` (`add_path` + commit under `BulkImport`, its
/// first run `first` made already) and, with `LOCKBOX_PERF_PEERS`, the
/// peers' archives of the same directory. `LOCKBOX_PERF_IMPORT_REPEAT` >
/// 1 runs the import that many times in all, each into a new archive, and
/// a row gives the median; with the peers, their packs run in rounds taken
/// in turn with lockbox's imports, so both sides of each ratio see the
/// same phases of the machine (`peers::pack_peers`). Returns the time to
/// compare (the median, or `first`) and the peers' archives.
#[allow(clippy::too_many_arguments)]
pub fn import_and_peer_packs(
    ctx: &Ctx,
    sec: &mut Section,
    scenario: &str,
    src: &std::path::Path,
    first: Duration,
    logical: u64,
    files: u64,
) -> BoxResult<(Duration, Option<Vec<Packed>>)> {
    let repeat = ctx.cfg.import_repeat;
    let mut again = |k: usize| -> BoxResult<Duration> {
        let name = format!("{scenario}-import-{k}");
        let mut lb = ctx.create(&name)?;
        settle(&ctx.dir);
        let t = clock();
        lb.set_profile(Profile::BulkImport);
        lb.add_path(src, "")?;
        lb.commit()?;
        let d = t.elapsed();
        drop(lb);
        ctx.remove_archive(&name)?;
        Ok(d)
    };
    let pack = |peer: Peer, out: &std::path::Path| -> BoxResult<Duration> {
        peer_pack_dir(peer, src, out)?;
        Ok(Duration::ZERO)
    };
    let (packed, times) = if ctx.cfg.peers {
        let (packed, rest) = pack_peers(
            ctx, sec, scenario, logical, files, repeat, &pack, &mut again,
        )?;
        (Some(packed), std::iter::once(first).chain(rest).collect())
    } else {
        let mut times = vec![first];
        for k in 1..repeat {
            times.push(again(k)?);
        }
        (None, times)
    };
    if times.len() <= 1 {
        return Ok((first, packed));
    }
    let what = match packed {
        Some(_) => "runs, each into a new archive, in turn with the peers'",
        None => "runs, each into a new archive",
    };
    let d = median_of_runs(sec, "import+commit", &times, logical, Some(files), what);
    sec.json_u("import_repeat", repeat as u64);
    Ok((d, packed))
}

/// Reports the median of `times` (`times[0]` the first run) in a row of
/// its own, `"{step} (repeat median)"` (with its minimum in the JSON), and
/// returns it.
pub fn median_of_runs(
    sec: &mut Section,
    step: &str,
    times: &[Duration],
    bytes: u64,
    files: Option<u64>,
    what: &str,
) -> Duration {
    let first = times[0];
    let mut times = times.to_vec();
    times.sort();
    let median = percentile(&times, 0.5);
    let min = times[0];
    let max = times[times.len() - 1];
    sec.derived(
        &format!("{step} (repeat median)"),
        median,
        Some(bytes),
        files,
        format!(
            "median of {} {what}: first {}, min {}, max {}",
            times.len(),
            fmt_dur(first),
            fmt_dur(min),
            fmt_dur(max)
        ),
    );
    sec.json_f(
        &format!("{}_repeat_min_s", crate::report::json_key(step)),
        min.as_secs_f64(),
    );
    median
}
