//! Configuration: every `LOCKBOX_PERF_*` variable is read and checked here,
//! once, before anything runs, so a typo fails the run at once instead of
//! after minutes of work (the variable table is in `main.rs`'s doc comment
//! and in the README).

use std::env;
use std::path::PathBuf;

use crate::BoxResult;
use crate::datagen::Pattern;
use crate::scenarios::{DEFAULT_SCENARIOS, SCENARIOS, Scenario};

/// Where the archives live: a file (`Lockbox::create`) or an in-memory image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    File,
    Memory,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::Memory => "memory",
        }
    }
}

/// Which extractions the scenarios that extract many files (`small`,
/// `large`, `tree`) time (`LOCKBOX_PERF_EXTRACT`; unset: both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extract {
    Both,
    Directory,
    Memory,
}

impl Extract {
    pub fn name(self) -> &'static str {
        match self {
            Extract::Both => "directory+memory",
            Extract::Directory => "directory",
            Extract::Memory => "memory",
        }
    }
    pub fn directory(self) -> bool {
        self != Extract::Memory
    }
    pub fn memory(self) -> bool {
        self != Extract::Directory
    }
}

/// Files of the generated `tree` when `LOCKBOX_PERF_FILES` is not set: a
/// few thousand, so `all` stays quick; set the variable to scale it.
pub const TREE_DEFAULT_FILES: usize = 3_000;

pub struct Config {
    pub scenario_label: String,
    pub scenarios: Vec<&'static Scenario>,
    pub backend: Backend,
    pub files: usize,
    /// `LOCKBOX_PERF_FILES` as given (`None`: unset); the generated tree
    /// only follows it when it is set, its own default is smaller.
    pub files_set: Option<usize>,
    pub file_bytes: usize,
    pub large_bytes: u64,
    pub pattern: Pattern,
    pub dir: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub peers: bool,
    pub extract: Extract,
    pub extract_repeat: usize,
    /// Runs of each import compared with the peers (`small`, `tree`), and
    /// of the `tar` peers' packing.
    pub import_repeat: usize,
    /// `tree`: a real directory to import (`None`: a generated tree).
    pub source: Option<PathBuf>,
    /// `append-delete`: files committed before the first round.
    pub initial_files: usize,
    /// `append-delete`: files appended (and as many deleted) per round.
    pub append_files: usize,
    /// `append-delete`: number of rounds.
    pub rounds: usize,
    /// `metadata`: entry counts.
    pub metadata_sizes: Vec<usize>,
}

pub fn env_string(name: &str) -> BoxResult<Option<String>> {
    match env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_string())),
        Err(env::VarError::NotPresent) => Ok(None),
        Err(env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8").into()),
    }
}

/// Parses `123`, `64k`, `8M`, `1G` (binary multiples).
pub fn parse_size(name: &str, raw: &str) -> BoxResult<u64> {
    let s = raw.trim().replace('_', "");
    let (digits, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1u64 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1u64 << 30),
        _ => (&s[..], 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{name}={raw:?} is not a number (examples: 1000, 64k, 8M)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{name}={raw:?} is too large").into())
}

pub fn env_size(name: &str, default: u64) -> BoxResult<u64> {
    match env_string(name)? {
        None => Ok(default),
        Some(v) => parse_size(name, &v),
    }
}

/// A count: like a size (`10k` accepted), at least `min`.
fn env_count(name: &str, default: usize, min: usize) -> BoxResult<usize> {
    let n = env_size(name, default as u64)?;
    let n = usize::try_from(n).map_err(|_| format!("{name} is too large"))?;
    if n < min {
        return Err(format!("{name} must be at least {min}").into());
    }
    Ok(n)
}

/// Entry counts for `metadata`: `LOCKBOX_PERF_METADATA_SIZES` (comma-separated),
/// default 10,000 and 100,000 (1,000,000 is opt-in).
fn metadata_sizes() -> BoxResult<Vec<usize>> {
    match env_string("LOCKBOX_PERF_METADATA_SIZES")? {
        Some(v) => v
            .split(',')
            .map(|x| {
                x.trim()
                    .replace('_', "")
                    .parse::<usize>()
                    .map_err(|e| format!("LOCKBOX_PERF_METADATA_SIZES: {x:?}: {e}").into())
            })
            .collect(),
        None => Ok(vec![10_000, 100_000]),
    }
}

impl Config {
    pub fn from_env() -> BoxResult<Config> {
        let accepted = || {
            let mut names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
            names.push("all");
            names.join(", ")
        };
        let (scenario_label, scenarios) = match env_string("LOCKBOX_PERF_SCENARIO")? {
            None => (
                format!("default ({})", DEFAULT_SCENARIOS.join(" + ")),
                DEFAULT_SCENARIOS
                    .iter()
                    .map(|n| {
                        SCENARIOS
                            .iter()
                            .find(|s| s.name == *n)
                            .expect("default scenario exists")
                    })
                    .collect(),
            ),
            Some(v) if v == "all" => ("all".to_string(), SCENARIOS.iter().collect()),
            Some(v) => match SCENARIOS.iter().find(|s| s.name == v) {
                Some(s) => (v.clone(), vec![s]),
                None => {
                    return Err(format!(
                        "unknown LOCKBOX_PERF_SCENARIO={v:?}: this version accepts {}",
                        accepted()
                    )
                    .into());
                }
            },
        };
        let backend = match env_string("LOCKBOX_PERF_BACKEND")?.as_deref() {
            None | Some("file") => Backend::File,
            Some("memory") => Backend::Memory,
            Some(other) => {
                return Err(format!(
                    "unknown LOCKBOX_PERF_BACKEND={other:?}: expected file or memory"
                )
                .into());
            }
        };
        let pattern = match env_string("LOCKBOX_PERF_PATTERN")?.as_deref() {
            None | Some("text") => Pattern::Text,
            Some("randomish") => Pattern::Randomish,
            Some("zero") => Pattern::Zero,
            Some(other) => {
                return Err(format!(
                    "unknown LOCKBOX_PERF_PATTERN={other:?}: expected text, randomish or zero"
                )
                .into());
            }
        };
        let extract = match env_string("LOCKBOX_PERF_EXTRACT")?.as_deref() {
            None => Extract::Both,
            Some("directory") => Extract::Directory,
            Some("memory") => Extract::Memory,
            Some(other) => {
                return Err(format!(
                    "unknown LOCKBOX_PERF_EXTRACT={other:?}: expected directory or memory"
                )
                .into());
            }
        };
        let extract_repeat = env_count("LOCKBOX_PERF_EXTRACT_REPEAT", 1, 1)?;
        let import_repeat = env_count("LOCKBOX_PERF_IMPORT_REPEAT", 1, 1)?;
        let files_set = match env_string("LOCKBOX_PERF_FILES")? {
            None => None,
            Some(v) => Some(parse_size("LOCKBOX_PERF_FILES", &v)?),
        };
        let files = files_set.unwrap_or(10_000);
        let file_bytes = env_size("LOCKBOX_PERF_FILE_BYTES", 1024)?;
        let large_bytes = env_size("LOCKBOX_PERF_LARGE_BYTES", 256 << 20)?;
        if files == 0 {
            return Err("LOCKBOX_PERF_FILES must be at least 1".into());
        }
        if file_bytes > (64 << 20) {
            return Err(
                "LOCKBOX_PERF_FILE_BYTES above 64 MiB is not a small file; use the large scenario"
                    .into(),
            );
        }
        let files = usize::try_from(files).map_err(|_| "LOCKBOX_PERF_FILES is too large")?;
        let peers = match env_string("LOCKBOX_PERF_PEERS")?.as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => {
                return Err(
                    format!("unknown LOCKBOX_PERF_PEERS={other:?}: expected 0 or 1").into(),
                );
            }
        };
        let source = env_string("LOCKBOX_PERF_SOURCE")?.map(PathBuf::from);
        if let Some(s) = &source
            && !s.is_dir()
        {
            return Err(format!("LOCKBOX_PERF_SOURCE={} is not a directory", s.display()).into());
        }
        Ok(Config {
            scenario_label,
            scenarios,
            backend,
            files,
            files_set: files_set.map(|_| files),
            file_bytes: file_bytes as usize,
            large_bytes,
            pattern,
            dir: env_string("LOCKBOX_PERF_DIR")?.map(PathBuf::from),
            json: env_string("LOCKBOX_PERF_JSON")?.map(PathBuf::from),
            peers,
            extract,
            extract_repeat,
            import_repeat,
            source,
            initial_files: env_count("LOCKBOX_PERF_INITIAL_FILES", 10_000, 1)?,
            append_files: env_count("LOCKBOX_PERF_APPEND_FILES", 1_000, 1)?,
            rounds: env_count("LOCKBOX_PERF_ROUNDS", 10, 1)?,
            metadata_sizes: metadata_sizes()?,
        })
    }

    /// Files of the generated tree.
    pub fn tree_files(&self) -> usize {
        self.files_set.unwrap_or(TREE_DEFAULT_FILES)
    }
}
