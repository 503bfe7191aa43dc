//! The check after every commit: markers in plaintexts, reconstructed keys
//! and raw bytes, unreachable bytes, commit slots, and the visible state.

use super::*;

// ---------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------

#[derive(Default)]
pub struct Tally {
    pub checks: u64,
    pub commits: u64,
    pub dead_checked: u64,
    pub live_checked: u64,
    pub plaintext_bytes: u64,
    /// Violations of (a)–(e), in order: the test fails at the end of the
    /// run if there is any, after reporting all of them (so one broken
    /// property does not hide another).
    pub violations: Vec<(char, String)>,
}

impl Tally {
    pub fn fail(&mut self, what: char, msg: String) {
        self.violations.push((what, msg));
    }

    /// Panics with every violation found (the first ones in full).
    pub fn finish(&self, label: &str) {
        if self.violations.is_empty() {
            return;
        }
        let mut by: BTreeMap<char, usize> = BTreeMap::new();
        for (c, _) in &self.violations {
            *by.entry(*c).or_default() += 1;
        }
        let mut firsts = String::new();
        let mut shown: BTreeMap<char, usize> = BTreeMap::new();
        for (c, m) in &self.violations {
            let n = shown.entry(*c).or_default();
            if *n < 2 {
                firsts.push_str(&format!("\n--- ({c}) ---\n{m}\n"));
            }
            *n += 1;
        }
        panic!(
            "[{label}] redaction properties violated at {} of {} checks; violations by property: {by:?}\n{firsts}",
            self.violations.len(),
            self.checks
        );
    }
}

/// Checks (a)–(e), `verify()` and the visible state against `w.committed`.
/// `raw` is the whole file as stored. `verify()`/`inspect()` errors and a
/// state differing from the reference panic at once; (a)–(e) violations are
/// recorded in `t` (see [`Tally::finish`]).
pub fn check(lb: &Lockbox, w: &World, raw: &[u8], label: &str, t: &mut Tally) {
    let ctx = || format!("[{label}] last ops:\n    {}", w.tail());
    let scanner = Scanner::new(&w.markers);

    // live markers: those the committed reference holds, by form
    let mut live: HashSet<(usize, Form)> = HashSet::new();
    for text in w.committed.texts() {
        scanner.scan(text, &mut live);
    }
    let live_ids: HashSet<usize> = live.iter().map(|(m, _)| *m).collect();

    if let Err(e) = lb.verify() {
        panic!("verify() failed: {e:?}\n{}", ctx());
    }
    let insp = lb
        .inspect()
        .unwrap_or_else(|e| panic!("inspect() failed: {e:?}\n{}", ctx()));

    // (a) and (e): scan every plaintext, and every reconstructed node key
    let mut found: HashSet<(usize, Form)> = HashSet::new();
    let mut where_found: BTreeMap<usize, String> = BTreeMap::new();
    for (i, pt) in insp.plaintexts.iter().enumerate() {
        t.plaintext_bytes += pt.len() as u64;
        let mut here = HashSet::new();
        scanner.scan(pt, &mut here);
        if let Some(keys) = node_keys(pt) {
            for k in keys {
                scanner.scan(&k, &mut here);
            }
        }
        for &(m, _) in &here {
            where_found
                .entry(m)
                .or_insert_with(|| format!("plaintext #{i} ({} bytes)", pt.len()));
        }
        found.extend(here);
    }
    let dead_found: Vec<String> = found
        .iter()
        .filter(|(m, _)| !live_ids.contains(m))
        .map(|&(m, f)| {
            format!(
                "{} ({f:?}, marker {}) in {}",
                w.what[m],
                hex(&w.markers[m]),
                where_found[&m]
            )
        })
        .collect();
    if !dead_found.is_empty() {
        t.fail(
            'a',
            format!(
                "(a) {} dead marker(s) still decrypt from the file: {:#?}\n{}",
                dead_found.len(),
                &dead_found[..dead_found.len().min(12)],
                ctx()
            ),
        );
    }
    let missing: Vec<String> = live
        .iter()
        .filter(|x| !found.contains(x))
        .map(|&(m, f)| format!("{} ({f:?})", w.what[m]))
        .collect();
    if !missing.is_empty() {
        t.fail(
            'e',
            format!(
                "(e) {} live marker(s) not found in the plaintexts (inspect() misses \
                 reachable data?): {:#?}\n{}",
                missing.len(),
                &missing[..missing.len().min(12)],
                ctx()
            ),
        );
    }

    // (b)
    if !insp.unreachable_nonzero.is_empty() {
        t.fail(
            'b',
            format!(
                "(b) unreachable non-zero bytes at {:?} (file_len {}, data_end {})\n{}",
                &insp.unreachable_nonzero[..insp.unreachable_nonzero.len().min(10)],
                insp.file_len,
                insp.data_end,
                ctx()
            ),
        );
    }
    // (c)
    let seq = lb.sequence();
    if insp.slot_sequences != [Some(seq), Some(seq)] {
        t.fail(
            'c',
            format!(
                "(c) commit slots hold {:?}, both must hold sequence {seq}\n{}",
                insp.slot_sequences,
                ctx()
            ),
        );
    }
    // (d)
    assert_eq!(
        raw.len() as u64,
        insp.file_len,
        "raw bytes and inspect() disagree on the file length\n{}",
        ctx()
    );
    let in_raw = scanner.find_offsets(raw);
    if !in_raw.is_empty() {
        t.fail(
            'd',
            format!(
                "(d) marker(s) in the raw file bytes: {:?}\n{}",
                in_raw
                    .iter()
                    .take(10)
                    .map(|&(o, m, f)| format!("{} ({f:?}) at byte {o}", w.what[m]))
                    .collect::<Vec<_>>(),
                ctx()
            ),
        );
    }

    // the visible state is the reference (so "live" means what we think)
    check_state(lb, &w.committed, &ctx());

    t.checks += 1;
    t.dead_checked += (w.markers.len() - live_ids.len()) as u64;
    t.live_checked += live_ids.len() as u64;
}

pub fn check_state(lb: &Lockbox, m: &Model, ctx: &str) {
    let s = snapshot(lb);
    let mut want_paths: Vec<&String> = m.entries.keys().collect();
    want_paths.sort();
    let mut got_paths: Vec<&String> = s.entries.iter().map(|e| &e.path).collect();
    got_paths.sort();
    assert_eq!(got_paths, want_paths, "listed paths differ\n{ctx}");
    for e in &s.entries {
        match &m.entries[&e.path] {
            Node::File(d) => assert!(
                s.files.get(&e.path) == Some(d),
                "{}: content differs from the reference\n{ctx}",
                e.path
            ),
            Node::Link(t) => assert_eq!(e.target.as_ref(), Some(t), "{}: target\n{ctx}", e.path),
            Node::Dir => assert_eq!(e.kind, lockbox::EntryKind::Dir, "{}\n{ctx}", e.path),
        }
    }
    assert_eq!(s.vars, m.vars, "variables differ\n{ctx}");
}
