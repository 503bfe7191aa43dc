//! Source trees for the `tree` scenario: a deterministic, generated
//! source-like tree (when `LOCKBOX_PERF_SOURCE` is not set), a manifest of
//! any tree (what `add_path` will store, walked in the same depth-first name
//! order) and the check of an extracted tree against that manifest.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::BoxResult;
use crate::datagen::{Pattern, Rng, WORDS};
use crate::peers::make_symlink;

/// Shape of the generated tree. Sizes: most files 200 B..20 KiB, skewed
/// towards the small end (source files, configs, docs); a long tail up to
/// 1 MiB (generated code, data, lock files); some empty files
/// (`__init__.py`, `.gitkeep`); about 12 files per directory on average, the
/// directories nested as a random recursive tree (each one's parent drawn
/// among the directories made before it, so depth grows like log n, about
/// 5 to 7 levels for a few thousand files); one symlink per 100 files.
const FILES_PER_DIR: usize = 12;
const MIN_SIZE: f64 = 200.0;
const MAX_SIZE: f64 = 20.0 * 1024.0;
const TAIL_MAX: f64 = 1024.0 * 1024.0;
/// Per mille of files: empty, and in the long tail.
const EMPTY_PERMILLE: u64 = 20;
const TAIL_PERMILLE: u64 = 10;
const SYMLINK_EVERY: usize = 100;
const EXTENSIONS: &[&str] = &[
    "rs", "rs", "rs", "c", "h", "py", "py", "js", "ts", "md", "txt", "toml", "json", "yaml",
];

/// What the generator made.
pub struct Generated {
    pub files: usize,
    pub dirs: usize,
    pub symlinks: usize,
}

/// Writes a source-like tree of `files` regular files (plus directories and
/// symlinks) under `root`, which must not exist. Deterministic in `seed`
/// and `pattern`.
pub fn generate(root: &Path, files: usize, pattern: Pattern, seed: u64) -> io::Result<Generated> {
    let mut rng = Rng::new(seed);
    let word = |rng: &mut Rng| WORDS[rng.below(WORDS.len() as u64) as usize];

    // Directories: 0 is the root; i > 0 hangs under one made before it.
    let ndirs = (files / FILES_PER_DIR).max(1);
    let mut dirs: Vec<PathBuf> = vec![root.to_path_buf()];
    fs::create_dir(root)?;
    for i in 1..ndirs {
        let parent = rng.below(i as u64) as usize;
        let d = dirs[parent].join(format!("{}{i}", word(&mut rng)));
        fs::create_dir(&d)?;
        dirs.push(d);
    }

    // Files: a directory, a name, a size, then the bytes.
    let mut buf = Vec::new();
    let mut placed: Vec<(usize, String)> = Vec::with_capacity(files);
    for j in 0..files {
        let dir = rng.below(ndirs as u64) as usize;
        let ext = EXTENSIONS[rng.below(EXTENSIONS.len() as u64) as usize];
        let name = format!("{}_{j}.{ext}", word(&mut rng));
        let class = rng.below(1000);
        let len = if class < EMPTY_PERMILLE {
            0
        } else if class < EMPTY_PERMILLE + TAIL_PERMILLE {
            log_uniform(&mut rng, MAX_SIZE, TAIL_MAX, false)
        } else {
            log_uniform(&mut rng, MIN_SIZE, MAX_SIZE, true)
        };
        buf.resize(len, 0);
        pattern.fill(
            seed ^ (j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            &mut buf,
        );
        fs::write(dirs[dir].join(&name), &buf)?;
        placed.push((dir, name));
    }

    // Symlinks to a file in the same directory (relative, so they stay
    // inside any destination and extraction's default rules accept them).
    let mut symlinks = 0;
    if !placed.is_empty() {
        for k in 0..files / SYMLINK_EVERY {
            let (dir, name) = &placed[rng.below(placed.len() as u64) as usize];
            make_symlink(name, &dirs[*dir].join(format!("link{k}_{name}")))?;
            symlinks += 1;
        }
    }
    Ok(Generated {
        files,
        dirs: ndirs - 1,
        symlinks,
    })
}

/// A size between `lo` and `hi`, uniform in log scale; `skew` draws the
/// exponent as the smaller of two uniforms, which favours small sizes.
fn log_uniform(rng: &mut Rng, lo: f64, hi: f64, skew: bool) -> usize {
    let u = |rng: &mut Rng| rng.next() as f64 / u64::MAX as f64;
    let x = if skew { u(rng).min(u(rng)) } else { u(rng) };
    (lo * (hi / lo).powf(x)) as usize
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(PathBuf),
}

/// One entry of a tree, relative to its root with `/` separators.
#[derive(Clone, Debug)]
pub struct Item {
    pub rel: String,
    pub kind: Kind,
    pub len: u64,
}

/// What a tree holds, in depth-first name order (the order `add_path`
/// walks and packs it), with a checksum of every file byte.
pub struct Manifest {
    pub root: PathBuf,
    pub items: Vec<Item>,
    /// Wrapping sum of every byte of every file (see `byte_sum`).
    pub byte_sum: u64,
    /// Entries `add_path` cannot store (special files, non-UTF-8 names):
    /// left out of the manifest.
    pub unsupported: Vec<PathBuf>,
}

impl Manifest {
    pub fn files(&self) -> u64 {
        self.count(|k| matches!(k, Kind::File))
    }
    pub fn dirs(&self) -> u64 {
        self.count(|k| matches!(k, Kind::Dir))
    }
    pub fn symlinks(&self) -> u64 {
        self.count(|k| matches!(k, Kind::Symlink(_)))
    }
    pub fn bytes(&self) -> u64 {
        self.items.iter().map(|i| i.len).sum()
    }
    fn count(&self, f: impl Fn(&Kind) -> bool) -> u64 {
        self.items.iter().filter(|i| f(&i.kind)).count() as u64
    }
    /// The regular files: relative paths and sizes.
    pub fn file_list(&self) -> (Vec<String>, Vec<u64>) {
        self.items
            .iter()
            .filter(|i| i.kind == Kind::File)
            .map(|i| (i.rel.clone(), i.len))
            .unzip()
    }
    /// Drops `path` (a source path) and anything below it: what `add_path`
    /// reported as skipped.
    pub fn drop_skipped(&mut self, path: &Path) -> BoxResult<()> {
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return Ok(());
        };
        let rel = rel.to_str().ok_or("non-UTF-8 skipped path")?.to_string();
        let below = format!("{rel}/");
        let mut sum = 0u64;
        self.items.retain(|i| {
            let drop = i.rel == rel || i.rel.starts_with(&below);
            if drop && i.kind == Kind::File {
                // Its bytes leave the checksum too (re-read; if it cannot be
                // read, `scan` could not read it either and never added them).
                if let Ok(b) = fs::read(self.root.join(&i.rel)) {
                    sum = sum.wrapping_add(byte_sum(&b));
                }
            }
            !drop
        });
        self.byte_sum = self.byte_sum.wrapping_sub(sum);
        Ok(())
    }
}

/// The checksum of the in-memory extraction: a wrapping sum of the bytes
/// read 8 at a time (cheap, so the callback stays close to free, but it
/// reads every byte).
pub fn byte_sum(b: &[u8]) -> u64 {
    let mut chunks = b.chunks_exact(8);
    let mut s = 0u64;
    for c in &mut chunks {
        s = s.wrapping_add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    for &x in chunks.remainder() {
        s = s.wrapping_add(u64::from(x));
    }
    s
}

/// Walks `root` (never following symlinks), reading every file once for the
/// checksum. Reading the source here also means the timed import reads it
/// from the page cache, as in `small` (whose source was just written).
pub fn scan(root: &Path) -> BoxResult<Manifest> {
    let mut m = Manifest {
        root: root.to_path_buf(),
        items: Vec::new(),
        byte_sum: 0,
        unsupported: Vec::new(),
    };
    let mut buf = Vec::new();
    walk(root, "", &mut m, &mut buf)?;
    Ok(m)
}

fn walk(dir: &Path, prefix: &str, m: &mut Manifest, buf: &mut Vec<u8>) -> BoxResult<()> {
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            m.unsupported.push(path);
            continue;
        };
        let rel = format!("{prefix}{name}");
        let ft = fs::symlink_metadata(&path)?.file_type();
        if ft.is_dir() {
            m.items.push(Item {
                rel: rel.clone(),
                kind: Kind::Dir,
                len: 0,
            });
            walk(&path, &format!("{rel}/"), m, buf)?;
        } else if ft.is_symlink() {
            m.items.push(Item {
                rel,
                kind: Kind::Symlink(fs::read_link(&path)?),
                len: 0,
            });
        } else if ft.is_file() {
            buf.clear();
            let len = match fs::File::open(&path).and_then(|mut f| f.read_to_end(buf)) {
                Ok(n) => {
                    m.byte_sum = m.byte_sum.wrapping_add(byte_sum(buf));
                    n as u64
                }
                // Unreadable: add_path will skip it too; keep it listed so
                // `drop_skipped` can match its report.
                Err(_) => 0,
            };
            m.items.push(Item {
                rel,
                kind: Kind::File,
                len,
            });
        } else {
            m.unsupported.push(path);
        }
    }
    Ok(())
}

/// Checks that `dest` holds every entry of `m` with the same kind, the same
/// bytes (files, compared with the source) and the same target (symlinks).
/// Untimed.
pub fn verify(m: &Manifest, dest: &Path, who: &str) -> BoxResult<()> {
    for i in &m.items {
        let got = dest.join(&i.rel);
        let meta = fs::symlink_metadata(&got).map_err(|e| format!("{who}: {}: {e}", i.rel))?;
        match &i.kind {
            Kind::Dir if meta.is_dir() => {}
            Kind::Symlink(t) if meta.file_type().is_symlink() => {
                let got_t = fs::read_link(&got)?;
                if got_t != *t {
                    return Err(format!(
                        "{who}: symlink {} points to {}, expected {}",
                        i.rel,
                        got_t.display(),
                        t.display()
                    )
                    .into());
                }
            }
            Kind::File if meta.is_file() => {
                if !same_bytes(&m.root.join(&i.rel), &got)? {
                    return Err(
                        format!("{who}: extracted {} differs from its source", i.rel).into(),
                    );
                }
            }
            k => {
                return Err(format!("{who}: {} is not a {k:?} in the extraction", i.rel).into());
            }
        }
    }
    Ok(())
}

/// Whether two files hold the same bytes, compared 1 MiB at a time (a real
/// source tree may hold files larger than memory).
fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    const CHUNK: usize = 1 << 20;
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        if read_full(&mut fb, &mut bb[..n])? != n || ba[..n] != bb[..n] {
            return Ok(false);
        }
        if n < CHUNK {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(f: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
