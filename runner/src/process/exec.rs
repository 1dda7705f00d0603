//! `exec` tasks: a host command in its own process group.
//!
//! The group is what gets stopped: on timeout or abort it receives
//! SIGTERM, then SIGKILL after [`KILL_GRACE`]; when the command itself
//! ends, anything it left running in its group is killed too, so no
//! orphan outlives its task. The group is recorded while it lives and its
//! leader dies with the runner, so none outlives the runner either (see
//! [`super::groups`]).

use super::groups;
use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use protocol::{ExecutionState, Stream};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

/// How long a process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long a SIGKILLed group may take to be gone before the task ends anyway.
const GONE_WAIT: Duration = Duration::from_secs(5);
/// A group that lives this long is also recorded in the state directory
/// (see `groups::Recorded::write_file`).
const RECORD_FILE_AFTER: Duration = Duration::from_millis(100);

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this code (or was killed by a signal: `None`).
    Exited(Option<i32>),
    TimedOut,
    Aborted,
}

impl Ending {
    /// The exit code, when it exited with one.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Exited(code) => *code,
            Self::TimedOut | Self::Aborted => None,
        }
    }

    /// As an execution's state: an exit with 0 completed, another code
    /// failed, a signal or the timeout killed it, an abort interrupted it.
    pub fn state(&self) -> ExecutionState {
        match self {
            Self::Exited(Some(0)) => ExecutionState::Completed,
            Self::Exited(Some(_)) => ExecutionState::Failed,
            Self::Exited(None) | Self::TimedOut => ExecutionState::Killed,
            Self::Aborted => ExecutionState::Interrupted,
        }
    }

    /// Why `what` (the program as the user knows it: ``"`make`"``, `"the
    /// agent"`) did not succeed, in the words every caller shows; `None`
    /// when it exited with 0, or was aborted: what an abort means is the
    /// caller's to say (the run was aborted, the command interrupted).
    pub fn error(&self, what: &str, timeout: Duration) -> Option<String> {
        match self {
            Self::Exited(Some(0)) | Self::Aborted => None,
            Self::Exited(code) => Some(exit_message(what, *code)),
            Self::TimedOut => Some(format!(
                "timed out after {}; its process group was stopped",
                crate::units::format_duration(timeout)
            )),
        }
    }
}

/// `what exited with code 3`, or `what was killed by a signal` (no code).
pub fn exit_message(what: &str, code: Option<i32>) -> String {
    match code {
        Some(code) => format!("{what} exited with code {code}"),
        None => format!("{what} was killed by a signal"),
    }
}

/// What to run, from the task's `config`.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: std::path::PathBuf,
    pub env: Vec<(String, String)>,
    /// Written to standard input, which is then closed (`None`: no input).
    pub stdin: Option<String>,
}

impl ExecSpec {
    /// `command = "make test"` runs as `sh -c` would (directly when it is
    /// plain words, see [`shell`]); `command = ["make", "test"]` runs directly. Optional `cwd` (relative to `runner.toml`) and `env` table.
    pub fn from_config(config: &Value, base_dir: &Path) -> Result<Self> {
        let cwd = match config.get("cwd") {
            Some(Value::String(dir)) => base_dir.join(dir),
            Some(_) => bail!("`cwd` must be a string"),
            None => base_dir.to_path_buf(),
        };
        let env = env_table(config).map_err(anyhow::Error::msg)?;
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| std::ffi::OsStr::new(v.as_str()));
        let (program, args) = match config.get("command") {
            Some(Value::String(line)) => shell(line, &cwd, path),
            Some(Value::Array(items)) => {
                let mut words = items.iter().map(|v| v.as_str().map(str::to_string));
                let program = words.next().flatten().context("`command` is empty")?;
                (
                    program,
                    words
                        .collect::<Option<Vec<_>>>()
                        .context("`command` must hold strings")?,
                )
            }
            _ => bail!("`command` must be a string or a list of strings"),
        };
        Ok(Self {
            program,
            args,
            cwd,
            env,
            stdin: None,
        })
    }
}

/// The program and arguments that run `line` as `sh -c` would: directly
/// when it is plain words (see [`plain_words`]), as `make` does, saving a
/// shell's start per command; through `sh -c` otherwise.
///
/// `cwd` and `path` (the `PATH` the command will have; `None`: the
/// runner's) are where its first word is looked for.
pub fn shell(line: &str, cwd: &Path, path: Option<&std::ffi::OsStr>) -> (String, Vec<String>) {
    match plain_words(line, cwd, path) {
        Some(mut words) => {
            let program = words.remove(0);
            (program, words)
        }
        None => ("sh".to_string(), vec!["-c".to_string(), line.to_string()]),
    }
}

/// The words of `line` when the shell would do nothing to it but split it
/// at blanks and run its first word from `PATH`: no quoting, expansion,
/// redirection, operator, assignment or comment, and a first word that is
/// neither a keyword nor a builtin that a program cannot stand in for
/// (`cd`, `export`, ...). A first word that is not found on `PATH` also
/// goes through the shell, so a mistyped command still fails with the
/// shell's own `not found` and exit code 127.
fn plain_words(line: &str, cwd: &Path, path: Option<&std::ffi::OsStr>) -> Option<Vec<String>> {
    const PLAIN: &str = "-_./:,+%@=";
    /// Keywords and builtins whose effect a program of that name would not have.
    const SHELL_ONLY: &[&str] = &[
        "!", ".", ":", "[", "alias", "bg", "break", "case", "cd", "command", "continue", "do",
        "done", "elif", "else", "esac", "eval", "exec", "exit", "export", "fg", "fi", "for",
        "function", "getopts", "hash", "if", "in", "jobs", "local", "pwd", "read", "readonly",
        "return", "select", "set", "shift", "source", "then", "times", "trap", "type", "ulimit",
        "umask", "unalias", "unset", "until", "wait", "while",
    ];
    let plain = |c: char| c.is_ascii_alphanumeric() || PLAIN.contains(c) || c == ' ' || c == '\t';
    if !line.chars().all(plain) {
        return None;
    }
    let words: Vec<String> = line
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let first = words.first()?;
    if first.contains('=') || SHELL_ONLY.contains(&first.as_str()) {
        return None;
    }
    // A path is left to the shell, which reports a missing one its own way.
    if first.contains('/') {
        return None;
    }
    super::find_program_on(first, cwd, path).map(|_| words)
}

impl ExecSpec {
    /// `line` through `sh -c` in `cwd`, with the runner's environment.
    pub fn shell(line: &str, cwd: &Path) -> Self {
        let (program, args) = shell(line, cwd, None);
        Self {
            program,
            args,
            cwd: cwd.to_path_buf(),
            env: Vec::new(),
            stdin: None,
        }
    }
}

/// A task's `env = { K = "V" }` (a value that is not a string is written
/// as JSON); empty when absent.
pub fn env_table(config: &Value) -> Result<Vec<(String, String)>, &'static str> {
    match config.get("env") {
        None => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect()),
        Some(_) => Err("`env` must be a table"),
    }
}

/// Kills the whole group if the task is dropped mid-flight.
struct GroupGuard {
    pgid: Option<Pid>,
    /// Dropped after the group is killed: the record goes last.
    record: Option<groups::Recorded>,
}

impl GroupGuard {
    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, signal);
        }
    }

    /// Waits (bounded) until no live process is left in the group, so a
    /// task that ended leaves nothing running behind it.
    async fn gone(&self) {
        let Some(pgid) = self.pgid else { return };
        let deadline = tokio::time::Instant::now() + GONE_WAIT;
        while groups::group_alive(pgid.as_raw()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// Runs `spec`, sending every piece of output to `on_output` as it arrives.
pub async fn run(
    spec: &ExecSpec,
    timeout: Duration,
    cancel: &CancellationToken,
    on_output: impl FnMut(Stream, &[u8]),
) -> Result<Ending> {
    run_with_input(spec, None, timeout, cancel, on_output).await
}

/// [`run`], with standard input kept open after `spec.stdin` when `more`
/// is given: each text received is written as it comes (a line is sent
/// with its newline), and standard input closes once every sender of
/// `more` is dropped.
pub async fn run_with_input(
    spec: &ExecSpec,
    more: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
    timeout: Duration,
    cancel: &CancellationToken,
    mut on_output: impl FnMut(Stream, &[u8]),
) -> Result<Ending> {
    let path = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| std::ffi::OsStr::new(v.as_str()));
    let start_error = |err: std::io::Error| {
        anyhow::Error::new(err).context(format!(
            "cannot start `{}` in {}",
            spec.program,
            spec.cwd.display()
        ))
    };
    let mut command =
        super::leader::command(&spec.program, &spec.cwd, path).map_err(start_error)?;
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() || more.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = groups::spawn(command).await.map_err(start_error)?;
    let mut guard = GroupGuard {
        pgid: child.id().map(|id| Pid::from_raw(id as i32)),
        record: child.id().map(groups::record),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let first = spec.stdin.clone().unwrap_or_default();
        let mut more = more;
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // A CLI that exits without reading its input is not an error.
            if stdin.write_all(first.as_bytes()).await.is_err() {
                return;
            }
            if let Some(more) = &mut more {
                while let Some(text) = more.recv().await {
                    if stdin.write_all(text.as_bytes()).await.is_err()
                        || stdin.flush().await.is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
    let (mut out_open, mut err_open) = (true, true);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let record_file = tokio::time::sleep(RECORD_FILE_AFTER);
    tokio::pin!(record_file);
    let mut file_written = false;
    let mut status = None;
    let ending = loop {
        tokio::select! {
            () = &mut record_file, if !file_written => {
                file_written = true;
                if let Some(record) = &mut guard.record {
                    record.write_file();
                }
            }
            read = stdout.read(&mut out_buf), if out_open => match read {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => on_output(Stream::Stdout, &out_buf[..n]),
            },
            read = stderr.read(&mut err_buf), if err_open => match read {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => on_output(Stream::Stderr, &err_buf[..n]),
            },
            exit = child.wait(), if status.is_none() => {
                status = Some(exit.context("cannot wait for the command")?);
                // Leftovers in the group would hold the pipes open: end them.
                guard.signal(Signal::SIGKILL);
            }
            // Output still held open by a process outside the group: stop waiting for it.
            _ = tokio::time::sleep(Duration::from_secs(1)), if status.is_some() => {
                break Ending::Exited(status.and_then(|s| s.code()));
            }
            _ = &mut deadline => break stop(&mut child, &guard, Ending::TimedOut).await,
            _ = cancel.cancelled() => break stop(&mut child, &guard, Ending::Aborted).await,
        }
        if let (Some(status), false, false) = (status, out_open, err_open) {
            break Ending::Exited(status.code());
        }
    };
    guard.gone().await;
    Ok(ending)
}

/// SIGTERM to the group, SIGKILL after the grace period.
async fn stop(child: &mut Child, guard: &GroupGuard, ending: Ending) -> Ending {
    guard.signal(Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        guard.signal(Signal::SIGKILL);
        let _ = child.wait().await;
    }
    guard.signal(Signal::SIGKILL);
    ending
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_as(line: &str) -> (String, Vec<String>) {
        shell(line, Path::new("/"), None)
    }

    #[test]
    fn plain_words_run_directly_and_anything_the_shell_would_change_goes_through_it() {
        assert_eq!(run_as("true"), ("true".into(), vec![]));
        assert_eq!(
            run_as("  sleep\t 1 "),
            ("sleep".into(), vec!["1".to_string()])
        );
        assert_eq!(
            run_as("env --chdir=/ A=b"),
            (
                "env".into(),
                vec!["--chdir=/".to_string(), "A=b".to_string()]
            )
        );
        for line in [
            "echo $HOME",
            "echo 'a b'",
            "true && false",
            "echo hi > out",
            "echo ~",
            "ls *.rs",
            "FOO=bar env",
            "cd /tmp",
            "export A",
            "pwd",
            "echo a # comment",
            "echo a\nb",
            "./build.sh",
            "no-such-program-anywhere x",
            "",
        ] {
            assert_eq!(run_as(line).0, "sh", "{line:?} needs the shell");
        }
    }

    #[test]
    fn a_program_only_on_the_commands_own_path_is_found_there() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("only-here");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(run_as("only-here").0, "sh");
        let path = dir.path().as_os_str();
        assert_eq!(
            shell("only-here", Path::new("/"), Some(path)).0,
            "only-here"
        );
    }
}
