//! Groups crash inputs by where they panic: `cargo run --example triage --
//! <target> <file-or-dir>...` (debug build: overflow checks on, as with
//! `cargo fuzz run -a`). Prints one line per distinct panic location and
//! message prefix, with a count and the smallest input.

use std::collections::BTreeMap;
use std::sync::Mutex;

static LAST: Mutex<String> = Mutex::new(String::new());

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("target");
    if target == "--one" {
        return one(args.next().unwrap(), args.next().unwrap());
    }
    let run: fn(&[u8]) = match target.as_str() {
        "open_untrusted" => lockbox_fuzz::drivers::open_untrusted,
        "page_plaintext" => lockbox_fuzz::drivers::page_plaintext,
        "ops_model" => lockbox_fuzz::drivers::ops_model,
        "extract_paths" => lockbox_fuzz::drivers::extract_paths,
        t => panic!("unknown target {t}"),
    };
    let mut files = Vec::new();
    for a in args {
        let p = std::path::PathBuf::from(a);
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else {
            files.push(p);
        }
    }
    std::panic::set_hook(Box::new(|info| {
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let short: String = msg.chars().take(90).collect();
        *LAST.lock().unwrap() = format!("{loc}: {short}");
    }));
    let _ = run;
    let mut groups: BTreeMap<String, (usize, usize, String)> = BTreeMap::new();
    let mut ok = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        // Each input in a child process: some abort (allocation failure).
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--one", &target, &f.display().to_string()])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() && stdout.contains("PASS") {
            ok += 1;
            continue;
        }
        let key = stdout
            .lines()
            .find_map(|l| l.strip_prefix("PANIC "))
            .map(str::to_string)
            .or_else(|| {
                stderr
                    .lines()
                    .find(|l| l.contains("memory allocation"))
                    .map(|l| format!("ABORT: {}", l.replace(|c: char| c.is_ascii_digit(), "")))
            })
            .unwrap_or_else(|| {
                format!(
                    "ABORT {:?}: {}",
                    out.status,
                    stderr.lines().next().unwrap_or("")
                )
            });
        let e = groups.entry(key).or_insert((0, usize::MAX, String::new()));
        e.0 += 1;
        if data.len() < e.1 {
            e.1 = data.len();
            e.2 = f.display().to_string();
        }
    }
    println!("{} inputs, {ok} pass", files.len());
    let _ = &LAST;
    for (k, (n, len, f)) in groups {
        println!("{n:5} x {k}\n        smallest: {f} ({len} bytes)");
    }
}

fn one(target: String, file: String) {
    let run: fn(&[u8]) = match target.as_str() {
        "open_untrusted" => lockbox_fuzz::drivers::open_untrusted,
        "page_plaintext" => lockbox_fuzz::drivers::page_plaintext,
        "ops_model" => lockbox_fuzz::drivers::ops_model,
        _ => lockbox_fuzz::drivers::extract_paths,
    };
    std::panic::set_hook(Box::new(|info| {
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let short: String = msg.chars().take(100).collect();
        println!("PANIC {loc}: {short}");
    }));
    let data = std::fs::read(file).unwrap();
    if std::panic::catch_unwind(|| run(&data)).is_ok() {
        println!("PASS");
    }
}
