//! Starting a group leader that dies with the runner, without forking the
//! runner.
//!
//! ## Why not `PR_SET_PDEATHSIG`
//! The death signal has to be set in the child, between fork and exec. A
//! `pre_exec` hook does that, but it makes the standard library `fork` the
//! whole runner: every mapping of a big address space (wasmtime's pools,
//! the tokio runtime, the history) is copied, then torn down at `exec`,
//! which made a pipeline of short commands spend most of its time in the
//! kernel. Starting each leader through a second `exec` of the runner
//! binary avoided the copy but cost a load of a large executable per task.
//!
//! ## The guardian
//! So the `runner` binary starts one small process of its own, the
//! guardian (`runner __runner-guardian`, in a process group of its own so
//! a Ctrl-C at the terminal does not reach it), the first time it needs
//! one. Leaders are then spawned with `posix_spawn` (no copy of the
//! address space, no hook), and each group is announced to the guardian
//! over a pipe, and withdrawn when it ends. When the runner exits, however
//! it exits (`kill -9` included), the pipe closes and the guardian kills
//! every group still announced, the leader's children included, then exits
//! itself. A group is killed only while its leader has the start time
//! announced, so a reused pid is left alone. See [`guardian_main`].
//!
//! A library user (the tests, an embedding program) has no such entry
//! point, and a runner whose guardian is gone falls back the same way: a
//! `pre_exec` hook sets the death signal as before.

use super::groups::{self, Record};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Stdio};
use std::sync::{Mutex, OnceLock};
use tokio::process::Command;

/// The first argument that makes `runner` the guardian.
const MARKER: &str = "__runner-guardian";

/// How long the guardian sleeps between reads of the pipe (so also how
/// late, at most, it starts killing after the runner is gone).
const READ_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Set by [`use_guardian`]: the executable that becomes the guardian.
static EXE: OnceLock<PathBuf> = OnceLock::new();

/// The guardian, once asked for.
static GUARDIAN: Mutex<State> = Mutex::new(State::NotStarted);

enum State {
    NotStarted,
    Running(Guardian),
    /// It could not start or went away: leaders fall back to the hook.
    Gone,
}

struct Guardian {
    pipe: ChildStdin,
    /// Kept so the guardian is reaped if it ends before the runner does.
    child: std::process::Child,
}

/// Guards every group leader with a guardian started from this executable
/// from now on. Its `main` must call [`guardian_main`] first.
pub fn use_guardian() {
    let exe = PathBuf::from("/proc/self/exe");
    if exe.exists() {
        let _ = EXE.set(exe);
    }
}

/// When this process was started as the guardian, guards the runner's
/// groups until the runner is gone, then exits (never returns); otherwise
/// returns at once. Call it first in `main`, before any thread starts.
pub fn guardian_main() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(MARKER)) {
        return;
    }
    if args.next().is_some() || std::io::IsTerminal::is_terminal(&io::stdin()) {
        eprintln!("runner: {MARKER} is for the runner's own use");
        std::process::exit(2);
    }
    let mut guarded: Vec<Record> = Vec::new();
    let mut stdin = io::stdin().lock();
    let mut pending = Vec::new();
    let mut buf = [0u8; 16 << 10];
    // The pipe ends, cleanly or not, only when the runner is gone; what the
    // runner wrote before it went is still read. So the guardian reads in
    // rounds, a pause apart, rather than waking for every line (two per
    // task): the runner never waits for it, and a pipe holds far more than
    // a pause's worth of lines.
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        let complete = pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        for line in String::from_utf8_lossy(&pending[..complete]).lines() {
            apply(&mut guarded, line);
        }
        pending.drain(..complete);
        std::thread::sleep(READ_PAUSE);
    }
    for record in &guarded {
        groups::kill_group(record);
    }
    std::process::exit(0);
}

/// One line from the runner: `+ <record>` guards a group, `- <pgid>` lets
/// it go.
fn apply(guarded: &mut Vec<Record>, line: &str) {
    if let Some(record) = line.strip_prefix("+ ").and_then(Record::parse) {
        guarded.retain(|r| r.pgid != record.pgid);
        guarded.push(record);
    } else if let Some(pgid) = line
        .strip_prefix("- ")
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        guarded.retain(|r| r.pgid != pgid);
    }
}

/// Whether leaders are guarded by the guardian (started now if it was not
/// yet): then they need neither the hook nor the spawner thread.
pub(crate) fn guarded() -> bool {
    let Some(exe) = EXE.get() else { return false };
    let mut state = GUARDIAN.lock().expect("guardian lock");
    if let State::NotStarted = *state {
        // Never retried: a failed start falls back for good.
        *state = match start(exe) {
            Ok(guardian) => State::Running(guardian),
            Err(err) => {
                tracing::warn!("cannot start the process guardian {}: {err}", exe.display());
                State::Gone
            }
        };
    }
    matches!(*state, State::Running(_))
}

fn start(exe: &PathBuf) -> io::Result<Guardian> {
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(exe)
        .arg0("runner")
        .arg(MARKER)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    let pipe = child.stdin.take().expect("piped stdin");
    Ok(Guardian { pipe, child })
}

/// Tells the guardian, if there is one, to kill `record`'s group should
/// the runner die; `false` if there is no guardian to tell.
pub(crate) fn announce(record: &Record) -> bool {
    send(&format!("+ {}", record.to_line()))
}

/// Tells the guardian the group led by `pgid` has ended.
pub(crate) fn withdraw(pgid: i32) {
    send(&format!("- {pgid}\n"));
}

fn send(line: &str) -> bool {
    let mut state = GUARDIAN.lock().expect("guardian lock");
    let State::Running(guardian) = &mut *state else {
        return false;
    };
    if let Err(err) = guardian.pipe.write_all(line.as_bytes()) {
        tracing::warn!(
            "the process guardian is gone ({err}); child processes are tied to the runner by a death signal from now on"
        );
        let _ = guardian.child.try_wait();
        *state = State::Gone;
        return false;
    }
    true
}

/// A command that runs `program` as the leader of a new process group
/// (spawn it with [`super::groups::spawn`]). `cwd` is where it runs and
/// `path` the `PATH` it will have (`None`: the runner's), to find it as
/// `exec` would; a program that cannot be found fails here, as spawning it
/// directly would.
pub fn command(program: &str, cwd: &std::path::Path, path: Option<&OsStr>) -> io::Result<Command> {
    if !guarded() {
        let mut command = Command::new(program);
        tie_in_child(&mut command);
        command.process_group(0);
        return Ok(command);
    }
    // Found here, so the standard library's `posix_spawn` needs no search
    // of its own in the child (which it would do by forking).
    let found = super::find_program_on(program, cwd, path)
        .ok_or_else(|| io::Error::from_raw_os_error(nix::libc::ENOENT))?;
    let mut command = Command::new(found);
    command.arg0(program).process_group(0);
    Ok(command)
}

/// Sets the death signal in the forked child (the fallback).
fn tie_in_child(command: &mut Command) {
    let parent = std::process::id();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and calls
    // only prctl and getppid, both async-signal-safe, allocating nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The runner died between fork and prctl: no signal will come.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                return Err(io::Error::other("the runner is gone"));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guardian_keeps_the_groups_announced_and_not_withdrawn() {
        let record = |pgid| Record {
            pgid,
            leader_start: 7,
            owner_pid: 1,
            owner_start: 2,
        };
        let mut guarded = Vec::new();
        for line in [
            "+ 10 7 1 2",
            "+ 11 7 1 2",
            "- 10",
            "garbage",
            "+ 12 7 1",
            "+ 11 7 1 2",
        ] {
            apply(&mut guarded, line);
        }
        assert_eq!(guarded, vec![record(11)]);
    }
}
