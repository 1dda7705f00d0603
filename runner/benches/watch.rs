//! Watch-mode figures: `cargo bench -p runner --bench watch`.
//!
//! Prints, without asserting anything:
//! 1. change → first task start of the re-run, p50 and p99 over 50 changes
//!    (`RUNNER_BENCH_CHANGES`), for `runner watch` and, in the same run, for
//!    `entr` and `watchexec` when they are on PATH, each re-running the
//!    same command. The command writes a line into a FIFO this process
//!    reads, so "start" is when the command runs, the same for every tool;
//!    each tool's debounce is shown beside it.
//! 2. `runner watch` idle over a tree of 10,000 files
//!    (`RUNNER_BENCH_FILES`): how long until it watches, then its CPU
//!    (from `/proc/PID/stat`) and RSS (`/proc/PID/status`) over 10 s
//!    (`RUNNER_BENCH_IDLE_SECS`).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const RUNNER: &str = env!("CARGO_BIN_EXE_runner");
const DEBOUNCE_MS: u64 = 50;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// A project whose one batch reads `src/**` and runs `command`.
fn project(dir: &Path, command: &str) {
    let state = dir.join(".runner");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/a.txt"), "0\n").unwrap();
    let toml = format!(
        r#"version = 1
[defaults]
state_dir = "{state}"
[git]
enabled = false
[[pipelines.default.batches]]
id = "build"
inputs = ["src/**"]
[[pipelines.default.batches.tasks]]
id = "start"
type = "exec"
config = {{ command = "{command}" }}
"#,
        state = state.display(),
    );
    std::fs::write(dir.join("runner.toml"), toml).unwrap();
}

/// Reads lines off a FIFO for ever, sending when each arrived.
fn fifo_reader(fifo: PathBuf) -> mpsc::Receiver<Instant> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        loop {
            // Blocks until a writer opens it; ends with the writer.
            let Ok(file) = std::fs::File::open(&fifo) else {
                return;
            };
            for line in BufReader::new(file).lines() {
                if line.is_err() || tx.send(Instant::now()).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Sends each stdout line of `child` (with when it arrived).
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn wait_line(lines: &mpsc::Receiver<String>, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

struct Figures {
    tool: String,
    debounce: String,
    samples: Vec<Duration>,
    missed: usize,
}

impl Figures {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index]
    }
}

/// Which tool watches, and how it is started.
enum Tool {
    Runner,
    Entr,
    Watchexec,
}

/// Starts `tool` over `dir`, makes `changes` edits of `src/a.txt` and
/// measures each edit → the command's line on the FIFO.
fn measure(tool: Tool, changes: usize) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("starts.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let command = format!("echo start > {}", fifo.display());
    project(dir.path(), &command);
    let starts = fifo_reader(fifo.clone());
    let (name, debounce, mut child) = match tool {
        Tool::Runner => {
            let child = Command::new(RUNNER)
                .arg("--config")
                .arg(dir.path().join("runner.toml"))
                .args(["watch", "--debounce", &format!("{DEBOUNCE_MS}ms")])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            ("runner watch", format!("{DEBOUNCE_MS} ms"), child)
        }
        Tool::Entr => {
            // `-n`: no TTY; `-p`: not at start-up. entr has no debounce.
            let mut child = Command::new("entr")
                .args(["-n", "-p", "sh", "-c", &command])
                .current_dir(dir.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            std::io::Write::write_all(&mut stdin, b"src/a.txt\n").unwrap();
            drop(stdin);
            ("entr", "none".to_string(), child)
        }
        Tool::Watchexec => {
            let child = Command::new("watchexec")
                .args([
                    "--postpone",
                    "--watch",
                    "src",
                    "--debounce",
                    &format!("{DEBOUNCE_MS}ms"),
                    "--",
                    "sh",
                    "-c",
                    &command,
                ])
                .current_dir(dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            ("watchexec", format!("{DEBOUNCE_MS} ms"), child)
        }
    };
    let lines = lines_of(&mut child);
    let ready = |lines: &mpsc::Receiver<String>, starts: &mpsc::Receiver<Instant>| {
        if matches!(tool, Tool::Runner) {
            // The first run starts the command once, then it watches.
            let _ = starts.recv_timeout(Duration::from_secs(30));
            wait_line(lines, "[watch] watching", Duration::from_secs(30))
        } else {
            // No line says it watches: give it a moment.
            std::thread::sleep(Duration::from_millis(500));
            true
        }
    };
    let mut figures = Figures {
        tool: name.to_string(),
        debounce,
        samples: Vec::new(),
        missed: 0,
    };
    if !ready(&lines, &starts) {
        figures.missed = changes;
        let _ = child.kill();
        let _ = child.wait();
        return figures;
    }
    let source = dir.path().join("src/a.txt");
    for i in 1..=changes {
        // Nothing left over from the last round.
        while starts.try_recv().is_ok() {}
        let changed_at = Instant::now();
        std::fs::write(&source, format!("{i}\n")).unwrap();
        match starts.recv_timeout(Duration::from_secs(10)) {
            Ok(started) => figures.samples.push(started - changed_at),
            Err(_) => figures.missed += 1,
        }
        if matches!(tool, Tool::Runner) {
            wait_line(&lines, "[watch] watching", Duration::from_secs(10));
        } else {
            std::thread::sleep(Duration::from_millis(150));
        }
        // Keep edits apart, as a person saving would.
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    // The FIFO reader waits on an open: let it end.
    let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    figures
}

fn latency(changes: usize) {
    println!("change → first task start, {changes} changes of one file");
    let mut all = vec![measure(Tool::Runner, changes)];
    if on_path("entr") {
        all.push(measure(Tool::Entr, changes));
    } else {
        println!("  entr: not on PATH (Debian: apt-get install entr); not measured");
    }
    if on_path("watchexec") {
        all.push(measure(Tool::Watchexec, changes));
    } else {
        println!("  watchexec: not on PATH (cargo install watchexec-cli); not measured");
    }
    println!(
        "  {:<14} {:>9} {:>10} {:>10} {:>16} {:>7}",
        "tool", "debounce", "p50", "p99", "p50 - debounce", "missed"
    );
    for f in &all {
        let p50 = f.percentile(0.5);
        let beyond = if f.debounce == "none" {
            p50
        } else {
            p50.saturating_sub(Duration::from_millis(DEBOUNCE_MS))
        };
        println!(
            "  {:<14} {:>9} {:>10} {:>10} {:>16} {:>7}",
            f.tool,
            f.debounce,
            ms(p50),
            ms(f.percentile(0.99)),
            ms(beyond),
            f.missed
        );
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(end) = stat.rfind(')') else {
        return 0;
    };
    let fields: Vec<&str> = stat[end + 1..].split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based).
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    utime + stime
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> u64 {
    let mut out = String::new();
    if let Ok(mut child) = Command::new("getconf")
        .arg("CLK_TCK")
        .stdout(Stdio::piped())
        .spawn()
    {
        let _ = child.stdout.take().unwrap().read_to_string(&mut out);
        let _ = child.wait();
    }
    out.trim().parse().unwrap_or(100)
}

fn idle(files: usize, seconds: u64) {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), "true");
    let per_dir = 100;
    for i in 0..files {
        let sub = dir.path().join(format!("src/d{}", i / per_dir));
        if i % per_dir == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        std::fs::write(sub.join(format!("f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    let started = Instant::now();
    let mut child = Command::new(RUNNER)
        .arg("--config")
        .arg(dir.path().join("runner.toml"))
        .arg("watch")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    if !wait_line(&lines, "[watch] watching", Duration::from_secs(120)) {
        println!("idle: runner watch never said it watches");
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    let ready = started.elapsed();
    let pid = child.id();
    let ticks = clock_ticks();
    let before = cpu_ticks(pid);
    let mut peak = 0;
    let window = Instant::now();
    for _ in 0..seconds * 4 {
        std::thread::sleep(Duration::from_millis(250));
        peak = peak.max(rss_kib(pid));
    }
    let spent = (cpu_ticks(pid) - before) as f64 / ticks as f64;
    let cpu = spent / window.elapsed().as_secs_f64() * 100.0;
    println!(
        "idle over {files} files: watching after {} (first run included); \
         over {seconds} s: CPU {cpu:.2} %, RSS {:.1} MiB (peak {:.1} MiB)",
        ms(ready),
        rss_kib(pid) as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "runner watch benchmark · {cores} cores · {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    latency(count("RUNNER_BENCH_CHANGES", 50));
    idle(
        count("RUNNER_BENCH_FILES", 10_000),
        count("RUNNER_BENCH_IDLE_SECS", 10) as u64,
    );
}
