//! Where the lockbox lives, and the scripted and random workload of the
//! marker scenarios.

use super::*;

// ---------------------------------------------------------------------------
// Where the lockbox lives
// ---------------------------------------------------------------------------

pub enum Place {
    File(#[allow(dead_code)] tempfile::TempDir, PathBuf),
    Memory,
}

pub struct Subject {
    pub place: Place,
    pub builder: Builder,
    pub lb: Option<Lockbox>,
}

impl Subject {
    pub fn new(file: bool, builder: Builder) -> Subject {
        if file {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("redact.lbox");
            let lb = builder.clone().create(&path, raw_key(7)).unwrap();
            Subject {
                place: Place::File(dir, path),
                builder,
                lb: Some(lb),
            }
        } else {
            let lb = builder.clone().create_in_memory(raw_key(7)).unwrap();
            Subject {
                place: Place::Memory,
                builder,
                lb: Some(lb),
            }
        }
    }

    pub fn lb(&mut self) -> &mut Lockbox {
        self.lb.as_mut().unwrap()
    }

    pub fn raw(&self) -> Vec<u8> {
        match &self.place {
            Place::File(_, p) => std::fs::read(p).unwrap(),
            Place::Memory => {
                // image() is the committed bytes: the whole store after a
                // commit trims the file (checked against file_len).
                self.lb.as_ref().unwrap().image().unwrap()
            }
        }
    }

    pub fn reopen(&mut self) {
        let lb = self.lb.take().unwrap();
        let b = self.builder.clone();
        self.lb = Some(match &self.place {
            Place::File(_, p) => {
                drop(lb);
                b.open(p, raw_key(7)).unwrap()
            }
            Place::Memory => {
                let img = lb.image().unwrap();
                drop(lb);
                b.open_bytes(img, raw_key(7)).unwrap()
            }
        });
    }

    pub fn check(&mut self, w: &World, label: &str, t: &mut Tally) {
        let raw = self.raw();
        check(self.lb.as_ref().unwrap(), w, &raw, label, t);
    }
}

// ---------------------------------------------------------------------------
// The scripted and random workload
// ---------------------------------------------------------------------------

/// Builds the first commit: every storage kind, shared packs, symlinks,
/// variables of every size, an explicit directory.
pub fn populate(w: &mut World, lb: &mut Lockbox) {
    let da = w.name("d");
    let db = w.name("d");
    let sub = w.name("s");
    let dirs = [da.clone(), db.clone(), format!("{da}/{sub}")];
    for i in 0..36 {
        let d = dirs[i % 3].clone();
        let f = w.name("f");
        w.put_at(lb, &format!("{d}/{f}"), Size::Small);
    }
    for i in 0..6 {
        let d = dirs[i % 3].clone();
        let f = w.name("f");
        w.put_at(lb, &format!("{d}/{f}"), Size::Tiny);
    }
    for i in 0..5 {
        let d = dirs[i % 3].clone();
        let f = w.name("f");
        w.put_at(lb, &format!("{d}/{f}"), Size::Large);
    }
    for i in 0..5 {
        let d = dirs[i % 3].clone();
        let l = w.name("l");
        w.symlink(lb, Some(format!("{d}/{l}")));
    }
    w.mkdir(lb);
    for s in [
        Size::Tiny,
        Size::Tiny,
        Size::Tiny,
        Size::Small,
        Size::Small,
        Size::Small,
        Size::Large,
        Size::Large,
    ] {
        w.set_var(lb, None, s);
    }
}

/// Every kind of removal of committed data, in one commit.
pub fn remove_some(w: &mut World, lb: &mut Lockbox) {
    let small = w.staged.files_where(|l| (200..=20 * 1024).contains(&l));
    // a third of the small (packed) files: their packs keep other members
    for p in small.iter().step_by(3) {
        w.delete(lb, p);
    }
    // overwrite some, rename some (old names must vanish)
    for p in small.iter().skip(1).step_by(6) {
        w.put_at(lb, p, Size::Small);
    }
    for p in small.iter().skip(2).step_by(6) {
        w.rename(lb, p);
    }
    let large = w.staged.files_where(|l| l > FRAME);
    w.delete(lb, &large[0]);
    w.put_at(lb, &large[1], Size::Large);
    w.rename(lb, &large[2]);
    w.put_at(lb, &large[3], Size::Small); // framed -> packed
    let tiny = w.staged.files_where(|l| l <= 128);
    w.delete(lb, &tiny[0]);
    w.rename(lb, &tiny[1]);
    let links = w.staged.links();
    w.delete(lb, &links[0]);
    w.symlink(lb, Some(links[1].clone()));
    w.rename(lb, &links[2]);
    let explicit: Vec<String> = w
        .staged
        .entries
        .iter()
        .filter(|(_, n)| matches!(n, Node::Dir))
        .map(|(k, _)| k.clone())
        .collect();
    w.rename(lb, &explicit[0]);
    // variables: remove, and replace moving between storage kinds
    let vars: Vec<(String, usize)> = w
        .staged
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), v.len()))
        .collect();
    let by = |lo: usize, hi: usize| -> Vec<String> {
        vars.iter()
            .filter(|(_, l)| (lo..=hi).contains(l))
            .map(|(k, _)| k.clone())
            .collect()
    };
    let (tv, sv, lv) = (by(0, 128), by(129, 20 * 1024), by(FRAME, usize::MAX));
    w.remove_var(lb, &tv[0]);
    w.remove_var(lb, &sv[0]);
    w.remove_var(lb, &lv[0]);
    w.set_var(lb, Some(tv[1].clone()), Size::Small);
    w.set_var(lb, Some(sv[1].clone()), Size::Large);
    w.set_var(lb, Some(lv[1].clone()), Size::Tiny);
    w.set_var(lb, Some(tv[2].clone()), Size::Tiny);
    w.set_var(lb, Some(sv[2].clone()), Size::Small);
}

/// Changes undone inside one session: nothing of them may reach the file.
pub fn session_churn(w: &mut World, lb: &mut Lockbox) {
    let d = w.name("d");
    let mut fresh = Vec::new();
    // more than one pack's worth, so the first pack is written mid-session
    for _ in 0..14 {
        let f = w.name("f");
        let p = format!("{d}/{f}");
        w.put_at(lb, &p, Size::Small);
        fresh.push(p);
    }
    for p in fresh.iter().step_by(2) {
        w.delete(lb, p);
    }
    // renamed then deleted
    let p = w.rename(lb, &fresh[1]);
    w.delete(lb, &p);
    // large put then deleted; large put then overwritten by a small one
    let p = w.put(lb, Size::Large);
    w.delete(lb, &p);
    let p = w.put(lb, Size::Large);
    w.put_at(lb, &p, Size::Small);
    // small put then overwritten twice
    let p = w.put(lb, Size::Small);
    w.put_at(lb, &p, Size::Small);
    w.put_at(lb, &p, Size::Tiny);
    // overwrite a committed file twice in the session
    if let Some(p) = w.pick_file(|l| l > 128) {
        w.put_at(lb, &p, Size::Large);
        w.put_at(lb, &p, Size::Small);
    }
    // variables set and removed, set twice
    let n = w.set_var(lb, None, Size::Small);
    w.remove_var(lb, &n);
    let n = w.set_var(lb, None, Size::Large);
    w.remove_var(lb, &n);
    let n = w.set_var(lb, None, Size::Small);
    w.set_var(lb, Some(n), Size::Tiny);
    // a symlink created and deleted
    let l = w.symlink(lb, None);
    w.delete(lb, &l);
}

pub fn staged_then_rolled_back(w: &mut World, lb: &mut Lockbox) {
    for _ in 0..6 {
        w.put(lb, Size::Small);
    }
    w.put(lb, Size::Large);
    w.put(lb, Size::Large);
    w.set_var(lb, None, Size::Small);
    w.symlink(lb, None);
    if let Some(p) = w.pick_file(|_| true) {
        w.delete(lb, &p);
    }
    if let Some(p) = w.pick_file(|_| true) {
        w.rename(lb, &p);
    }
    if let Some(n) = w.pick_var() {
        w.set_var(lb, Some(n), Size::Small);
    }
    w.rollback(lb);
}

pub fn run_scenario(label: &str, seed: u64, file: bool, builder: Builder, rounds: usize) {
    let started = Instant::now();
    let mut t = Tally::default();
    let mut w = World::new(seed);
    let mut s = Subject::new(file, builder);

    populate(&mut w, s.lb());
    w.commit(s.lb());
    t.commits += 1;
    s.check(&w, &format!("{label}: first commit"), &mut t);

    remove_some(&mut w, s.lb());
    w.commit(s.lb());
    t.commits += 1;
    s.check(&w, &format!("{label}: removals"), &mut t);

    session_churn(&mut w, s.lb());
    w.commit(s.lb());
    t.commits += 1;
    s.check(&w, &format!("{label}: session churn"), &mut t);

    staged_then_rolled_back(&mut w, s.lb());
    s.check(&w, &format!("{label}: after rollback"), &mut t);

    // a whole directory subtree
    let dirs = w.committed.dirs();
    let top = dirs.iter().find(|d| !d.contains('/')).unwrap().clone();
    w.delete(s.lb(), &top);
    w.commit(s.lb());
    t.commits += 1;
    s.check(&w, &format!("{label}: directory deleted"), &mut t);

    s.reopen();
    s.check(&w, &format!("{label}: reopened"), &mut t);

    for round in 0..rounds {
        if round % 4 == 3 {
            for _ in 0..w.rng.range(2, 8) {
                w.random_op(s.lb());
            }
            w.rollback(s.lb());
            s.check(&w, &format!("{label}: round {round} rollback"), &mut t);
        }
        for _ in 0..w.rng.range(4, 16) {
            w.random_op(s.lb());
        }
        w.commit(s.lb());
        t.commits += 1;
        s.check(&w, &format!("{label}: round {round}"), &mut t);
        if round % 3 == 2 {
            s.reopen();
            s.check(&w, &format!("{label}: round {round} reopened"), &mut t);
        }
    }

    // everything goes
    w.delete(s.lb(), "");
    for n in w.staged.vars.keys().cloned().collect::<Vec<_>>() {
        w.remove_var(s.lb(), &n);
    }
    w.commit(s.lb());
    t.commits += 1;
    s.check(&w, &format!("{label}: everything deleted"), &mut t);

    // One more commit: the space the last one freed (pending in its
    // redaction list, so not checked by inspect() yet) becomes free space,
    // which must be all zeros.
    w.set_var(s.lb(), None, Size::Tiny);
    w.commit(s.lb());
    t.commits += 1;
    s.check(&w, &format!("{label}: one more commit"), &mut t);
    s.reopen();
    s.check(&w, &format!("{label}: final reopen"), &mut t);

    eprintln!(
        "[redaction] {label}: {} markers written, {} commits, {} checks; \
         {} dead-marker and {} live-marker checks; {:.1} MiB of plaintext scanned; \
         {} violation(s); {:.1?}",
        w.markers.len(),
        t.commits,
        t.checks,
        t.dead_checked,
        t.live_checked,
        t.plaintext_bytes as f64 / (1 << 20) as f64,
        t.violations.len(),
        started.elapsed()
    );
    t.finish(label);
}
