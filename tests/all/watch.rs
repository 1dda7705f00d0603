//! `runner watch`: real files in temp dirs, real notify, real runs.
//!
//! "Nothing ran" is shown without sleeping: after the change that must run
//! nothing, a sentinel file of another batch is changed, and the next
//! trigger must name only the sentinel.

mod plugins;

use crate::support::Project;
use runner::config::OnBusy;
use runner::watch::{WatchEvent, WatchOptions, watch};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The compile cache is the one every test shares (outside the watched tree).
const PIPELINE: &str = r#"
version = 1
[defaults]
state_dir = "{state}"
[git]
enabled = false

[[pipelines.default.batches]]
id = "build"
inputs = ["src/**"]
[[pipelines.default.batches.tasks]]
id = "compile"
type = "exec"
config = { command = "echo ran >> out/build.log" }

[[pipelines.default.batches]]
id = "test"
depends_on = ["build"]
inputs = ["tests/**"]
[[pipelines.default.batches.tasks]]
id = "check"
type = "exec"
config = { command = "echo ran >> out/test.log" }

[[pipelines.default.batches]]
id = "docs"
inputs = ["docs/**", "*.log"]
[[pipelines.default.batches.tasks]]
id = "render"
type = "exec"
config = { command = "echo ran >> out/docs.log" }
"#;

struct Watching {
    project: Project,
    rx: mpsc::UnboundedReceiver<WatchEvent>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Watching {
    async fn start(project: Project, debounce: Duration) -> Self {
        Self::start_with(project, debounce, None).await
    }

    async fn start_with(project: Project, debounce: Duration, poll: Option<Duration>) -> Self {
        Self::start_on_busy(project, debounce, poll, OnBusy::Queue).await
    }

    async fn start_on_busy(
        project: Project,
        debounce: Duration,
        poll: Option<Duration>,
        on_busy: OnBusy,
    ) -> Self {
        let runner = Arc::new(project.runner().await);
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let options = WatchOptions {
            pipeline: "default".into(),
            debounce,
            poll,
            on_busy,
            own_output: Vec::new(),
        };
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            watch(runner, options, stop, tx).await.expect("watching");
        });
        let mut watching = Self {
            project,
            rx,
            cancel,
            task,
        };
        watching.next_watching().await;
        watching
    }

    /// The next event matching `pred`; every event before it is returned too.
    async fn until(&mut self, pred: impl Fn(&WatchEvent) -> bool) -> Vec<WatchEvent> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let event = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no matching watch event; saw {seen:?}"))
                .expect("the watcher ended");
            let done = pred(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    async fn next_watching(&mut self) -> Vec<WatchEvent> {
        self.until(|e| matches!(e, WatchEvent::Watching { .. }))
            .await
    }

    /// Waits for the next trigger and the run it starts; returns the trigger's
    /// paths and batches, and every event seen.
    async fn next_run(&mut self) -> (Vec<String>, Vec<String>, Vec<WatchEvent>) {
        let seen = self
            .until(|e| matches!(e, WatchEvent::Triggered { .. }))
            .await;
        let Some(WatchEvent::Triggered { paths, batches, .. }) = seen.last().cloned() else {
            unreachable!()
        };
        let mut all = seen;
        all.extend(self.next_watching().await);
        (paths, batches, all)
    }

    fn lines(&self, file: &str) -> usize {
        std::fs::read_to_string(self.project.dir.path().join(file))
            .unwrap_or_default()
            .lines()
            .count()
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }
}

fn project() -> Project {
    let project = Project::new(PIPELINE);
    project.file("src/a.rs", "fn a() {}\n");
    project.file("tests/t.rs", "#[test] fn t() {}\n");
    project.file("docs/index.md", "# Docs\n");
    std::fs::create_dir_all(project.dir.path().join("out")).unwrap();
    project
}

fn runs(events: &[WatchEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, WatchEvent::Finished(_)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_file_in_one_batchs_inputs_reruns_that_batch_and_its_dependents_only() {
    let mut w = Watching::start(project(), Duration::from_millis(50)).await;
    assert_eq!(
        (
            w.lines("out/build.log"),
            w.lines("out/test.log"),
            w.lines("out/docs.log")
        ),
        (1, 1, 1)
    );
    w.project.file("src/a.rs", "fn a() { 1; }\n");
    let (paths, batches, events) = w.next_run().await;
    assert_eq!(paths, vec!["src/a.rs"]);
    assert_eq!(batches, vec!["build", "test"]);
    let Some(WatchEvent::Finished(report)) =
        events.iter().find(|e| matches!(e, WatchEvent::Finished(_)))
    else {
        panic!("no finished run in {events:?}")
    };
    assert_eq!(report.status, protocol::RunStatus::Completed);
    assert_eq!(
        (
            w.lines("out/build.log"),
            w.lines("out/test.log"),
            w.lines("out/docs.log")
        ),
        (2, 2, 1)
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touching_or_saving_unchanged_or_writing_swap_files_runs_nothing() {
    let mut w = Watching::start(project(), Duration::from_millis(50)).await;
    let source = w.project.dir.path().join("src/a.rs");
    std::fs::write(&source, "fn a() {}\n").unwrap();
    let file = std::fs::File::options().append(true).open(&source).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(file);
    w.project.file("src/.a.rs.swp", "swap");
    w.project.file("src/a.rs~", "backup");
    w.project.file("src/4913", "");
    w.project.file("src/#a.rs#", "autosave");
    // The sentinel: the next run must be for it alone.
    w.project.file("docs/index.md", "# Docs, edited\n");
    let (paths, batches, events) = w.next_run().await;
    assert_eq!(paths, vec!["docs/index.md"], "{events:?}");
    assert_eq!(batches, vec!["docs"]);
    assert_eq!(runs(&events), 1);
    assert_eq!(w.lines("out/build.log"), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_writing_into_a_watched_directory_gives_exactly_one_run() {
    // `stamp` has no inputs: it reads the whole project, where it writes
    // something new every time.
    let project = Project::new(
        r#"
version = 1
[defaults]
state_dir = "{state}"
[git]
enabled = false
[[pipelines.default.batches]]
id = "stamp"
[[pipelines.default.batches.tasks]]
id = "write"
type = "exec"
config = { command = "date +%s%N > stamp.txt; echo ran >> runs.log" }
"#,
    );
    project.file("src/a.rs", "one\n");
    let mut w = Watching::start(project, Duration::from_millis(50)).await;
    w.project.file("src/a.rs", "two\n");
    let (paths, _, events) = w.next_run().await;
    assert_eq!(paths, vec!["src/a.rs"]);
    assert_eq!(runs(&events), 1);
    w.project.file("src/a.rs", "three\n");
    let (paths, _, events) = w.next_run().await;
    assert_eq!(
        paths,
        vec!["src/a.rs"],
        "the run's own writes started a run: {events:?}"
    );
    assert_eq!(runs(&events), 1);
    assert_eq!(w.lines("runs.log"), 3);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_gives_one_run() {
    // A debounce long enough that a loaded machine does not split the burst.
    let mut w = Watching::start(project(), Duration::from_secs(3)).await;
    let dir = w.project.dir.path().join("src/gen");
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..1000 {
            std::fs::write(dir.join(format!("f{}.rs", i % 100)), format!("{i}\n")).unwrap();
        }
    })
    .await
    .unwrap();
    let (paths, batches, events) = w.next_run().await;
    assert_eq!(paths.len(), 100);
    assert_eq!(batches, vec!["build", "test"]);
    assert_eq!(runs(&events), 1);
    w.project.file("docs/index.md", "# Docs, edited\n");
    let (paths, _, events) = w.next_run().await;
    assert_eq!(paths, vec!["docs/index.md"], "{events:?}");
    assert_eq!(w.lines("out/build.log"), 2);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_watching_with_exit_code_130() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let project = project();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runner-under-test"))
        .arg("--config")
        .arg(project.path())
        .arg("watch")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let wait = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("[watch] watching 3 files for 3 batches") {
                return;
            }
        }
        panic!("the watcher ended before watching");
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("watching line");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits after Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(130));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_runner_toml_is_reported_and_watching_goes_on_then_the_fixed_one_is_used() {
    let mut w = Watching::start(project(), Duration::from_millis(50)).await;
    let text = std::fs::read_to_string(w.project.path()).unwrap();
    let broken = text.replace("depends_on = [\"build\"]", "depends_on = [\"bild\"]");
    std::fs::write(w.project.path(), &broken).unwrap();
    let seen = w.until(|e| matches!(e, WatchEvent::ConfigError(_))).await;
    let Some(WatchEvent::ConfigError(message)) = seen.last() else {
        unreachable!()
    };
    assert!(message.contains("runner.toml:"), "{message}");
    assert!(message.contains("no batch `bild`"), "{message}");
    // Still watching with the old configuration: docs alone re-runs.
    w.project.file("docs/index.md", "# Docs, edited\n");
    let (paths, batches, events) = w.next_run().await;
    assert_eq!(paths, vec!["docs/index.md"], "{events:?}");
    assert_eq!(batches, vec!["docs"]);
    // The fixed file, with a new task, is used.
    let fixed = text.replace("echo ran >> out/docs.log", "echo fixed >> out/docs.log");
    std::fs::write(w.project.path(), &fixed).unwrap();
    let seen = w.until(|e| matches!(e, WatchEvent::ConfigReloaded)).await;
    assert_eq!(runs(&seen), 0);
    let (_, batches, _) = w.next_run().await;
    assert_eq!(batches, vec!["build", "test", "docs"]);
    let docs = std::fs::read_to_string(w.project.dir.path().join("out/docs.log")).unwrap();
    assert_eq!(docs.lines().last(), Some("fixed"));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_is_seen_by_events_and_by_polling() {
    for poll in [None, Some(Duration::from_millis(100))] {
        let mut w = Watching::start_with(project(), Duration::from_millis(50), poll).await;
        let dir = w.project.dir.path().to_path_buf();
        std::fs::rename(dir.join("src/a.rs"), dir.join("src/b.rs")).unwrap();
        let (paths, batches, _) = w.next_run().await;
        assert_eq!(paths, vec!["src/a.rs", "src/b.rs"], "poll: {poll:?}");
        assert_eq!(batches, vec!["build", "test"]);
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_run_leaves_no_process_and_exits_130() {
    let project = project();
    let text = std::fs::read_to_string(project.path()).unwrap().replace(
        "echo ran >> out/docs.log",
        "echo $$ > out/pid; exec sleep 1000",
    );
    std::fs::write(project.path(), text).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runner-under-test"))
        .arg("--config")
        .arg(project.path())
        .arg("watch")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid_file = project.dir.path().join("out/pid");
    let mut pid = String::new();
    for _ in 0..600 {
        pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if pid.ends_with('\n') {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = pid.trim().to_string();
    assert!(!pid.is_empty(), "the task never started");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits after Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(130));
    // Gone, or a zombie waiting for init to reap it.
    let mut alive = true;
    for _ in 0..600 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        alive = !stat.is_empty() && !stat.contains(") Z ");
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive, "the task's sleep {pid} outlived the runner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_is_not_rerun_keeps_its_outputs_for_the_batches_that_are() {
    let project = Project::new(
        r#"
version = 1
[defaults]
state_dir = "{state}"
[git]
enabled = false
[[pipelines.default.batches]]
id = "build"
inputs = ["src/**"]
[[pipelines.default.batches.tasks]]
id = "compile"
type = "exec"
config = { command = "cat src/a.rs; echo ran >> out/build.log" }
[[pipelines.default.batches]]
id = "test"
depends_on = ["build"]
inputs = ["tests/**"]
[[pipelines.default.batches.tasks]]
id = "show"
type = "template"
config = { template = "built: {{outputs.compile.stdout}}" }
"#,
    );
    project.file("src/a.rs", "fn a() {}\n");
    project.file("tests/t.rs", "one\n");
    std::fs::create_dir_all(project.dir.path().join("out")).unwrap();
    let mut w = Watching::start(project, Duration::from_millis(50)).await;
    w.project.file("tests/t.rs", "two\n");
    let (_, batches, events) = w.next_run().await;
    assert_eq!(batches, vec!["test"]);
    let Some(WatchEvent::Finished(report)) =
        events.iter().find(|e| matches!(e, WatchEvent::Finished(_)))
    else {
        panic!("no finished run in {events:?}")
    };
    assert_eq!(report.status, protocol::RunStatus::Completed, "{report:?}");
    let text = report.outputs["show"]["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("built: fn a() {}"), "{report:?}");
    assert_eq!(w.lines("out/build.log"), 1, "build ran again");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_another_batchs_inputs_during_a_run_gives_one_follow_up_run() {
    let project = project();
    // `build` waits for `out/go` once its re-run starts, so the test can
    // change `docs` while it runs.
    let text = std::fs::read_to_string(project.path()).unwrap().replace(
        "echo ran >> out/build.log",
        "echo ran >> out/build.log; if [ -f src/wait ]; then touch out/started; \
         while [ ! -f out/go ]; do sleep 0.05; done; fi",
    );
    std::fs::write(project.path(), text).unwrap();
    let mut w = Watching::start(project, Duration::from_millis(50)).await;
    w.project.file("src/wait", "");
    let seen = w.until(|e| matches!(e, WatchEvent::Triggered { .. })).await;
    assert_eq!(runs(&seen), 0);
    let started = w.project.dir.path().join("out/started");
    for _ in 0..1200 {
        if started.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.exists(), "the re-run of build never started");
    w.project
        .file("docs/index.md", "# Docs, edited while building\n");
    let seen = w
        .until(|e| matches!(e, WatchEvent::SeenWhileBusy { .. }))
        .await;
    let Some(WatchEvent::SeenWhileBusy { paths, queued }) = seen.last().cloned() else {
        unreachable!()
    };
    assert_eq!((paths, queued), (vec!["docs/index.md".to_string()], true));
    w.project.file("out/go", "");
    let seen = w.until(|e| matches!(e, WatchEvent::Triggered { .. })).await;
    let Some(WatchEvent::Triggered {
        paths,
        batches,
        follow_up,
        ..
    }) = seen.last().cloned()
    else {
        unreachable!()
    };
    assert!(follow_up, "{seen:?}");
    assert_eq!(paths, vec!["docs/index.md"]);
    assert_eq!(batches, vec!["docs"]);
    assert_eq!(runs(&seen), 1);
    w.next_watching().await;
    assert_eq!(w.lines("out/docs.log"), 2);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_redirected_into_the_project_does_not_start_runs() {
    let project = project();
    let log_path = project.dir.path().join("watch.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runner-under-test"))
        .arg("--config")
        .arg(project.path())
        .arg("watch")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let wait_for = |needle: &'static str, count: usize| {
        let log_path = log_path.clone();
        async move {
            for _ in 0..1200 {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                if text.matches(needle).count() >= count {
                    return text;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no {count} × `{needle}` in the log");
        }
    };
    wait_for("[watch] watching", 1).await;
    project.file("docs/index.md", "# Docs, edited\n");
    let text = wait_for("[watch] watching", 2).await;
    assert!(
        text.contains("[watch] changed: docs/index.md -> batches: docs"),
        "{text}"
    );
    project.file("src/a.rs", "fn a() { 2; }\n");
    let text = wait_for("[watch] watching", 3).await;
    let changes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[watch] changed"))
        .collect();
    assert_eq!(
        changes,
        vec![
            "[watch] changed: docs/index.md -> batches: docs",
            "[watch] changed: src/a.rs -> batches: build, test"
        ],
        "{text}"
    );
    let _ = child.start_kill();
}

/// The live (not zombie) processes whose group is `pgid`, from `/proc`.
fn group_members(pgid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .collect();
            fields[0] != "Z" && fields[2] == pgid.to_string()
        })
        .collect()
}

async fn poll_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} never happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_kills_the_whole_group_of_the_running_task_before_the_next_run_starts() {
    let project = project();
    // Once `src/wait` exists, `build` records its group and waits on a
    // child that ignores SIGTERM; each start first lists what is left of
    // the group the previous start recorded.
    let text = std::fs::read_to_string(project.path()).unwrap().replace(
        "echo ran >> out/build.log",
        "echo ran >> out/build.log; \
         if [ -f out/pgid ]; then old=$(cat out/pgid); for s in /proc/[0-9]*/stat; do \
         set -- $(cat $s 2>/dev/null); \
         if [ \\\"$5\\\" = \\\"$old\\\" ] && [ \\\"$3\\\" != Z ]; then echo $1 >> out/survivors; fi; \
         done; echo checked >> out/checks; fi; \
         if [ -f src/wait ]; then echo $$ > out/pgid; (trap '' TERM; exec sleep 1000) & wait; fi",
    );
    std::fs::write(project.path(), text).unwrap();
    let mut w =
        Watching::start_on_busy(project, Duration::from_millis(50), None, OnBusy::Restart).await;
    let dir = w.project.dir.path().to_path_buf();
    w.project.file("src/wait", "");
    w.until(|e| matches!(e, WatchEvent::Triggered { .. })).await;
    let pgid_file = dir.join("out/pgid");
    poll_until("the first long task start", || pgid_file.exists()).await;
    let old: i32 = std::fs::read_to_string(&pgid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    poll_until("the sleeping child", || group_members(old).len() == 2).await;

    w.project.file("src/a.rs", "fn a() { 2; }\n");
    let seen = w.until(|e| matches!(e, WatchEvent::Triggered { .. })).await;
    let kinds: Vec<&str> = seen
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Restarting { .. } => Some("restarting"),
            WatchEvent::Finished(_) => Some("finished"),
            WatchEvent::Triggered { .. } => Some("triggered"),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["restarting", "finished", "triggered"],
        "{seen:?}"
    );
    let Some(WatchEvent::Finished(report)) =
        seen.iter().find(|e| matches!(e, WatchEvent::Finished(_)))
    else {
        unreachable!()
    };
    assert_eq!(report.status, protocol::RunStatus::Aborted, "{report:?}");
    let Some(WatchEvent::Triggered { paths, batches, .. }) = seen.last() else {
        unreachable!()
    };
    assert_eq!(paths, &vec!["src/a.rs".to_string()]);
    assert_eq!(batches, &vec!["build".to_string(), "test".to_string()]);
    // The new start has looked at the old group before recording its own.
    poll_until("the next start", || {
        std::fs::read_to_string(&pgid_file).is_ok_and(|text| text.trim() != old.to_string())
    })
    .await;
    assert!(
        !dir.join("out/survivors").exists(),
        "processes of the old group were alive when the next run started: {}",
        std::fs::read_to_string(dir.join("out/survivors")).unwrap_or_default()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out/checks"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    assert!(group_members(old).is_empty());
    w.stop().await;
}

/// Gives `project` a history of its own (the shared state dir holds other
/// tests' runs), in a temp dir outside the project.
fn private_state(project: &Project) -> tempfile::TempDir {
    let state = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(project.path()).unwrap().replace(
        &crate::support::shared_state_dir(),
        &state.path().display().to_string(),
    );
    std::fs::write(project.path(), text).unwrap();
    state
}

/// Reads JSON event lines from `lines` until one matches `pred`.
async fn json_until(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let wait = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let event: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}"));
            if pred(&event) {
                return event;
            }
        }
        panic!("the watcher ended first");
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("a matching event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_json_prints_watch_status_events_and_show_prints_the_trigger_of_a_rerun() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let project = project();
    let _state = private_state(&project);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runner-under-test"))
        .arg("--config")
        .arg(project.path())
        .args(["watch", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let watching = json_until(&mut lines, |e| {
        e["type"] == "watch_status" && e["status"] == "watching"
    })
    .await;
    assert_eq!(watching["files"], 3, "{watching}");
    assert_eq!(
        watching["batches"],
        serde_json::json!(["build", "test", "docs"])
    );
    assert_eq!(watching["pipeline"], "default");

    project.file("src/a.rs", "fn a() { 3; }\n");
    let triggered = json_until(&mut lines, |e| {
        e["type"] == "watch_status" && e["status"] == "triggered"
    })
    .await;
    assert_eq!(triggered["paths"], serde_json::json!(["src/a.rs"]));
    assert_eq!(triggered["batches"], serde_json::json!(["build", "test"]));
    let run_id = triggered["run_id"].as_str().unwrap().to_string();
    let ended = json_until(&mut lines, |e| {
        e["type"] == "run_status" && e["run_id"] == run_id.as_str() && e["status"] != "running"
    })
    .await;
    assert_eq!(ended["status"], "completed");
    json_until(&mut lines, |e| {
        e["type"] == "watch_status" && e["status"] == "watching"
    })
    .await;

    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits after Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(130));
    let mut errors = String::new();
    stderr.read_to_string(&mut errors).await.unwrap();
    assert!(!errors.contains("[watch]"), "{errors}");

    // The re-run is in the history with its trigger and changed files.
    let show = std::process::Command::new(env!("CARGO_BIN_EXE_runner-under-test"))
        .arg("--config")
        .arg(project.path())
        .args(["show", &run_id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success(), "{text}");
    assert!(
        text.contains("\n  trigger: watch (changed: src/a.rs)\n"),
        "{text}"
    );
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_runner-under-test"))
        .arg("--config")
        .arg(project.path())
        .args(["show", &run_id, "--json"])
        .output()
        .unwrap();
    let detail: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(detail["run"]["trigger"], "watch");
    assert_eq!(detail["run"]["changed"], serde_json::json!(["src/a.rs"]));
    let history = std::process::Command::new(env!("CARGO_BIN_EXE_runner-under-test"))
        .arg("--config")
        .arg(project.path())
        .args(["history", "--json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(runs[0]["id"], run_id.as_str(), "{runs}");
    assert_eq!(runs[0]["trigger"], "watch");
    // The first run was started by `watch` too, by no change.
    assert_eq!(runs[1]["trigger"], "watch", "{runs}");
    assert!(runs[1].get("changed").is_none(), "{runs}");

    // `runner history` shows what started each run; `runner run` is `run`.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_runner-under-test"))
        .arg("--config")
        .arg(project.path())
        .arg("run")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let history = std::process::Command::new(env!("CARGO_BIN_EXE_runner-under-test"))
        .arg("--config")
        .arg(project.path())
        .arg("history")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&history.stdout);
    let header = table.lines().next().unwrap_or_default();
    let (from, to) = (
        header.find("TRIGGER").expect("a TRIGGER column"),
        header.find("STATUS").expect("a STATUS column"),
    );
    let triggers: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|row| row.get(from..to).unwrap_or_default().trim())
        .collect();
    assert_eq!(triggers, vec!["run", "watch", "watch"], "{table}");
    assert!(
        table
            .lines()
            .nth(2)
            .unwrap_or_default()
            .starts_with(&run_id),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_serve_streams_the_watch_status_events_and_reruns_over_websocket() {
    use crate::server_support::Client;
    use tokio::io::{AsyncBufReadExt, BufReader};
    let project = project();
    let _state = private_state(&project);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runner-under-test"))
        .arg("--config")
        .arg(project.path())
        .args(["watch", "--serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let find_addr = async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("serving on ws://") {
                return rest
                    .split('/')
                    .next()
                    .unwrap()
                    .parse::<std::net::SocketAddr>()
                    .unwrap();
            }
        }
        panic!("the watcher ended before serving");
    };
    let addr = tokio::time::timeout(Duration::from_secs(60), find_addr)
        .await
        .expect("a serving line");
    let mut client = Client::connect(addr).await;
    client
        .send(
            serde_json::json!({"type": "identify", "protocol_version": "1.0.0",
            "client": {"kind": "dashboard", "name": "test"}, "after_seq": 0}),
        )
        .await;
    assert_eq!(client.recv().await["type"], "identified");
    // Every event from the first on, so the first `watching` is not missed.
    client
        .recv_until(|m| m["type"] == "watch_status" && m["status"] == "watching")
        .await;

    project.file("tests/t.rs", "#[test] fn t() { 2; }\n");
    let seen = client
        .recv_until(|m| m["type"] == "watch_status" && m["status"] == "triggered")
        .await;
    let triggered = seen.last().unwrap();
    assert_eq!(triggered["paths"], serde_json::json!(["tests/t.rs"]));
    assert_eq!(triggered["batches"], serde_json::json!(["test"]));
    let run_id = triggered["run_id"].as_str().unwrap().to_string();
    let seen = client
        .recv_until(|m| {
            m["type"] == "run_status" && m["run_id"] == run_id.as_str() && m["status"] != "running"
        })
        .await;
    assert_eq!(seen.last().unwrap()["status"], "completed");

    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits after Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(130));
}
