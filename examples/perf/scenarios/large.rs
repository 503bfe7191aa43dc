//! Scenario `large`: one large file (`LOCKBOX_PERF_LARGE_BYTES`) through
//! `put_reader` from a generator (never held in memory), commit, reopen,
//! stream it back with `copy_to`, then 1000 random 4 KiB `read_at` calls
//! with p50/p99, then `extract_to_directory`. That archive is written under
//! the default profile (64 KiB frames, for fast random reads); the same
//! stream is then imported again under `BulkImport` (1 MiB frames, zstd
//! level 2: the profile for imports), timed and sized on its own.
//!
//! The generator (a copy from a 4 MiB table, see `datagen::GEN_PERIOD`) is
//! part of every pack figure, lockbox's and the peers' alike: with
//! compression running beside the reading, its time cannot be subtracted.
//! The read-back is timed into a counting sink and compared byte for byte
//! in a second, untimed pass.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use lockbox::{EntryKind, ExtractOptions, Profile};

use super::repeat_extraction;
use crate::BoxResult;
use crate::bounds::{Coding, FS_TRIES, cpu_bounds, report_cpu_bounds, slowest, spread_frames_of};
use crate::ctx::Ctx;
use crate::datagen::{
    CountingSink, GEN_BLOCK, GenReader, LARGE_SEED, Pattern, RANGE_SEED, Rng, VerifyWriter,
    expected_range,
};
use crate::fsutil::{remove_dir_if_exists, remove_if_exists, settle};
use crate::peers::{
    Lockboxed, Peer, PeerExtract, compare_peers, extract_peers, pack_peers, peer_pack_stream,
};
use crate::report::Section;
use crate::rss::{clock, reset_peak_rss};
use crate::units::{fmt_bytes, fmt_commit, fmt_dur, mib_s, percentile};

const RANGE_READS: usize = 1000;
const RANGE_READ_BYTES: usize = 4096;

pub fn run(ctx: &Ctx, sec: &mut Section) -> BoxResult<()> {
    let cfg = &ctx.cfg;
    let size = cfg.large_bytes;
    let path = "large/blob.bin";
    sec.fact_u("files", 1, "1".into());
    sec.fact_u("logical_bytes", size, fmt_bytes(size));
    settle(&ctx.dir);

    let t = clock();
    let mut lb = ctx.create("large")?;
    sec.timed("create", t.elapsed(), None, None, String::new());

    let mut input = GenReader::new(cfg.pattern, LARGE_SEED, size);
    let t = clock();
    let n = lb.put_reader(path, &mut input)?;
    let add = t.elapsed();
    if n != size {
        return Err(format!("put_reader returned {n}, expected {size}").into());
    }
    let gen_time = input.gen_time;
    sec.timed(
        "add",
        add,
        Some(size),
        None,
        format!(
            "put_reader; incl. {} generating input (as for the peers)",
            fmt_dur(gen_time)
        ),
    );
    sec.json_f("add_generator_s", gen_time.as_secs_f64());

    let t = clock();
    let cs = lb.commit()?;
    let commit = t.elapsed();
    sec.timed("commit", commit, None, None, fmt_commit(&cs));
    sec.json_u("commit_bytes_written", cs.bytes_written);
    sec.derived("add+commit", add + commit, Some(size), None, String::new());

    let (lb, open) = ctx.reopen(lb, "large")?;
    sec.timed("open", open, None, None, "reopen after commit".into());
    let stored = ctx.stored_bytes(&lb, "large")?;

    match lb.stat(path)? {
        Some(e) if e.len == size && matches!(e.kind, EntryKind::File) => {}
        other => {
            return Err(
                format!("stat({path}) = {other:?}, expected a file of {size} bytes").into(),
            );
        }
    }

    // Timed pass: stream into a counting sink.
    let mut sink = CountingSink(0);
    let t = clock();
    let copied = lb.copy_to(path, &mut sink)?;
    let read = t.elapsed();
    if copied != size || sink.0 != size {
        return Err(format!(
            "copy_to returned {copied} ({} seen), expected {size}",
            sink.0
        )
        .into());
    }
    sec.timed(
        "read-back",
        read,
        Some(size),
        None,
        "copy_to into a counting sink".into(),
    );

    // Untimed pass: byte-for-byte comparison against the generator.
    let mut check = VerifyWriter::new(cfg.pattern, LARGE_SEED);
    let copied = lb.copy_to(path, &mut check)?;
    if copied != size || check.pos != size {
        return Err(format!("verify pass: copy_to returned {copied}, expected {size}").into());
    }

    // Random 4 KiB read_at calls, each timed alone; checked afterwards.
    if size > 0 {
        let len = RANGE_READ_BYTES.min(size as usize);
        let mut rng = Rng::new(RANGE_SEED);
        let offsets: Vec<u64> = (0..RANGE_READS)
            .map(|_| rng.below(size - len as u64 + 1))
            .collect();
        let mut buf = vec![0u8; len];
        let mut got = vec![0u8; RANGE_READS * len];
        let mut times = Vec::with_capacity(RANGE_READS);
        reset_peak_rss();
        for (k, &off) in offsets.iter().enumerate() {
            let t = Instant::now();
            let n = lb.read_at(path, off, &mut buf)?;
            times.push(t.elapsed());
            if n != len {
                return Err(format!("read_at({off}) returned {n}, expected {len}").into());
            }
            got[k * len..(k + 1) * len].copy_from_slice(&buf);
        }
        let mut expected = vec![0u8; len];
        let mut scratch = vec![0u8; GEN_BLOCK];
        for (k, &off) in offsets.iter().enumerate() {
            expected_range(cfg.pattern, LARGE_SEED, off, &mut expected, &mut scratch);
            if got[k * len..(k + 1) * len] != expected[..] {
                return Err(format!("read_at({off}, {len}) returned wrong bytes").into());
            }
        }
        let total: Duration = times.iter().sum();
        times.sort();
        let p50 = percentile(&times, 0.50);
        let p99 = percentile(&times, 0.99);
        sec.timed(
            "random read_at",
            total,
            Some((RANGE_READS * len) as u64),
            None,
            format!(
                "{RANGE_READS} x {len} B: p50 {} p99 {} max {}",
                fmt_dur(p50),
                fmt_dur(p99),
                fmt_dur(*times.last().unwrap())
            ),
        );
        sec.json_f("read_at_p50_s", p50.as_secs_f64());
        sec.json_f("read_at_p99_s", p99.as_secs_f64());
        sec.json_f("read_at_total_s", total.as_secs_f64());
        sec.json_u("read_at_calls", RANGE_READS as u64);
        sec.json_u("read_at_bytes", len as u64);
    }

    // Extract to a new directory; checked afterwards (untimed). Skipped
    // with LOCKBOX_PERF_EXTRACT=memory (copy_to above is the memory side).
    let extract_to_dir = |k: usize| -> BoxResult<Duration> {
        let dest = if k == 0 {
            ctx.dir.join("large-extract")
        } else {
            ctx.dir.join(format!("large-extract-{k}"))
        };
        remove_dir_if_exists(&dest)?;
        settle(&ctx.dir);
        let t = clock();
        let es = lb.extract_to_directory(&dest, &ExtractOptions::default())?;
        let d = t.elapsed();
        if es.files != 1 || es.bytes != size {
            return Err(format!(
                "extract_to_directory wrote {} files / {} bytes, expected 1 / {size}",
                es.files, es.bytes
            )
            .into());
        }
        if k == 0 {
            verify_large_file(
                &dest.join(path),
                cfg.pattern,
                size,
                "lockbox extract_to_directory",
            )?;
        }
        remove_dir_if_exists(&dest)?;
        Ok(d)
    };
    let mut extract_dir = None;
    if cfg.extract.directory() {
        let d = extract_to_dir(0)?;
        sec.timed(
            "extract to dir",
            d,
            Some(size),
            None,
            "extract_to_directory into a new directory".into(),
        );
        let d = repeat_extraction(
            sec,
            "extract to dir",
            d,
            cfg.extract_repeat,
            size,
            None,
            extract_to_dir,
        )?;
        extract_dir = Some(d);
    }
    drop(lb);

    sec.size(stored, size);
    sec.peak_rss();
    let (bulk_add, bulk_stored) = bulk_import(ctx, sec)?;

    // Bounds on the same data (64 KiB frames at zstd level 3: put_reader
    // writes under the default profile, Interactive; every k-th frame of
    // the whole file, see `SPREAD_SAMPLE`), and the filesystem writing one
    // file of the same size.
    let coding = Coding::INTERACTIVE;
    let frames = spread_frames_of(
        &mut GenReader::new(cfg.pattern, LARGE_SEED, size),
        size,
        coding.frame,
    )?;
    let sampled: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let b = cpu_bounds(&frames, coding)?;
    report_cpu_bounds(
        sec,
        &b,
        &format!(
            "{} frames of 64 KiB ({}) spread over the whole file (Interactive)",
            frames.len(),
            fmt_bytes(sampled)
        ),
    );
    drop(frames);
    let mut head = vec![0u8; size.min(1 << 20) as usize];
    GenReader::new(cfg.pattern, LARGE_SEED, size).read_exact(&mut head)?;
    let chunk = &head[..];
    let mut c1 = Duration::MAX;
    for k in 0..FS_TRIES {
        let fpath = ctx.dir.join(format!("large-fs-bound-{k}.bin"));
        remove_if_exists(&fpath)?;
        settle(&ctx.dir);
        let t = Instant::now();
        {
            let mut f = fs::File::create(&fpath)?;
            let mut left = size;
            while left > 0 {
                let k = left.min(chunk.len() as u64) as usize;
                f.write_all(&chunk[..k])?;
                left -= k as u64;
            }
        }
        c1 = c1.min(t.elapsed());
    }
    for k in 0..FS_TRIES {
        remove_if_exists(&ctx.dir.join(format!("large-fs-bound-{k}.bin")))?;
    }
    drop(head);
    let create = mib_s(size, c1);
    sec.row(
        "bound: fs create+write+close",
        Some(c1),
        Some(create),
        None,
        format!(
            "1 file of {}, 1 MiB writes, 1 thread, best of {FS_TRIES}",
            fmt_bytes(size)
        ),
    );
    sec.json_f("bound_fs_create_mib_s", create);
    sec.json_f("bound_fs_create_s", c1.as_secs_f64());
    let rate = |d: Duration| mib_s(size, d);
    let (w, v) = b.pack_stage();
    sec.fraction("add+commit (put_reader)", rate(add + commit), &w, v);
    let bulk_frames = spread_frames_of(
        &mut GenReader::new(cfg.pattern, LARGE_SEED, size),
        size,
        Coding::BULK.frame,
    )?;
    let bulk = cpu_bounds(&bulk_frames, Coding::BULK)?;
    drop(bulk_frames);
    let (w, v) = bulk.pack_stage();
    sec.fraction("add+commit (put_reader, BulkImport)", rate(bulk_add), &w, v);
    let (w, v) = b.unpack_stage();
    sec.fraction("read-back (copy_to)", rate(read), &w, v);
    let (w, v) = slowest(&[
        b.unpack_stage(),
        ("fs create+write+close (1 thread)".to_string(), create),
    ]);
    if let Some(d) = extract_dir {
        sec.fraction("extract to directory", rate(d), &w, v);
    }

    if cfg.peers {
        // The streamed add is not repeated (no LOCKBOX_PERF_IMPORT_REPEAT):
        // one pack each.
        let pack = |peer: Peer, out: &Path| peer_pack_stream(peer, out, cfg.pattern, size, path);
        let mut no_repeat = |_: usize| -> BoxResult<Duration> { Err("not repeated".into()) };
        let (packed, _) = pack_peers(ctx, sec, "large", size, 1, 1, &pack, &mut no_repeat)?;
        let extract = PeerExtract {
            dir: cfg.extract.directory(),
            tmpfs: None,
            memory: true,
        };
        let runs = extract_peers(
            ctx,
            sec,
            "large",
            size,
            1,
            &extract,
            cfg.extract_repeat,
            packed,
            &|peer, dest| verify_large_file(&dest.join(path), cfg.pattern, size, peer.name()),
        )?;
        compare_peers(
            sec,
            &runs,
            &Lockboxed {
                pack: ("add (streamed)", add + commit),
                dir: extract_dir,
                tmpfs: None,
                mem: Some(("read to memory (copy_to)", read)),
                bytes: stored,
            },
        );
        let packs = runs
            .iter()
            .map(|r| (r.peer, r.pack.as_secs_f64()))
            .collect();
        sec.compare(
            "add (streamed, BulkImport)",
            false,
            bulk_add.as_secs_f64(),
            packs,
        );
        let sizes = runs.iter().map(|r| (r.peer, r.bytes as f64)).collect();
        sec.compare(
            "archive bytes (BulkImport)",
            true,
            bulk_stored as f64,
            sizes,
        );
    }
    Ok(())
}

/// The same stream imported under `BulkImport` into a second archive:
/// add+commit time (generator excluded) and stored bytes, the content
/// checked afterwards (untimed), the archive removed.
fn bulk_import(ctx: &Ctx, sec: &mut Section) -> BoxResult<(Duration, u64)> {
    let cfg = &ctx.cfg;
    let (size, path) = (cfg.large_bytes, "large/blob.bin");
    let mut lb = ctx.create("large-bulk")?;
    lb.set_profile(Profile::BulkImport);
    settle(&ctx.dir);
    reset_peak_rss();
    let mut input = GenReader::new(cfg.pattern, LARGE_SEED, size);
    let t = clock();
    let n = lb.put_reader(path, &mut input)?;
    let cs = lb.commit()?;
    let d = t.elapsed();
    if n != size {
        return Err(format!("BulkImport put_reader returned {n}, expected {size}").into());
    }
    sec.timed(
        "add+commit (BulkImport)",
        d,
        Some(size),
        None,
        format!(
            "put_reader + commit under BulkImport ({}); incl. {} generating input",
            fmt_commit(&cs),
            fmt_dur(input.gen_time)
        ),
    );
    let stored = ctx.stored_bytes(&lb, "large-bulk")?;
    sec.row(
        "lockbox bytes (BulkImport)",
        None,
        None,
        None,
        format!(
            "{} ({stored} B), ratio lockbox/logical {:.3}",
            fmt_bytes(stored),
            stored as f64 / size.max(1) as f64
        ),
    );
    sec.json_u("bulk_lockbox_bytes", stored);
    let mut check = VerifyWriter::new(cfg.pattern, LARGE_SEED);
    if lb.copy_to(path, &mut check)? != size || check.pos != size {
        return Err("BulkImport archive: read-back differs".into());
    }
    drop(lb);
    remove_if_exists(&ctx.archive_path("large-bulk"))?;
    Ok((d, stored))
}

/// Checks that the file at `path` holds the large generator's bytes.
pub fn verify_large_file(path: &Path, pattern: Pattern, size: u64, who: &str) -> BoxResult<()> {
    let mut check = VerifyWriter::new(pattern, LARGE_SEED);
    let n = io::copy(
        &mut fs::File::open(path).map_err(|e| format!("{who}: {}: {e}", path.display()))?,
        &mut check,
    )
    .map_err(|e| format!("{who}: {e}"))?;
    if n != size {
        return Err(format!("{who}: extracted {n} bytes, expected {size}").into());
    }
    Ok(())
}
