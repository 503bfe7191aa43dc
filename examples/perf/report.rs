//! The report: every scenario fills a `Section` with rows (one table for
//! humans), JSON pairs (`LOCKBOX_PERF_JSON`), fractions of the machine's
//! bounds and comparisons with the peers; `print_*` and `write_json` render
//! them once every scenario has run, so nothing is printed while a timed
//! phase runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::bounds::bound_threads;
use crate::config::Config;
use crate::peers::{PEERS, Peer};
use crate::rss::peak_rss_bytes;
use crate::units::{MIB, fmt_bytes, fmt_dur};

pub enum Json {
    B(bool),
    U(u64),
    F(f64),
    S(String),
}

pub struct Row {
    pub scenario: String,
    pub step: String,
    pub time: Option<Duration>,
    pub mib_s: Option<f64>,
    pub files_s: Option<f64>,
    /// Peak RSS during the step (timed steps only).
    pub rss: Option<u64>,
    pub detail: String,
}

/// Lockbox's rate for one figure against the machine's bound for that work.
pub struct Fraction {
    pub figure: String,
    pub lockbox_mib_s: f64,
    pub bound_mib_s: f64,
    pub bound: String,
}

/// One figure for lockbox and each peer: seconds (speed) or bytes (size).
pub struct Compare {
    pub figure: String,
    pub size: bool,
    pub lockbox: f64,
    pub peers: Vec<(Peer, f64)>,
}

impl Compare {
    /// Speed: peer time / lockbox time (> 1: lockbox faster).
    /// Size: lockbox bytes / peer bytes (< 1: lockbox smaller).
    pub fn ratio(&self, peer: f64) -> f64 {
        if self.size {
            self.lockbox / peer
        } else {
            peer / self.lockbox
        }
    }
}

pub struct Section {
    pub name: String,
    pub rows: Vec<Row>,
    pub json: Vec<(String, Json)>,
    pub fractions: Vec<Fraction>,
    pub compares: Vec<Compare>,
    /// Highest per-phase peak RSS of lockbox's phases in the scenario.
    pub max_rss: u64,
    /// The most one of lockbox's phases added over the resident size it
    /// began with.
    max_rss_added: u64,
    /// Whether timed phases are lockbox's (not the peers'): only those
    /// count toward `max_rss`.
    counting_rss: bool,
}

pub fn json_key(step: &str) -> String {
    let mut k = String::new();
    for c in step.chars() {
        if c.is_ascii_alphanumeric() {
            k.push(c.to_ascii_lowercase());
        } else if !k.ends_with('_') {
            k.push('_');
        }
    }
    k.trim_matches('_').to_string()
}

impl Section {
    pub fn new(name: &str) -> Section {
        Section {
            name: name.to_string(),
            rows: Vec::new(),
            json: Vec::new(),
            fractions: Vec::new(),
            compares: Vec::new(),
            max_rss: 0,
            max_rss_added: 0,
            counting_rss: true,
        }
    }

    /// The timed phases from here to `peers_end` are the peers': they do
    /// not count toward the scenario's peak RSS.
    pub fn peers_begin(&mut self) {
        self.counting_rss = false;
    }

    pub fn peers_end(&mut self) {
        self.counting_rss = true;
    }

    pub fn json_s(&mut self, key: &str, v: &str) {
        self.json.push((key.to_string(), Json::S(v.to_string())));
    }

    /// Lockbox's `lockbox_mib_s` for `figure` as a fraction of `bound_mib_s`.
    pub fn fraction(&mut self, figure: &str, lockbox_mib_s: f64, bound: &str, bound_mib_s: f64) {
        let k = json_key(figure);
        self.json_f(
            &format!("fraction_of_bound_{k}"),
            lockbox_mib_s / bound_mib_s,
        );
        self.json_f(&format!("bound_for_{k}_mib_s"), bound_mib_s);
        self.json_s(&format!("bound_for_{k}"), bound);
        self.fractions.push(Fraction {
            figure: figure.to_string(),
            lockbox_mib_s,
            bound_mib_s,
            bound: bound.to_string(),
        });
    }

    /// Lockbox against each peer for one figure (seconds, or bytes if `size`).
    pub fn compare(&mut self, figure: &str, size: bool, lockbox: f64, peers: Vec<(Peer, f64)>) {
        let c = Compare {
            figure: figure.to_string(),
            size,
            lockbox,
            peers,
        };
        let k = json_key(figure);
        for &(p, v) in &c.peers {
            self.json_f(&format!("ratio_{k}_vs_{}", p.key()), c.ratio(v));
        }
        self.compares.push(c);
    }

    /// A figure without a time, under an explicit step name and JSON key.
    pub fn fact_named(&mut self, step: &str, key: &str, v: u64, detail: String) {
        self.json_u(key, v);
        self.row(step, None, None, None, detail);
    }

    pub fn json_u(&mut self, key: &str, v: u64) {
        self.json.push((key.to_string(), Json::U(v)));
    }

    pub fn json_f(&mut self, key: &str, v: f64) {
        self.json.push((key.to_string(), Json::F(v)));
    }

    pub fn row(
        &mut self,
        step: &str,
        time: Option<Duration>,
        mib_s: Option<f64>,
        files_s: Option<f64>,
        detail: String,
    ) {
        self.rows.push(Row {
            scenario: self.name.clone(),
            step: step.to_string(),
            time,
            mib_s,
            files_s,
            rss: None,
            detail,
        });
    }

    /// A figure without a time.
    pub fn fact_u(&mut self, key: &str, v: u64, detail: String) {
        self.json_u(key, v);
        self.row(&key.replace('_', " "), None, None, None, detail);
    }

    /// A timed step; `bytes`/`files` give the MiB/s and files/s columns.
    /// Reads the peak RSS since the step's `clock()`.
    pub fn timed(
        &mut self,
        step: &str,
        d: Duration,
        bytes: Option<u64>,
        files: Option<u64>,
        detail: String,
    ) {
        let rss = peak_rss_bytes();
        self.timed_inner(step, d, bytes, files, detail, rss);
    }

    /// A figure computed from other steps (e.g. add + commit): no RSS of its own.
    pub fn derived(
        &mut self,
        step: &str,
        d: Duration,
        bytes: Option<u64>,
        files: Option<u64>,
        detail: String,
    ) {
        self.timed_inner(step, d, bytes, files, detail, None);
    }

    pub fn timed_inner(
        &mut self,
        step: &str,
        d: Duration,
        bytes: Option<u64>,
        files: Option<u64>,
        detail: String,
        rss: Option<u64>,
    ) {
        let secs = d.as_secs_f64();
        let rate = |x: u64| {
            if secs > 0.0 {
                Some(x as f64 / secs)
            } else {
                None
            }
        };
        let mib_s = bytes.and_then(rate).map(|b| b / MIB);
        let files_s = files.and_then(rate);
        let k = json_key(step);
        self.json_f(&format!("{k}_s"), secs);
        if let Some(m) = mib_s {
            self.json_f(&format!("{k}_mib_s"), m);
        }
        if let Some(f) = files_s {
            self.json_f(&format!("{k}_files_s"), f);
        }
        if let Some(r) = rss {
            self.json_u(&format!("{k}_peak_rss_bytes"), r);
            if self.counting_rss {
                self.max_rss = self.max_rss.max(r);
                let added = r.saturating_sub(crate::rss::phase_start_rss());
                self.max_rss_added = self.max_rss_added.max(added);
            }
        }
        self.row(step, Some(d), mib_s, files_s, detail);
        if let Some(last) = self.rows.last_mut() {
            last.rss = rss;
        }
    }

    pub fn size(&mut self, stored: u64, logical: u64) {
        let ratio = if logical > 0 {
            stored as f64 / logical as f64
        } else {
            f64::NAN
        };
        self.json_u("lockbox_bytes", stored);
        self.json_f("size_ratio", ratio);
        self.row(
            "lockbox bytes",
            None,
            None,
            None,
            format!(
                "{} ({stored} B), ratio lockbox/logical {ratio:.3}",
                fmt_bytes(stored)
            ),
        );
    }

    /// The scenario's peak RSS: the highest of lockbox's timed phases so
    /// far (the peers' phases, between `peers_begin` and `peers_end`, do
    /// not count), and the most one of them added over what the process
    /// held when it began.
    pub fn peak_rss(&mut self) {
        let b = self.max_rss;
        if b > 0 {
            self.json_u("peak_rss_bytes", b);
            self.json_u("peak_rss_added_bytes", self.max_rss_added);
            self.row(
                "peak RSS",
                None,
                None,
                None,
                format!(
                    "{} (highest lockbox phase; the most a lockbox phase added over the process's size when it began: {})",
                    fmt_bytes(b),
                    fmt_bytes(self.max_rss_added)
                ),
            );
        } else {
            self.row("peak RSS", None, None, None, "unavailable".into());
        }
    }
}

/// Prints a table: columns in `right` are right-aligned; a blank line
/// separates groups (rows whose first cell differs from the row above).
pub fn print_grid(head: &[&str], right: &[usize], cells: &[Vec<String>]) {
    let cols = head.len();
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for c in cells {
        for i in 0..cols {
            w[i] = w[i].max(c[i].chars().count());
        }
    }
    let line = |c: &[String]| {
        let mut s = String::new();
        for i in 0..cols {
            let pad = w[i] - c[i].chars().count();
            if right.contains(&i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(&c[i]);
            } else {
                s.push_str(&c[i]);
                if i + 1 < cols {
                    s.push_str(&" ".repeat(pad));
                }
            }
            if i + 1 < cols {
                s.push_str("  ");
            }
        }
        println!("{}", s.trim_end());
    };
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    line(&head);
    println!("{}", "-".repeat(w.iter().sum::<usize>() + 2 * (cols - 1)));
    let mut last: Option<&String> = None;
    for c in cells {
        if last.is_some() && last != Some(&c[0]) {
            println!();
        }
        last = Some(&c[0]);
        line(c);
    }
}

pub fn print_table(sections: &[Section]) {
    let head = [
        "scenario", "step", "time", "MiB/s", "files/s", "peak RSS", "detail",
    ];
    let mut cells = Vec::new();
    for s in sections {
        for r in &s.rows {
            cells.push(vec![
                r.scenario.clone(),
                r.step.clone(),
                r.time.map(fmt_dur).unwrap_or_default(),
                r.mib_s.map(|m| format!("{m:.1}")).unwrap_or_default(),
                r.files_s.map(|f| format!("{f:.0}")).unwrap_or_default(),
                r.rss.map(fmt_bytes).unwrap_or_default(),
                r.detail.clone(),
            ]);
        }
    }
    print_grid(&head, &[2, 3, 4, 5], &cells);
}

pub fn print_fractions(sections: &[Section]) {
    let mut cells = Vec::new();
    for s in sections {
        for f in &s.fractions {
            cells.push(vec![
                s.name.clone(),
                f.figure.clone(),
                format!("{:.1}", f.lockbox_mib_s),
                format!("{:.1}", f.bound_mib_s),
                format!("{:.1} %", 100.0 * f.lockbox_mib_s / f.bound_mib_s),
                f.bound.clone(),
            ]);
        }
    }
    if cells.is_empty() {
        return;
    }
    println!();
    println!(
        "lockbox as a fraction of this machine's bound for the same work (measured in this run):"
    );
    print_grid(
        &[
            "scenario",
            "figure",
            "lockbox MiB/s",
            "bound MiB/s",
            "fraction",
            "bound (slowest stage)",
        ],
        &[2, 3, 4],
        &cells,
    );
}

pub fn print_compares(sections: &[Section]) {
    let mut cells = Vec::new();
    for s in sections {
        for c in &s.compares {
            let show = |v: f64| {
                if c.size {
                    fmt_bytes(v as u64)
                } else {
                    fmt_dur(Duration::from_secs_f64(v))
                }
            };
            let mut row = vec![s.name.clone(), c.figure.clone(), show(c.lockbox)];
            for p in PEERS {
                match c.peers.iter().find(|(q, _)| *q == p) {
                    Some(&(_, v)) => {
                        row.push(show(v));
                        row.push(format!("{:.2}", c.ratio(v)));
                    }
                    None => {
                        row.push(String::new());
                        row.push(String::new());
                    }
                }
            }
            cells.push(row);
        }
    }
    if cells.is_empty() {
        return;
    }
    println!();
    println!(
        "lockbox vs peers (time: ratio = peer time / lockbox time, > 1 means lockbox is faster; \
         bytes: ratio = lockbox bytes / peer bytes, < 1 means lockbox is smaller):"
    );
    let mut head = vec!["scenario", "figure", "lockbox"];
    for p in PEERS {
        head.push(p.name());
        head.push("ratio");
    }
    print_grid(&head, &[2, 3, 4, 5, 6, 7, 8], &cells);
}

pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

pub fn json_val(v: &Json) -> String {
    match v {
        Json::U(u) => u.to_string(),
        Json::F(f) if f.is_finite() => format!("{f}"),
        Json::B(b) => b.to_string(),
        Json::F(_) => "null".into(),
        Json::S(s) => json_str(s),
    }
}

pub fn json_object(pairs: &[(String, Json)], indent: &str) -> String {
    // Later duplicates of a key win; keep first-seen order.
    let mut order: Vec<&str> = Vec::new();
    let mut map: BTreeMap<&str, &Json> = BTreeMap::new();
    for (k, v) in pairs {
        if map.insert(k.as_str(), v).is_none() {
            order.push(k.as_str());
        }
    }
    let mut o = String::from("{\n");
    for (i, k) in order.iter().enumerate() {
        let _ = write!(o, "{indent}  {}: {}", json_str(k), json_val(map[k]));
        o.push_str(if i + 1 < order.len() { ",\n" } else { "\n" });
    }
    o.push_str(indent);
    o.push('}');
    o
}

pub fn write_json(
    path: &Path,
    cfg: &Config,
    sections: &[Section],
    total: Duration,
) -> io::Result<()> {
    let config = vec![
        ("scenario".to_string(), Json::S(cfg.scenario_label.clone())),
        ("backend".to_string(), Json::S(cfg.backend.name().into())),
        ("pattern".to_string(), Json::S(cfg.pattern.name().into())),
        ("files".to_string(), Json::U(cfg.files as u64)),
        ("file_bytes".to_string(), Json::U(cfg.file_bytes as u64)),
        ("large_bytes".to_string(), Json::U(cfg.large_bytes)),
        ("peers".to_string(), Json::B(cfg.peers)),
        ("threads".to_string(), Json::U(bound_threads() as u64)),
        ("extract".to_string(), Json::S(cfg.extract.name().into())),
        (
            "extract_repeat".to_string(),
            Json::U(cfg.extract_repeat as u64),
        ),
        ("tree_files".to_string(), Json::U(cfg.tree_files() as u64)),
        (
            "source".to_string(),
            match &cfg.source {
                Some(p) => Json::S(p.display().to_string()),
                None => Json::S("generated".into()),
            },
        ),
        (
            "initial_files".to_string(),
            Json::U(cfg.initial_files as u64),
        ),
        ("append_files".to_string(), Json::U(cfg.append_files as u64)),
        ("rounds".to_string(), Json::U(cfg.rounds as u64)),
        ("release".to_string(), Json::B(!cfg!(debug_assertions))),
        (
            "lockbox_version".to_string(),
            Json::S(env!("CARGO_PKG_VERSION").into()),
        ),
    ];
    let mut o = String::from("{\n");
    let _ = writeln!(o, "  \"config\": {},", json_object(&config, "  "));
    o.push_str("  \"scenarios\": {\n");
    for (i, s) in sections.iter().enumerate() {
        let _ = write!(
            o,
            "    {}: {}",
            json_str(&s.name),
            json_object(&s.json, "    ")
        );
        o.push_str(if i + 1 < sections.len() { ",\n" } else { "\n" });
    }
    o.push_str("  },\n");
    let _ = writeln!(
        o,
        "  \"total_s\": {}",
        json_val(&Json::F(total.as_secs_f64()))
    );
    o.push_str("}\n");
    fs::write(path, o)
}
