//! `lbx`: a small command-line tool over `lockbox`, and the quickest way to
//! try the crate.
//!
//! ```text
//! cargo run --example lbx -- help
//! cargo run --example lbx -- create demo.lbox
//! cargo run --example lbx -- add demo.lbox ./some/dir docs
//! cargo run --example lbx -- ls demo.lbox
//! ```
//!
//! Every command names the archive first (after `var get|set|rm|ls`). A
//! command that changes the archive commits once, at its end, and prints the
//! commit's sequence number; if it fails, nothing it staged is committed.
//! Read-only commands (`ls`, `cat`, `extract`, `var get`, `var ls`, `verify`)
//! open the archive with `read_only(true)`, so they can run next to each other.
//!
//! Passphrases are asked for on the terminal without echo, unless
//! `LOCKBOX_PASSPHRASE` is set: then it is used and `lbx` never prompts
//! (`passwd` then takes the new passphrase from `LOCKBOX_NEW_PASSPHRASE`).
//! Environment variables are visible to other processes of the same user:
//! use them for scripts, demos and tests, not for secrets that matter.
//! `LOCKBOX_KDF_FAST=1` makes new passphrase slots (`create`, `passwd`) use
//! the weakest Argon2id parameters lockbox accepts (`KdfParams::MIN`), which
//! is quicker; it is meant for demos and tests.
//!
//! Errors print `lbx: <message>` on stderr and exit with status 1; a
//! command line that does not parse exits with status 2 and shows what to
//! type.

use std::borrow::Cow;
use std::env;
use std::fmt;
use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use lockbox::{
    EntryKind, ExtractOptions, ImportOptions, KdfParams, Key, Lockbox, Profile, Progress,
};

/// The passphrase, when set: `lbx` never prompts then.
const PASSPHRASE_VAR: &str = "LOCKBOX_PASSPHRASE";
/// The new passphrase for `passwd` when `LOCKBOX_PASSPHRASE` is set.
const NEW_PASSPHRASE_VAR: &str = "LOCKBOX_NEW_PASSPHRASE";
/// `1`: weakest accepted KDF parameters for new key slots (demos, tests).
const KDF_FAST_VAR: &str = "LOCKBOX_KDF_FAST";

/// Every command: (usage after `lbx `, what it does). `help` and usage
/// errors are printed from this table.
#[rustfmt::skip]
const COMMANDS: &[(&str, &str)] = &[
    ("create ARCHIVE",             "create an empty archive (asks for a passphrase twice)"),
    ("add ARCHIVE SRC [DEST]",     "import a file or directory tree into directory DEST (default: the root)"),
    ("ls ARCHIVE [PREFIX]",        "list every entry, or those below directory PREFIX"),
    ("cat ARCHIVE PATH",           "write a file's content to standard output"),
    ("extract ARCHIVE DEST [PREFIX] [--mtimes] [--allow-escaping-symlinks]",
                                   "write the tree (or PREFIX) into directory DEST"),
    ("rm ARCHIVE PATH...",         "delete files, symlinks or whole directories"),
    ("mv ARCHIVE FROM TO",         "rename a file, symlink or directory"),
    ("var get ARCHIVE NAME",       "print a variable's value"),
    ("var set ARCHIVE NAME VALUE", "set a variable"),
    ("var rm ARCHIVE NAME",        "remove a variable"),
    ("var ls ARCHIVE",             "list variables and their values"),
    ("verify ARCHIVE",             "authenticate every page and check every structure"),
    ("compact ARCHIVE",            "rewrite the archive into the smallest file"),
    ("passwd ARCHIVE",             "change the passphrase (current one, then the new one twice)"),
    ("help",                       "show this help"),
];

fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(e) => return report(e),
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

/// Prints an error and returns the exit status: 2 for usage errors, else 1.
fn report(e: CliError) -> ExitCode {
    if e.is_broken_pipe() {
        // `lbx cat big.lbox f | head`: the reader has all it wanted.
        return ExitCode::SUCCESS;
    }
    eprintln!("lbx: {e}");
    match e {
        CliError::Usage { command, .. } => {
            let lines: Vec<&str> = COMMANDS
                .iter()
                .map(|(usage, _)| *usage)
                .filter(|usage| !command.is_empty() && is_usage_of(usage, &command))
                .collect();
            if lines.is_empty() {
                eprintln!("usage: lbx COMMAND ARCHIVE [ARGUMENTS]");
            }
            for usage in lines {
                eprintln!("usage: lbx {usage}");
            }
            eprintln!("(`lbx help` lists every command)");
            ExitCode::from(2)
        }
        _ => ExitCode::FAILURE,
    }
}

/// The command line, without the program name. `std::env::args` would panic
/// on an argument that is not UTF-8; this says so instead.
fn args() -> Result<Vec<String>, CliError> {
    env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| usage(format!("argument {a:?} is not valid UTF-8"), ""))
        })
        .collect()
}

fn run(args: &[String]) -> Result<(), CliError> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(usage("no command given".into(), ""));
    };
    let cmd = cmd.as_str();
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        return help();
    }
    match (cmd, rest) {
        ("help" | "--help" | "-h", []) => help(),
        ("create", [archive]) => create(archive),
        ("add", [archive, src]) => add(archive, src, ""),
        ("add", [archive, src, dest]) => add(archive, src, dest),
        ("ls", [archive]) => ls(archive, ""),
        ("ls", [archive, prefix]) => ls(archive, prefix),
        ("cat", [archive, path]) => cat(archive, path),
        ("extract", _) => extract(rest),
        ("rm", [archive, paths @ ..]) if !paths.is_empty() => rm(archive, paths),
        ("mv", [archive, from, to]) => mv(archive, from, to),
        ("var", [sub, more @ ..]) => match (sub.as_str(), more) {
            ("get", [archive, name]) => var_get(archive, name),
            ("set", [archive, name, value]) => var_set(archive, name, value),
            ("rm", [archive, name]) => var_rm(archive, name),
            ("ls", [archive]) => var_ls(archive),
            (sub @ ("get" | "set" | "rm" | "ls"), _) => Err(wrong_args(&format!("var {sub}"))),
            (sub, _) => Err(usage(format!("unknown `var` command {sub:?}"), "var")),
        },
        ("verify", [archive]) => verify(archive),
        ("compact", [archive]) => compact(archive),
        ("passwd", [archive]) => passwd(archive),
        _ if COMMANDS.iter().any(|(usage, _)| is_usage_of(usage, cmd)) => Err(wrong_args(cmd)),
        _ => Err(usage(format!("unknown command {cmd:?}"), "")),
    }
}

/// Whether `usage` (a line of [`COMMANDS`]) is one of `command`'s:
/// `"var get ARCHIVE NAME"` is one of `var`'s and of `var get`'s.
fn is_usage_of(usage: &str, command: &str) -> bool {
    usage
        .strip_prefix(command)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
}

const ENVIRONMENT: &str = "\
Passphrases are asked for on the terminal, without echo, unless
  LOCKBOX_PASSPHRASE=...      is set: lbx uses it and never prompts
  LOCKBOX_NEW_PASSPHRASE=...  the new passphrase for `passwd` (needed when
                              LOCKBOX_PASSPHRASE is set)
  LOCKBOX_KDF_FAST=1          new passphrases (create, passwd) use the weakest
                              Argon2id parameters accepted (KdfParams::MIN):
                              quicker, for demos and tests only
";

fn help() -> Result<(), CliError> {
    const WIDTH: usize = 26;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "lbx: try lockbox, an encrypted and updatable archive in one file"
    )?;
    writeln!(out, "\nusage: lbx COMMAND ARCHIVE [ARGUMENTS]\n\ncommands:")?;
    for (usage, about) in COMMANDS {
        if usage.len() > WIDTH {
            writeln!(out, "  {usage}\n  {:WIDTH$}  {about}", "")?;
        } else {
            writeln!(out, "  {usage:WIDTH$}  {about}")?;
        }
    }
    write!(out, "\n{ENVIRONMENT}")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Commands

fn create(archive: &str) -> Result<(), CliError> {
    if Path::new(archive).exists() {
        return Err(CliError::Message(format!(
            "{archive} already exists; choose another name or delete it first"
        )));
    }
    let key = Key::passphrase(new_passphrase(PASSPHRASE_VAR)?);
    let lb = Lockbox::builder().kdf(kdf_params()).create(archive, key)?;
    writeln!(
        io::stdout(),
        "created {archive} (sequence {})",
        lb.sequence()
    )?;
    Ok(())
}

fn add(archive: &str, src: &str, dest: &str) -> Result<(), CliError> {
    check_source(archive, src)?;
    let mut lb = open(archive, Access::Write(Profile::BulkImport))?;
    // The total is not known before the walk: a spinner with counts.
    let bar =
        ProgressBar::new_spinner().with_style(style("{spinner} {pos} entries, {msg} [{elapsed}]"));
    bar.set_message("0 B");
    bar.enable_steady_tick(Duration::from_millis(120));
    let result = lb.add_path_with(
        src,
        dir_arg(dest),
        &ImportOptions::default(),
        |p: &Progress| {
            bar.set_position(p.files);
            bar.set_message(HumanBytes(p.bytes).to_string());
        },
    );
    bar.finish_and_clear();
    let stats = result?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "added {}, {}, {} ({}) in {:.2?}",
        count(stats.files, "file"),
        count(stats.dirs, "directory"),
        count(stats.symlinks, "symlink"),
        HumanBytes(stats.bytes),
        stats.duration,
    )?;
    if stats.unchanged + stats.shared > 0 {
        writeln!(
            out,
            "  of the files, {} already there unchanged, {} sharing bytes stored elsewhere",
            stats.unchanged, stats.shared
        )?;
    }
    if !stats.skipped.is_empty() {
        writeln!(
            out,
            "skipped {}:",
            count(stats.skipped.len() as u64, "entry")
        )?;
        for s in &stats.skipped {
            writeln!(out, "  {}: {}", s.path.display(), s.reason)?;
        }
    }
    commit(&mut lb, &mut out)
}

fn ls(archive: &str, prefix: &str) -> Result<(), CliError> {
    let lb = open(archive, Access::Read(Profile::Interactive))?;
    let prefix = dir_arg(prefix);
    let mut out = io::BufWriter::new(io::stdout().lock());
    // `list` shows what is below a directory; a file or symlink named as
    // the prefix is shown by itself.
    let single = match prefix {
        "" => None,
        _ => match lb.stat(prefix)? {
            None => return Err(lockbox::Error::NotFound(prefix.to_string()).into()),
            Some(e) => (e.kind != EntryKind::Dir).then_some(e),
        },
    };
    match single {
        Some(e) => write_entry(&mut out, &e)?,
        None => {
            for entry in lb.list(prefix)? {
                write_entry(&mut out, &entry?)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// One `ls` line: `-rw-r--r--       1234 2024-05-01 12:00 docs/a.txt`.
fn write_entry(out: &mut impl Write, e: &lockbox::Entry) -> io::Result<()> {
    let suffix = match (e.kind, &e.target) {
        (EntryKind::Dir, _) => "/".to_string(),
        (EntryKind::Symlink, Some(t)) => format!(" -> {}", printable(t)),
        _ => String::new(),
    };
    writeln!(
        out,
        "{} {:>10} {} {}{suffix}",
        mode_string(e.kind, e.mode),
        e.len,
        utc_minutes(e.mtime),
        printable(&e.path),
    )
}

fn cat(archive: &str, path: &str) -> Result<(), CliError> {
    let lb = open(archive, Access::Read(Profile::Interactive))?;
    let mut out = io::stdout().lock();
    lb.copy_to(path, &mut out)?;
    out.flush()?;
    Ok(())
}

fn extract(rest: &[String]) -> Result<(), CliError> {
    let (mut mtimes, mut escaping) = (false, false);
    let mut positional = Vec::new();
    for arg in rest {
        match arg.as_str() {
            "--mtimes" => mtimes = true,
            "--allow-escaping-symlinks" => escaping = true,
            flag if flag.starts_with("--") => {
                return Err(usage(
                    format!("unknown option {flag:?} for `extract`"),
                    "extract",
                ));
            }
            _ => positional.push(arg.as_str()),
        }
    }
    let (archive, dest, prefix) = match positional[..] {
        [archive, dest] => (archive, dest, ""),
        [archive, dest, prefix] => (archive, dest, dir_arg(prefix)),
        _ => return Err(wrong_args("extract")),
    };
    let lb = open(archive, Access::Read(Profile::ExtractMany))?;
    // Totals for the bar, from the table of contents (no file data is read).
    let (mut files, mut bytes) = (0u64, 0u64);
    for entry in lb.list(prefix)? {
        let entry = entry?;
        if entry.kind == EntryKind::File {
            files += 1;
            bytes = bytes.saturating_add(entry.len);
        }
    }
    let bar = ProgressBar::new(bytes)
        .with_style(style("{wide_bar} {bytes}/{total_bytes} {msg} [{elapsed}]"));
    bar.set_message(format!("0/{files} files"));
    let opts = ExtractOptions::default()
        .prefix(prefix)
        .restore_mtimes(mtimes)
        .allow_escaping_symlinks(escaping);
    // Called from the writer threads: `ProgressBar` is `Sync`.
    let result = lb.extract_to_directory_with_progress(dest, &opts, |p: &Progress| {
        bar.set_position(p.bytes);
        bar.set_message(format!("{}/{files} files", p.files));
    });
    bar.finish_and_clear();
    let stats = result?;
    writeln!(
        io::stdout(),
        "extracted {}, {}, {} ({}) into {dest} in {:.2?}",
        count(stats.files, "file"),
        count(stats.dirs, "directory"),
        count(stats.symlinks, "symlink"),
        HumanBytes(stats.bytes),
        stats.duration,
    )?;
    Ok(())
}

fn rm(archive: &str, paths: &[String]) -> Result<(), CliError> {
    if paths.iter().any(|p| p.is_empty() || p == "/") {
        // `delete("")` empties the whole archive: too easy to type by mistake.
        return Err(CliError::Message(
            "refusing to delete the root; name the entries to delete".into(),
        ));
    }
    let mut lb = open(archive, Access::Write(Profile::Interactive))?;
    let mut removed = 0;
    for path in paths {
        // If one path fails, nothing is committed: the handle is dropped
        // with its staged deletes.
        removed += lb.delete(path)?;
    }
    let mut out = io::stdout().lock();
    writeln!(out, "removed {}", count(removed, "entry"))?;
    commit(&mut lb, &mut out)
}

fn mv(archive: &str, from: &str, to: &str) -> Result<(), CliError> {
    let mut lb = open(archive, Access::Write(Profile::Interactive))?;
    lb.rename(from, to)?;
    let mut out = io::stdout().lock();
    writeln!(out, "renamed {} to {}", printable(from), printable(to))?;
    commit(&mut lb, &mut out)
}

fn var_get(archive: &str, name: &str) -> Result<(), CliError> {
    let lb = open(archive, Access::Read(Profile::Interactive))?;
    let Some(value) = lb.var(name)? else {
        return Err(CliError::Message(format!(
            "no variable {name:?} in {archive}"
        )));
    };
    let mut out = io::stdout().lock();
    out.write_all(&value)?;
    if out.is_terminal() && !value.ends_with(b"\n") {
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

fn var_set(archive: &str, name: &str, value: &str) -> Result<(), CliError> {
    let mut lb = open(archive, Access::Write(Profile::Interactive))?;
    lb.set_var(name, value.as_bytes())?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "set {} ({})",
        printable(name),
        count(value.len() as u64, "byte")
    )?;
    commit(&mut lb, &mut out)
}

fn var_rm(archive: &str, name: &str) -> Result<(), CliError> {
    let mut lb = open(archive, Access::Write(Profile::Interactive))?;
    if !lb.remove_var(name)? {
        return Err(CliError::Message(format!(
            "no variable {name:?} in {archive}"
        )));
    }
    let mut out = io::stdout().lock();
    writeln!(out, "removed {}", printable(name))?;
    commit(&mut lb, &mut out)
}

fn var_ls(archive: &str) -> Result<(), CliError> {
    let lb = open(archive, Access::Read(Profile::Interactive))?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for item in lb.vars()? {
        let (name, value) = item?;
        // Short UTF-8 values are shown quoted and escaped; others by length.
        let shown = match std::str::from_utf8(&value) {
            Ok(s) if s.chars().count() <= 80 => format!("{s:?}"),
            _ => format!("<{}>", count(value.len() as u64, "byte")),
        };
        writeln!(out, "{} = {shown}", printable(&name))?;
    }
    out.flush()?;
    Ok(())
}

fn verify(archive: &str) -> Result<(), CliError> {
    let lb = open(archive, Access::Read(Profile::Interactive))?;
    let r = lb.verify()?;
    let mut out = io::stdout().lock();
    writeln!(out, "ok: {archive} verified at sequence {}", r.sequence)?;
    writeln!(
        out,
        "  entries        {} (tree height {})",
        r.entries, r.toc_height
    )?;
    writeln!(
        out,
        "  variables      {} (tree height {})",
        r.variables, r.vars_height
    )?;
    writeln!(
        out,
        "  regions        {} authenticated ({})",
        r.regions,
        HumanBytes(r.region_bytes)
    )?;
    writeln!(
        out,
        "  file data      {} in frames, read back and checked",
        HumanBytes(r.data_bytes)
    )?;
    writeln!(
        out,
        "  free space     {} (zeroed, reusable)",
        HumanBytes(r.free_bytes)
    )?;
    writeln!(out, "  freed by last  {}", HumanBytes(r.pending_bytes))?;
    Ok(())
}

fn compact(archive: &str) -> Result<(), CliError> {
    let mut lb = open(archive, Access::Write(Profile::Interactive))?;
    let s = lb.compact()?;
    writeln!(
        io::stdout(),
        "compacted {archive}: {} -> {} bytes ({} -> {}), {} copied in {:.2?}; sequence {}",
        s.bytes_before,
        s.bytes_after,
        HumanBytes(s.bytes_before),
        HumanBytes(s.bytes_after),
        count(s.entries, "entry"),
        s.duration,
        lb.sequence(),
    )?;
    Ok(())
}

fn passwd(archive: &str) -> Result<(), CliError> {
    require_archive(archive)?;
    let old = Key::passphrase(passphrase(&format!("Current passphrase for {archive}: "))?);
    // The builder's KDF parameters apply to the slot `add_key` creates.
    let mut lb = open_with(archive, Access::Write(Profile::Interactive), old.clone())?;
    let new = Key::passphrase(new_passphrase(NEW_PASSPHRASE_VAR)?);
    // Add first, then remove: at every moment some key opens the archive.
    // Key slots change at once; there is nothing to commit.
    lb.add_key(new)?;
    lb.remove_key(&old)?;
    writeln!(
        io::stdout(),
        "passphrase of {archive} changed; the old one no longer opens it ({})",
        count(lb.key_count() as u64, "key slot")
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Opening, passphrases, committing

enum Access {
    Read(Profile),
    Write(Profile),
}

/// Opens `archive`, asking for its passphrase (or reading it from the
/// environment).
fn open(archive: &str, access: Access) -> Result<Lockbox, CliError> {
    require_archive(archive)?;
    let key = Key::passphrase(passphrase(&format!("Passphrase for {archive}: "))?);
    open_with(archive, access, key)
}

/// Checked before asking for a passphrase that would be wasted.
fn require_archive(archive: &str) -> Result<(), CliError> {
    if Path::new(archive).exists() {
        Ok(())
    } else {
        Err(CliError::Message(format!(
            "{archive} does not exist; create it with `lbx create {archive}`"
        )))
    }
}

fn open_with(archive: &str, access: Access, key: Key) -> Result<Lockbox, CliError> {
    let (read_only, profile) = match access {
        Access::Read(p) => (true, p),
        Access::Write(p) => (false, p),
    };
    let lb = Lockbox::builder()
        .read_only(read_only)
        .profile(profile)
        .kdf(kdf_params())
        .open(archive, key)?;
    Ok(lb)
}

/// Commits what the command staged and prints the sequence number.
fn commit(lb: &mut Lockbox, out: &mut impl Write) -> Result<(), CliError> {
    let s = lb.commit()?;
    writeln!(
        out,
        "committed sequence {} ({} changed, {} written)",
        s.sequence,
        count(s.entries_changed, "entry"),
        HumanBytes(s.bytes_written),
    )?;
    Ok(())
}

/// The passphrase to open an archive: `LOCKBOX_PASSPHRASE`, else a prompt.
fn passphrase(prompt: &str) -> Result<String, CliError> {
    match env_var(PASSPHRASE_VAR)? {
        Some(p) => Ok(p),
        None => ask(prompt),
    }
}

/// A new passphrase: from `var` if set, else typed twice. When
/// `LOCKBOX_PASSPHRASE` is set, `lbx` never prompts, so `var` must be set.
fn new_passphrase(var: &str) -> Result<String, CliError> {
    let p = match env_var(var)? {
        Some(p) => p,
        None if env_var(PASSPHRASE_VAR)?.is_some() => {
            return Err(CliError::Message(format!(
                "{PASSPHRASE_VAR} is set, so lbx does not prompt: set {var} to the new passphrase"
            )));
        }
        None => {
            let p = ask("New passphrase: ")?;
            if ask("Repeat the new passphrase: ")? != p {
                return Err(CliError::Message(
                    "the two passphrases differ; nothing was changed, try again".into(),
                ));
            }
            p
        }
    };
    if p.is_empty() {
        return Err(CliError::Message(
            "empty passphrase refused; type at least one character".into(),
        ));
    }
    Ok(p)
}

/// Prompts on the terminal without echo.
fn ask(prompt: &str) -> Result<String, CliError> {
    rpassword::prompt_password(prompt).map_err(|e| {
        CliError::Message(format!(
            "cannot ask for a passphrase on the terminal ({e}); set {PASSPHRASE_VAR} instead"
        ))
    })
}

fn env_var(name: &str) -> Result<Option<String>, CliError> {
    match env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(env::VarError::NotPresent) => Ok(None),
        Err(env::VarError::NotUnicode(_)) => {
            Err(CliError::Message(format!("{name} is not valid UTF-8")))
        }
    }
}

/// Argon2id parameters for new passphrase slots.
fn kdf_params() -> KdfParams {
    if env::var_os(KDF_FAST_VAR).is_some_and(|v| v == "1") {
        KdfParams::MIN
    } else {
        KdfParams::default()
    }
}

/// Refuses a missing source, or one that is or contains the archive itself
/// (the archive would be read while it grows). A symlink is stored, not
/// followed, so it is fine.
fn check_source(archive: &str, src: &str) -> Result<(), CliError> {
    let meta = fs::symlink_metadata(src)
        .map_err(|e| CliError::Message(format!("cannot read {src}: {e}")))?;
    if !meta.is_symlink()
        && let (Ok(src_path), Ok(archive_path)) = (fs::canonicalize(src), fs::canonicalize(archive))
        && archive_path.starts_with(&src_path)
    {
        return Err(CliError::Message(format!(
            "{src} is or contains the archive {archive}; add something that does not contain it"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Formatting

/// A directory argument: `docs/` and `/` are accepted as `docs` and the root.
fn dir_arg(arg: &str) -> &str {
    arg.trim_end_matches('/')
}

/// `-rw-r--r--`, `drwxr-xr-x`, `lrwxrwxrwx`; setuid, setgid and sticky as
/// `s`/`S` and `t`/`T`.
fn mode_string(kind: EntryKind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::File => '-',
    });
    let special = [(0o4000, 's', 'S'), (0o2000, 's', 'S'), (0o1000, 't', 'T')];
    for (shift, (bit, with_x, without_x)) in [6, 3, 0].into_iter().zip(special) {
        let rwx = mode >> shift;
        s.push(if rwx & 4 != 0 { 'r' } else { '-' });
        s.push(if rwx & 2 != 0 { 'w' } else { '-' });
        s.push(match (mode & bit != 0, rwx & 1 != 0) {
            (true, true) => with_x,
            (true, false) => without_x,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Unix seconds as UTC `YYYY-MM-DD HH:MM` (proleptic Gregorian calendar).
fn utc_minutes(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3_600,
        rem % 3_600 / 60
    )
}

/// Names from an archive may hold control characters: escape them so
/// they cannot move the cursor or recolour the terminal.
fn printable(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(s.escape_debug().to_string())
    } else {
        Cow::Borrowed(s)
    }
}

/// `1 file`, `2 files`, `1 entry`, `3 entries`.
fn count(n: u64, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

// ---------------------------------------------------------------------------
// Errors

enum CliError {
    /// The command line does not parse; the usage lines of `command` are
    /// shown (the general one when it is empty).
    Usage {
        message: String,
        command: String,
    },
    /// lockbox's own errors: their messages say what to do.
    Lockbox(lockbox::Error),
    /// Writing to standard output failed.
    Output(io::Error),
    Message(String),
}

fn usage(message: String, command: &str) -> CliError {
    let command = command.to_string();
    CliError::Usage { message, command }
}

fn wrong_args(command: &str) -> CliError {
    usage(format!("wrong arguments for `{command}`"), command)
}

impl CliError {
    fn is_broken_pipe(&self) -> bool {
        match self {
            CliError::Output(e) | CliError::Lockbox(lockbox::Error::Io(e)) => {
                e.kind() == io::ErrorKind::BrokenPipe
            }
            _ => false,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage { message, .. } | CliError::Message(message) => f.write_str(message),
            CliError::Lockbox(e) => write!(f, "{e}"),
            CliError::Output(e) => write!(f, "cannot write to standard output: {e}"),
        }
    }
}

impl From<lockbox::Error> for CliError {
    fn from(e: lockbox::Error) -> Self {
        CliError::Lockbox(e)
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Output(e)
    }
}
