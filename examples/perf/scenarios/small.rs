//! Scenario `small`: many small files (`LOCKBOX_PERF_FILES` x
//! `LOCKBOX_PERF_FILE_BYTES`). `put` them into nested directories, commit,
//! reopen, `list`, `get` every file back and compare, then a one-file commit
//! into the same archive (reports `CommitStats::bytes_written`). Then the
//! same files are written to a source directory (one pass of the 1-thread
//! filesystem bound) and imported with `add_path` (+ commit) into a second
//! archive, which is extracted with `extract_to_directory` (to a new
//! directory, checked byte for byte afterwards, untimed) and with
//! `extract_all` (to memory).

use std::fs;
use std::hint::black_box;
use std::io;
use std::path::Path;
use std::time::Duration;

use lockbox::{EntryKind, ExtractOptions, ExtractStats, Profile};

use super::{import_and_peer_packs, repeat_extraction};
use crate::BoxResult;
use crate::bounds::{
    ArchiveFrames, Coding, FS_TRIES, Rate, bound_threads, cpu_bounds, frames_of, fs_create_bound,
    fs_read_bound, report_cpu_bounds, slowest,
};
use crate::ctx::Ctx;
use crate::datagen::SMALL_SEED;
use crate::fsutil::{remove_dir_if_exists, settle};
use crate::peers::{Lockboxed, PeerExtract, compare_peers, extract_peers};
use crate::report::Section;
use crate::rss::clock;
use crate::units::{fmt_bytes, fmt_commit, mib_s};

/// Nested layout: `d00/s0/f00000.txt`: 1000 files per top directory, 100 per leaf.
pub fn small_path(i: usize) -> String {
    format!("d{:02}/s{}/f{:05}.txt", i / 1000, (i / 100) % 10, i)
}

pub fn run(ctx: &Ctx, sec: &mut Section) -> BoxResult<()> {
    let cfg = &ctx.cfg;
    let n = cfg.files;
    // Inputs are generated before any clock starts.
    let paths: Vec<String> = (0..n).map(small_path).collect();
    let datas: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut v = vec![0u8; cfg.file_bytes];
            cfg.pattern
                .fill(SMALL_SEED ^ (i as u64).wrapping_mul(0x9E37_79B9), &mut v);
            v
        })
        .collect();
    let logical: u64 = datas.iter().map(|d| d.len() as u64).sum();
    sec.fact_u("files", n as u64, format!("{n}"));
    sec.fact_u("logical_bytes", logical, fmt_bytes(logical));
    settle(&ctx.dir);

    let t = clock();
    let mut lb = ctx.create("small")?;
    sec.timed("create", t.elapsed(), None, None, String::new());

    let t = clock();
    for (p, d) in paths.iter().zip(&datas) {
        lb.put(p, d)?;
    }
    let add = t.elapsed();
    sec.timed(
        "add",
        add,
        Some(logical),
        Some(n as u64),
        format!("{n} x put({} B)", cfg.file_bytes),
    );

    let t = clock();
    let cs = lb.commit()?;
    let commit = t.elapsed();
    // No rate on commit alone: how work splits between put and commit is the
    // library's choice; compare add+commit.
    sec.timed("commit", commit, None, None, fmt_commit(&cs));
    sec.json_u("commit_bytes_written", cs.bytes_written);
    sec.json_u("commit_pages_written", cs.pages_written);
    sec.derived(
        "add+commit",
        add + commit,
        Some(logical),
        Some(n as u64),
        String::new(),
    );

    let (mut lb, open) = ctx.reopen(lb, "small")?;
    sec.timed("open", open, None, None, "reopen after commit".into());

    let stored = ctx.stored_bytes(&lb, "small")?;

    let t = clock();
    let mut listed_files = 0u64;
    let mut listed_bytes = 0u64;
    let mut listed_entries = 0u64;
    for e in lb.list("")? {
        let e = e?;
        listed_entries += 1;
        if matches!(e.kind, EntryKind::File) {
            listed_files += 1;
            listed_bytes += e.len;
        }
    }
    let list = t.elapsed();
    if listed_files != n as u64 || listed_bytes != logical {
        return Err(format!(
            "list(\"\") found {listed_files} files / {listed_bytes} bytes, expected {n} / {logical}"
        )
        .into());
    }
    sec.timed(
        "list",
        list,
        None,
        Some(listed_entries),
        format!("{listed_entries} entries"),
    );

    // get + compare; the compare is a memcmp of the file's bytes.
    let t = clock();
    for (p, d) in paths.iter().zip(&datas) {
        let got = lb.get(p)?;
        if got != *d {
            return Err(format!(
                "read-back mismatch for {p}: got {} bytes, expected {}",
                got.len(),
                d.len()
            )
            .into());
        }
    }
    let read = t.elapsed();
    sec.timed(
        "read-back",
        read,
        Some(logical),
        Some(n as u64),
        format!("{n} x get + compare"),
    );

    // One more file into the existing archive: how much does a small commit write?
    let extra_path = "extra/one-file.txt";
    let mut extra = vec![0u8; cfg.file_bytes];
    cfg.pattern.fill(SMALL_SEED ^ 0xE47A, &mut extra);
    lb.put(extra_path, &extra)?;
    let t = clock();
    let cs1 = lb.commit()?;
    let one = t.elapsed();
    sec.timed(
        "one-file commit",
        one,
        None,
        None,
        format!(
            "bytes_written={} ({}), pages_written={}",
            cs1.bytes_written,
            fmt_bytes(cs1.bytes_written),
            cs1.pages_written
        ),
    );
    sec.json_u("one_file_commit_bytes_written", cs1.bytes_written);
    sec.json_u("one_file_commit_pages_written", cs1.pages_written);
    if lb.get(extra_path)? != extra {
        return Err("read-back mismatch for the one-file commit".into());
    }
    let stored_after = ctx.stored_bytes(&lb, "small")?;
    drop(lb);

    // The same files from a directory, imported with add_path into a second
    // archive, which is extracted to a new directory (checked afterwards,
    // untimed) and to memory.
    //
    // Bounds on the same data, measured here and reported after lockbox's
    // figures: the files end to end (as packs hold them), cut into frames
    // and compressed as each archive stores them: the put archive under the
    // default profile (Interactive: 64 KiB frames, zstd level 3), the
    // add_path archive, which both extractions read, under BulkImport
    // (1 MiB frames, level 2);
    // the filesystem creating the same files, best of FS_TRIES passes on 1
    // thread (the first writes the import's source directory) and on every
    // core, each into a new directory (the cost of creating files can differ
    // from one directory to the next: see `Ctx::scratch`); open+read+close
    // of the source. Nothing is deleted until the end of the run.
    let all = datas.concat();
    let b_put = cpu_bounds(&frames_of(&all, Coding::INTERACTIVE), Coding::INTERACTIVE)?;
    let b_imp = cpu_bounds(&frames_of(&all, Coding::BULK), Coding::BULK)?;
    drop(all);
    let threads = bound_threads();
    let src = ctx.dir.join("small-source");
    let fsdir = ctx.dir.join("small-fs-bound");
    remove_dir_if_exists(&src)?;
    remove_dir_if_exists(&fsdir)?;
    ctx.remove_at_end(&src);
    ctx.remove_at_end(&fsdir);
    let create_best = |t: usize| -> io::Result<Duration> {
        let mut best = Duration::MAX;
        for k in 0..FS_TRIES {
            let d = if t == 1 && k == 0 {
                src.clone()
            } else {
                fsdir.join(format!("{t}-{k}"))
            };
            settle(&ctx.dir);
            best = best.min(fs_create_bound(&d, &paths, &datas, t)?);
        }
        Ok(best)
    };
    let c1 = create_best(1)?;
    let cn = if threads > 1 {
        create_best(threads)?
    } else {
        c1
    };
    let read_best = |t: usize| -> io::Result<Duration> {
        let mut best = Duration::MAX;
        for _ in 0..FS_TRIES {
            best = best.min(fs_read_bound(&src, &paths, cfg.file_bytes, t)?);
        }
        Ok(best)
    };
    let r1 = read_best(1)?;
    let rn = if threads > 1 { read_best(threads)? } else { r1 };
    let create = Rate {
        one: mib_s(logical, c1),
        all: mib_s(logical, cn),
    };
    let readr = Rate {
        one: mib_s(logical, r1),
        all: mib_s(logical, rn),
    };

    let mut lbi = ctx.create("small-import")?;
    settle(&ctx.dir);
    let t = clock();
    // Imports use the profile made for them: larger frames and packs
    // (better compression), data not cached. Reads afterwards go back to
    // the default profile.
    lbi.set_profile(Profile::BulkImport);
    let st = lbi.add_path(&src, "")?;
    let import = t.elapsed();
    if st.files != n as u64 || st.bytes != logical || !st.skipped.is_empty() {
        return Err(format!(
            "add_path imported {} files / {} bytes ({} skipped), expected {n} / {logical}",
            st.files,
            st.bytes,
            st.skipped.len()
        )
        .into());
    }
    sec.timed(
        "import (add_path)",
        import,
        Some(logical),
        Some(n as u64),
        format!("{} files, {} dirs from a directory", st.files, st.dirs),
    );
    let t = clock();
    let cs = lbi.commit()?;
    let import_commit = t.elapsed();
    lbi.set_profile(Profile::Interactive);
    sec.timed(
        "commit (import)",
        import_commit,
        None,
        None,
        fmt_commit(&cs),
    );
    let import_total = import + import_commit;
    sec.derived(
        "import+commit",
        import_total,
        Some(logical),
        Some(n as u64),
        String::new(),
    );
    let (import_compared, peer_packs) =
        import_and_peer_packs(ctx, sec, "small", &src, import_total, logical, n as u64)?;
    let (lbi, _) = ctx.reopen(lbi, "small-import")?;
    let import_stored = ctx.stored_bytes(&lbi, "small-import")?;

    // Extraction (LOCKBOX_PERF_EXTRACT picks which; LOCKBOX_PERF_EXTRACT_REPEAT
    // repeats each on the same handle): to a new directory, checked byte for
    // byte afterwards (untimed), and to memory.
    let extract_to_dir = |k: usize| -> BoxResult<(Duration, ExtractStats)> {
        let dest = if k == 0 {
            ctx.dir.join("small-extract")
        } else {
            ctx.dir.join(format!("small-extract-{k}"))
        };
        remove_dir_if_exists(&dest)?;
        settle(&ctx.dir);
        let t = clock();
        let es = lbi.extract_to_directory(&dest, &ExtractOptions::default())?;
        let d = t.elapsed();
        if es.files != n as u64 || es.bytes != logical {
            return Err(format!(
                "extract_to_directory wrote {} files / {} bytes, expected {n} / {logical}",
                es.files, es.bytes
            )
            .into());
        }
        if k == 0 {
            verify_tree(&dest, &paths, &datas, "lockbox extract_to_directory")?;
        }
        ctx.remove_at_end(&dest);
        Ok((d, es))
    };
    let mut extract_dir = None;
    if cfg.extract.directory() {
        let (d, es) = extract_to_dir(0)?;
        sec.timed(
            "extract to dir",
            d,
            Some(logical),
            Some(n as u64),
            format!(
                "extract_to_directory into a new directory ({} files, {} dirs)",
                es.files, es.dirs
            ),
        );
        let d = repeat_extraction(
            sec,
            "extract to dir",
            d,
            cfg.extract_repeat,
            logical,
            Some(n as u64),
            |k| Ok(extract_to_dir(k)?.0),
        )?;
        extract_dir = Some(d);
    }

    let extract_to_memory = || -> BoxResult<Duration> {
        let (mut mem_files, mut mem_bytes) = (0u64, 0u64);
        let t = clock();
        lbi.extract_all("", |e, bytes| {
            if matches!(e.kind, EntryKind::File) {
                mem_files += 1;
                mem_bytes += black_box(bytes).len() as u64;
            }
            Ok(())
        })?;
        let d = t.elapsed();
        if mem_files != n as u64 || mem_bytes != logical {
            return Err(format!(
                "extract_all gave {mem_files} files / {mem_bytes} bytes, expected {n} / {logical}"
            )
            .into());
        }
        Ok(d)
    };
    let mut extract_mem = None;
    if cfg.extract.memory() {
        let d = extract_to_memory()?;
        sec.timed(
            "extract to memory",
            d,
            Some(logical),
            Some(n as u64),
            "extract_all: every file to a callback".into(),
        );
        let d = repeat_extraction(
            sec,
            "extract to memory",
            d,
            cfg.extract_repeat,
            logical,
            Some(n as u64),
            |_| extract_to_memory(),
        )?;
        extract_mem = Some(d);
    }
    // Decoding the import archive's own frames, the extractions' bound.
    let own = ArchiveFrames::measure(&lbi)?;
    own.report(sec);
    drop(lbi);

    sec.size(stored, logical);
    sec.fact_u(
        "lockbox_bytes_after_one_file_commit",
        stored_after,
        format!("{} after the one-file commit", fmt_bytes(stored_after)),
    );
    sec.fact_named(
        "lockbox bytes (import)",
        "import_lockbox_bytes",
        import_stored,
        format!(
            "{} ({import_stored} B), ratio lockbox/logical {:.3}",
            fmt_bytes(import_stored),
            import_stored as f64 / logical.max(1) as f64
        ),
    );
    sec.peak_rss();

    report_cpu_bounds(
        sec,
        &b_put,
        "the small files end to end, as put stores them (Interactive)",
    );
    report_cpu_bounds(
        sec,
        &b_imp,
        "the small files end to end, as add_path imports them (BulkImport)",
    );
    for (key, step, d1, dn, r) in [
        ("fs_create", "bound: fs create+write+close", c1, cn, create),
        ("fs_read", "bound: fs open+read+close", r1, rn, readr),
    ] {
        let fps = |d: Duration| n as f64 / d.as_secs_f64();
        sec.row(
            step,
            Some(dn),
            Some(r.all),
            Some(fps(dn)),
            format!(
                "{n} x {} B, best of {FS_TRIES}: 1 thread {:.0} files/s ({:.1} MiB/s), {threads} threads {:.0} files/s ({:.1} MiB/s)",
                cfg.file_bytes,
                fps(d1),
                r.one,
                fps(dn),
                r.all
            ),
        );
        sec.json_f(&format!("bound_{key}_1t_files_s"), fps(d1));
        sec.json_f(&format!("bound_{key}_files_s"), fps(dn));
        sec.json_f(&format!("bound_{key}_1t_mib_s"), r.one);
        sec.json_f(&format!("bound_{key}_mib_s"), r.all);
    }
    // Each figure against the coding of the archive it writes or reads:
    // put and get the put archive (Interactive), the import and both
    // extractions the add_path archive (BulkImport).
    let rate = |d: Duration| mib_s(logical, d);
    let (w, v) = b_put.pack_stage();
    sec.fraction("add+commit (put)", rate(add + commit), &w, v);
    let (w, v) = slowest(&[b_imp.pack_stage(), readr.stage("fs open+read+close")]);
    sec.fraction("import+commit (add_path)", rate(import_compared), &w, v);
    if let Some(d) = extract_dir {
        let (w, v) = slowest(&[own.stage(logical), create.stage("fs create+write+close")]);
        sec.fraction("extract to directory", rate(d), &w, v);
    }
    if let Some(d) = extract_mem {
        let (w, v) = own.stage(logical);
        sec.fraction("extract to memory (extract_all)", rate(d), &w, v);
    }
    let (w, v) = b_put.unpack_stage();
    sec.fraction("read-back (get)", rate(read), &w, v);

    if cfg.peers {
        let runs = extract_peers(
            ctx,
            sec,
            "small",
            logical,
            n as u64,
            &PeerExtract {
                dir: cfg.extract.directory(),
                tmpfs: None,
                memory: cfg.extract.memory(),
            },
            cfg.extract_repeat,
            peer_packs.ok_or("peers packed nothing")?,
            &|peer, dest| verify_tree(dest, &paths, &datas, peer.name()),
        )?;
        compare_peers(
            sec,
            &runs,
            &Lockboxed {
                pack: ("import from directory", import_compared),
                dir: extract_dir,
                tmpfs: None,
                mem: extract_mem.map(|d| ("extract to memory", d)),
                bytes: import_stored,
            },
        );
    }
    Ok(())
}

/// Checks that `root` holds every small file with the right bytes.
pub fn verify_tree(root: &Path, paths: &[String], datas: &[Vec<u8>], who: &str) -> BoxResult<()> {
    for (p, d) in paths.iter().zip(datas) {
        let got = fs::read(root.join(p)).map_err(|e| format!("{who}: {p}: {e}"))?;
        if got != *d {
            return Err(format!("{who}: extracted {p} differs from its source").into());
        }
    }
    Ok(())
}
