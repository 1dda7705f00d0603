//! No process outlives a runner that was killed: the group leader dies with
//! the runner, and the next runner kills what is left of recorded groups,
//! never a process whose pid was reused. Checked through `/proc` with the
//! real `runner` binary and `kill -9`.

use crate::agents::{fake, processes_with, unique};
use crate::pipelines::{alive, run_binary, runner_binary};
use crate::support::{Project, shared_state_dir};
use runner::process::groups::{self, Record};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Polls (at most 30 s) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 30 s: {what}");
}

fn pids_in(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn project(command: &str) -> Project {
    project_with(command, "")
}

fn project_with(command: &str, extra: &str) -> Project {
    Project::new(&format!(
        r#"
version = 1
{extra}

[defaults]
state_dir = "{{state}}"

[[pipelines.slow.batches]]
id = "slow"

[[pipelines.slow.batches.tasks]]
id = "sleepers"
type = "exec"
config = {{ command = {command:?} }}

[[pipelines.quick.batches]]
id = "quick"

[[pipelines.quick.batches.tasks]]
id = "hello"
type = "exec"
config = {{ command = "echo hello" }}
"#
    ))
}

/// Starts `runner run slow` with a task that writes its shell's pid, then
/// the pids of the two background jobs `jobs` starts, to a file; returns
/// the runner and the three pids once they are written.
/// The project and the folder of the pid file are returned to live as long
/// as the test.
async fn run_three_processes(
    jobs: &str,
) -> (Project, tempfile::TempDir, tokio::process::Child, Vec<u32>) {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let file = pids.display().to_string();
    let project = project(&format!(
        "echo $$ > {file}; {}; wait",
        jobs.replace("PIDS", &file)
    ));
    let runner = tokio::process::Command::new(runner_binary())
        .args(["run", "slow"])
        .current_dir(project.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("the task wrote its three pids", || {
        pids_in(&pids).len() == 3
    })
    .await;
    let pids = pids_in(&pids);
    assert!(pids.iter().all(|&p| alive(p)), "all three run: {pids:?}");
    (project, dir, runner, pids)
}

/// The guardian the runner `runner` started, found through `/proc`.
fn guardian_of(runner: u32) -> u32 {
    let found = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let parent = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            parent == Some(runner)
                && String::from_utf8_lossy(&cmdline).contains("__runner-guardian")
        });
    found.unwrap_or_else(|| panic!("runner {runner} has no guardian"))
}

/// The second defence: with the guardian killed as well, nothing kills
/// the group when the runner goes, and the next runner start does.
#[tokio::test]
async fn the_processes_of_a_killed_runners_exec_task_do_not_survive_the_next_runner_start() {
    let (project, _dir, mut runner, pids) =
        run_three_processes("sleep 300 & echo $! >> PIDS; sleep 300 & echo $! >> PIDS").await;
    let leader = pids[0];
    let record = groups::records_dir(Path::new(&shared_state_dir()))
        .join(format!("{}-{leader}", runner.id().unwrap()));
    eventually("the live group is recorded", || record.exists()).await;

    let guardian = guardian_of(runner.id().unwrap());
    let killed = std::process::Command::new("kill")
        .args(["-9", &guardian.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    eventually("the guardian is gone", || !alive(guardian)).await;
    runner.start_kill().unwrap(); // SIGKILL: no destructor runs.
    runner.wait().await.unwrap();
    assert!(
        pids.iter().all(|&p| alive(p)),
        "nothing killed the group yet"
    );

    let (code, stdout, stderr) = run_binary(project.dir.path(), &["run", "quick"], &[]).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    eventually("the next runner killed the whole group", || {
        pids.iter().all(|&p| !alive(p))
    })
    .await;
    assert!(!record.exists(), "the record is gone with its group");
}

/// The `runner` binary's guardian kills the whole group the moment the
/// runner is gone: no next runner start is needed, and what the leader
/// started in the background goes too.
#[tokio::test]
async fn a_killed_runners_exec_task_group_dies_with_it_background_children_included() {
    let (_project, _dir, mut runner, pids) =
        run_three_processes("sleep 300 & echo $! >> PIDS; (sleep 300; true) & echo $! >> PIDS")
            .await;
    runner.start_kill().unwrap(); // SIGKILL: no destructor runs.
    runner.wait().await.unwrap();
    eventually("every process of the group died with the runner", || {
        pids.iter().all(|&p| !alive(p))
    })
    .await;
}

#[tokio::test]
async fn the_processes_of_a_killed_runners_agent_cli_do_not_survive_the_next_runner_start() {
    let marker = unique("orphan-agent");
    let (key, value) = marker.split_once('=').unwrap();
    // The fake CLI prints its transcript, then waits on two `sleep 1000`s.
    let project = project_with(
        "true",
        &format!(
            "[agents.a]\nadapter = \"claude\"\ncommand = \"{}\"\nenv = {{ FAKE_AGENT_HANG = \"1\", {key} = \"{value}\" }}\n",
            fake("claude")
        ),
    );
    let mut runner = tokio::process::Command::new(runner_binary())
        .args(["ask", "a", "hang"])
        .current_dir(project.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("the CLI and its two sleeps run", || {
        processes_with(&marker).len() == 3
    })
    .await;
    runner.start_kill().unwrap();
    runner.wait().await.unwrap();

    let (code, stdout, stderr) = run_binary(project.dir.path(), &["run", "quick"], &[]).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    eventually("nothing of the CLI's group is left", || {
        processes_with(&marker).is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_recorded_group_whose_leader_started_at_another_time_is_not_killed() {
    let mut bystander = std::process::Command::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = bystander.id() as i32;
    let stat = groups::proc_stat(pid).unwrap();
    let records = groups::records_dir(Path::new(&shared_state_dir()));
    // A runner that is gone (no such pid) recorded a group with this id
    // whose leader started at another time: the pid was reused since.
    let fake = Record {
        pgid: pid,
        leader_start: stat.start_time + 1,
        owner_pid: i32::MAX,
        owner_start: 1,
    };
    let path = fake.write(&records).unwrap();

    let project = project("true");
    let (code, stdout, stderr) = run_binary(project.dir.path(), &["run", "quick"], &[]).await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(!path.exists(), "the stale record was read and dropped");
    assert!(alive(pid as u32), "the unrelated process was left alone");
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

/// The `runner` binary starts a leader through itself (so it never forks
/// the whole runner): what runs must still be the command, as a shell
/// would start it.
#[tokio::test]
async fn an_exec_tasks_leader_is_the_command_itself_started_as_a_shell_would() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen");
    let project = Project::new(&format!(
        r#"
version = 1
[defaults]
state_dir = "{{state}}"
[[pipelines.default.batches]]
id = "b"
[[pipelines.default.batches.tasks]]
id = "look"
type = "exec"
config = {{ command = {command:?}, cwd = "sub", env = {{ FOO = "from the task" }} }}
[[pipelines.default.batches.tasks]]
id = "missing"
type = "exec"
config = {{ command = ["no-such-program-here", "x"] }}
"#,
        command = format!(
            "{{ cat /proc/$$/comm; cat /proc/$PPID/comm; grep SigIgn /proc/$$/status; \
             echo \"$FOO\"; pwd; yes | head -n 1; }} > {} 2>&1",
            out.display()
        )
    ));
    std::fs::create_dir_all(project.dir.path().join("sub")).unwrap();
    let (code, stdout, stderr) = run_binary(project.dir.path(), &["run"], &[]).await;
    // The missing program fails its task, naming it.
    assert_ne!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("cannot start `no-such-program-here`"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let seen = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], "sh", "the leader is the shell itself: {seen}");
    // The binary under test is a copy named `runner-under-test`.
    assert!(
        lines[1].starts_with("runner"),
        "its parent is the runner: {seen}"
    );
    let ignored = u64::from_str_radix(lines[2].trim_start_matches("SigIgn:").trim(), 16).unwrap();
    assert_eq!(ignored & (1 << 12), 0, "SIGPIPE is not ignored: {seen}");
    assert_eq!(lines[3], "from the task");
    assert_eq!(
        Path::new(lines[4]).canonicalize().unwrap(),
        project.dir.path().join("sub").canonicalize().unwrap()
    );
    assert_eq!(
        lines[5], "y",
        "a pipe closed early ends `yes` quietly: {seen}"
    );
    assert_eq!(lines.len(), 6, "nothing complained: {seen}");
}
